"""gunicorn's access logger, building only the fields our access line reports.

gunicorn's own `atoms()` gathers some thirty fields for every request, every request and
response header and every environ variable among them, and formats the time, while our
line (logging_setup.ACCESS_FORMAT and access_fields) uses six. At hundreds of polls a
second that was about a tenth of the web's CPU. gunicorn.conf.py names this class as
gunicorn's `logger_class`; everything else is gunicorn's.

It also leaves out polls answered "still processing" (the app marks them with
`mark_pending_poll`) unless LOG_PENDING_POLLS is on: at 0.5 s polling they are four in
five requests, lines that say nothing a participant or researcher needs, that log
add-ons cap by volume, and that cost the web about a tenth of its CPU. The request
metrics still count them.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from studychat.settings import ProcessSettings

REQUEST_ID_ATOM = "{x-request-id}o"
# The WSGI environ key by which the app marks a poll it answered "still processing".
PENDING_POLL = "studychat.pending_poll"


def mark_pending_poll(environ: dict[str, Any]) -> None:
    """Note that this request is a poll answered "still processing" (see the module)."""
    environ[PENDING_POLL] = True


class AccessLogger(Logger):
    """gunicorn's Logger with lean atoms: method, path, status, bytes, time, request id."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        # gunicorn.conf.py has loaded .env into the environment before this is made.
        self.log_pending_polls = ProcessSettings().LOG_PENDING_POLLS

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Write the access line, unless it is a pending poll's and those are left out."""
        if environ.get(PENDING_POLL) and not self.log_pending_polls:
            return
        super().access(resp, req, environ, request_time)

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
