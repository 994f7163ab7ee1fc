"""MongoDB Extended JSON v2 (relaxed), byte for byte as `mongoexport` writes it.

mongoexport (mongo-tools, `mongoexport/json.go`) writes each document with the Go
driver's `bsonrw.NewExtJSONValueWriter(out, canonical=false, escapeHTML=false)`
(`bson/bsonrw/extjson_writer.go`), plus a hook that writes UUID binaries (subtype 4)
as `{"$uuid":"..."}`. The rules of that writer, reproduced here as pure functions:

- compact: no spaces; keys in stored order; one document per line;
- strings: `"` and `\\` escaped, `\\n \\r \\t \\b \\f` by name, other bytes below 0x20
  as `\\u00xx`, U+2028 and U+2029 as `\\u2028`/`\\u2029`, invalid UTF-8 bytes as the
  six characters `\\ufffd`; everything else (`<>&`, non-ASCII) as it is;
- int32 and int64: plain numbers;
- doubles: Go's `strconv.FormatFloat(f, 'G', -1, 64)` (shortest digits; exponent form
  `1.234567E+06` when the decimal exponent is < -4 or >= 6), with `.0` appended when
  the result has neither `.` nor `E`; NaN and ±Infinity as `{"$numberDouble":"..."}`;
- dates from 1970 to 9999: `{"$date":"2024-05-01T12:00:00.5Z"}` (Go's layout
  `2006-01-02T15:04:05.999Z07:00`: trailing zeros of the milliseconds trimmed, the
  fraction left out when zero); other dates `{"$date":{"$numberLong":"<ms>"}}`.

pymongo's `json_util` with RELAXED_JSON_OPTIONS differs in each of: spaces after `:`
and `,`, `\\u` escapes for non-ASCII, dates always with three millisecond digits,
doubles like `1234567.0` or `1e-07`, and no escaping of U+2028/U+2029.

Decode documents with `CODEC_OPTIONS` so that dates arrive as exact milliseconds
(even outside Python's year range) and invalid UTF-8 survives to be escaped as Go does.
The deprecated BSON types symbol, undefined and DBPointer arrive from pymongo as a
string, null and a DBRef document, and are written as those.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from bson import Binary, Code, DatetimeMS, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.dbref import DBRef
from bson.timestamp import Timestamp

CODEC_OPTIONS: CodecOptions = CodecOptions(
    document_class=dict,
    tz_aware=True,
    datetime_conversion=DatetimeConversion.DATETIME_MS,
    # Invalid UTF-8 bytes become lone surrogates, written as Go writes such bytes.
    unicode_decode_error_handler="surrogateescape",
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# First millisecond of year 10000: Go writes dates from here on as $numberLong.
YEAR_10000_MS = 253_402_300_800_000
UUID_SUBTYPE = 4

_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\u2028\u2029\ud800-\udfff]')
_NAMED_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
# Python's names for re flags, as the letters MongoDB stores, in Go's (sorted) order.
_REGEX_FLAG_LETTERS = ((2, "i"), (4, "l"), (8, "m"), (16, "s"), (32, "u"), (64, "x"))


def document_line(document: Mapping[str, Any]) -> str:
    """One document as the line mongoexport writes for it, without the newline."""
    return dumps(document)


def dumps(value: Any) -> str:
    """Any decoded BSON value as relaxed Extended JSON text, compact."""
    writer = _WRITERS.get(type(value))
    if writer is None:
        writer = _writer_for_subclass(value)
    return writer(value)


def quote_string(text: str) -> str:
    """A JSON string literal escaped exactly as the Go driver escapes it (escapeHTML off)."""
    if _NEEDS_ESCAPE.search(text) is None:
        return '"' + text + '"'
    return '"' + _NEEDS_ESCAPE.sub(_escape_one, text) + '"'


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if "\ud800" <= char <= "\udfff":
        # A byte that was not valid UTF-8 (see CODEC_OPTIONS): Go writes \ufffd for it.
        return "\\ufffd"
    return f"\\u{ord(char):04x}"


def format_double(value: float) -> str:
    """A double as Go's `formatDouble`: FormatFloat 'G' shortest, `.0` added to integers."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    if not digits:
        return "-0.0" if sign else "0.0"
    assert isinstance(exponent, int)
    # Position of the decimal point relative to the first digit, as Go's `digs.dp`.
    point = exponent + len(digit_tuple)
    text = _e_notation(digits, point - 1) if not -4 <= point - 1 < 6 else _f_notation(digits, point)
    return ("-" if sign else "") + text


def _e_notation(digits: str, exponent: int) -> str:
    """Go's fmtE with all shortest digits: d.dddE±XX, at least two exponent digits."""
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}E{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _f_notation(digits: str, point: int) -> str:
    """Go's fmtF with all shortest digits, then `.0` when no fraction is left."""
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits)) + ".0"
    return digits[:point] + "." + digits[point:]


def format_date_ms(millis: int) -> str:
    """A BSON date (milliseconds since the epoch) as mongoexport's `$date` value."""
    if not 0 <= millis < YEAR_10000_MS:
        return '{"$date":{"$numberLong":"' + str(millis) + '"}}'
    return '{"$date":"' + iso_date_ms(millis, trim=True) + '"}'


def iso_date_ms(millis: int, trim: bool) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.500Z; `trim` as Go's .999."""
    moment = EPOCH + timedelta(milliseconds=millis)
    fraction = f".{millis % 1000:03d}"
    if trim:
        fraction = fraction.rstrip("0").rstrip(".")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def datetime_to_ms(moment: datetime) -> int:
    """A datetime as BSON stores it: whole milliseconds since the epoch (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _document(value: Mapping[str, Any]) -> str:
    parts = [quote_string(key) + ":" + dumps(item) for key, item in value.items()]
    return "{" + ",".join(parts) + "}"


def _array(value: list | tuple) -> str:
    return "[" + ",".join(dumps(item) for item in value) + "]"


def _double(value: float) -> str:
    text = format_double(value)
    if text in ("NaN", "Infinity", "-Infinity"):
        return '{"$numberDouble":"' + text + '"}'
    return text


def _binary(value: bytes) -> str:
    subtype = getattr(value, "subtype", 0)
    if subtype == UUID_SUBTYPE and len(value) == 16:
        return _uuid(UUID(bytes=bytes(value)))
    encoded = base64.b64encode(value).decode("ascii")
    return '{"$binary":{"base64":"' + encoded + '","subType":"' + f"{subtype:02x}" + '"}}'


def _uuid(value: UUID) -> str:
    # mongo-tools' own encoder (mongoexport/json.go, binaryEncodeUUIDString).
    return '{"$uuid":"' + str(value) + '"}'


def _regex(value: Regex) -> str:
    flags = value.flags if isinstance(value.flags, int) else 0
    letters = "".join(letter for bit, letter in _REGEX_FLAG_LETTERS if flags & bit)
    return (
        '{"$regularExpression":{"pattern":'
        + quote_string(str(value.pattern))
        + ',"options":'
        + quote_string(letters)
        + "}}"
    )


def _code(value: Code) -> str:
    if value.scope is None:
        return '{"$code":' + quote_string(str(value)) + "}"
    return '{"$code":' + quote_string(str(value)) + ',"$scope":' + _document(value.scope) + "}"


def _timestamp(value: Timestamp) -> str:
    return '{"$timestamp":{"t":' + str(value.time) + ',"i":' + str(value.inc) + "}}"


_WRITERS: dict[type, Callable[[Any], str]] = {
    str: quote_string,
    bool: lambda value: "true" if value else "false",
    int: str,
    Int64: str,
    float: _double,
    type(None): lambda _value: "null",
    dict: _document,
    list: _array,
    ObjectId: lambda value: '{"$oid":"' + str(value) + '"}',
    DatetimeMS: lambda value: format_date_ms(int(value)),
    datetime: lambda value: format_date_ms(datetime_to_ms(value)),
    bytes: _binary,
    Binary: _binary,
    UUID: _uuid,
    Regex: _regex,
    Code: _code,
    Timestamp: _timestamp,
    Decimal128: lambda value: '{"$numberDecimal":"' + str(value) + '"}',
    MinKey: lambda _value: '{"$minKey":1}',
    MaxKey: lambda _value: '{"$maxKey":1}',
    DBRef: lambda value: _document(value.as_doc()),
}


def _writer_for_subclass(value: Any) -> Callable[[Any], str]:
    """The writer of a subclass (SON, a tuple, a datetime subclass), or TypeError."""
    if isinstance(value, Mapping):
        return _document
    if isinstance(value, list | tuple):
        return _array
    for kind, writer in _WRITERS.items():
        if isinstance(value, kind):
            return writer
    raise TypeError(f"cannot write a {type(value).__name__} as Extended JSON")
