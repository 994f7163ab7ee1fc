"""Relaxed Extended JSON v2 of exported documents: what mongoexport gives, once parsed.

bson.json_util writes each document; a line parses (with bson.json_util or any
Extended JSON reader) to the same document as the line mongoexport writes for it. The
text differs in details only: three millisecond digits in dates, `1e-07` for `1E-07`,
and UUIDs as `$binary` of subtype 4 where mongoexport writes `$uuid`. Lines are compact
and keep non-ASCII text as it is, as mongoexport's do.
"""

from __future__ import annotations

from typing import Any

from bson import json_util
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.json_util import RELAXED_JSON_OPTIONS

# Dates outside Python's years arrive as exact milliseconds (DatetimeMS); invalid UTF-8
# becomes U+FFFD, as mongoexport writes it.
CODEC_OPTIONS: CodecOptions = CodecOptions(
    document_class=dict,
    tz_aware=True,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    unicode_decode_error_handler="replace",
    uuid_representation=UuidRepresentation.STANDARD,
)
JSON_OPTIONS = RELAXED_JSON_OPTIONS.with_options(
    tz_aware=True,
    uuid_representation=UuidRepresentation.STANDARD,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)


def json_line(value: Any) -> str:
    """`value` (a document or any BSON value) as compact relaxed Extended JSON."""
    return json_util.dumps(
        value, json_options=JSON_OPTIONS, separators=(",", ":"), ensure_ascii=False
    )


def parse_line(line: str) -> Any:
    """A line of this export, or of mongoexport's, as the document it stands for."""
    return json_util.loads(line, json_options=JSON_OPTIONS)
