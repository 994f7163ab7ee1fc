"""gunicorn's access logger, building only the fields our access line reports.

gunicorn's own `atoms()` gathers some thirty fields for every request, every request and
response header and every environ variable among them, and formats the time, while our
line (logging_setup.ACCESS_FORMAT and access_fields) uses six. At hundreds of polls a
second that was about a tenth of the web's CPU. gunicorn.conf.py names this class as
gunicorn's `logger_class`; everything else is gunicorn's.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

REQUEST_ID_ATOM = "{x-request-id}o"


class AccessLogger(Logger):
    """gunicorn's Logger with lean atoms: method, path, status, bytes, time, request id."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict:
        """The atoms ACCESS_FORMAT and logging_setup.access_fields read, nothing else."""
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        return {
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": status,
            "B": getattr(resp, "sent", None),
            "D": request_time.seconds * 1_000_000 + request_time.microseconds,
            REQUEST_ID_ATOM: _request_id(resp.headers),
        }


def _request_id(headers: Any) -> str | None:
    """The X-Request-ID the app answered with (gunicorn keeps headers as a list of pairs)."""
    pairs = headers.items() if hasattr(headers, "items") else headers
    return next((value for name, value in pairs if name.lower() == "x-request-id"), None)
