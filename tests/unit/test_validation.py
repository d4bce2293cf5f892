"""The input checks as pure functions: what each accepts (and sends on, canonical) and the typed error it raises."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.defender.facts import CATEGORIES, CREATE_FIELDS, SEVERITIES
from shared.validation import (
    MAX_BODY_BYTES,
    MAX_REPORT_ID,
    MAX_TEXT_LENGTH,
    BodyFault,
    BodyTooLargeError,
    FieldError,
    FileHash,
    HashKind,
    InputError,
    InvalidInputError,
    UnsupportedMediaTypeError,
    parse_json_object,
    validate_create_alert,
    validate_file_hash,
)
from tests.support.inputs import VALID

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + digit) for digit in range(10)))
FULL_WIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + digit) for digit in range(10)))


def refused(call: Any, *args: Any) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        call(*args)
    return caught.value


def only_error(error: InvalidInputError, field: str) -> str:
    assert [e.field for e in error.errors] == [field], error.errors
    return error.errors[0].message


# --- validate_file_hash: a SHA-1 (or SHA-256), and nothing that only looks like one ---------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (SHA1, SHA1),
    (SHA1.upper(), SHA1),
    ("6532EC91d513acc05f43ee0aa3002599729FD3E1", SHA1),
    (f" {SHA1}\t", SHA1),  # JSON/HTTP whitespace around it only
])
def test_sha1_is_returned_in_lower_case(raw: str, expected: str) -> None:
    assert validate_file_hash(raw) == FileHash(HashKind.SHA1, expected)


@pytest.mark.parametrize(("raw", "says"), [
    ("d41d8cd98f00b204e9800998ecf8427e", "looks like an MD5 hash"),
    ("ab" * 64, "looks like a SHA-512 hash"),
])
def test_other_hashes_are_named_and_refused(raw: str, says: str) -> None:
    message = only_error(refused(validate_file_hash, raw), "route.fileHash")
    assert says in message and "SHA-1" in message and raw in message


@pytest.mark.parametrize("raw", [
    "", "not-a-hash", SHA1[:-1], SHA1 + "0", SHA1[:-1] + "g",
    SHA1[:-1] + "1".translate(ARABIC_INDIC),  # another script's digit one
    SHA1.translate(FULL_WIDTH),
    SHA1 + "\u3000",  # an ideographic space, which str.strip() would remove
    "\u00a0" + SHA1,
])
def test_anything_else_is_not_a_file_hash(raw: str) -> None:
    error = refused(validate_file_hash, raw)
    assert only_error(error, "route.fileHash") == ("must be a SHA-1 or SHA-256 hash: exactly 40 or 64 hexadecimal "
                                                   "characters.")
    assert error.fault is None
    assert isinstance(error, InputError)


# --- parse_json_object ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON", " application/json ;charset=UTF-8",
    "application/problem+json", "application/vnd.contoso.alert+json",
])
def test_json_media_types_are_accepted(content_type: str) -> None:
    assert parse_json_object(b'{"a": 1}', content_type) == {"a": 1}


@pytest.mark.parametrize(("content_type", "media_type"), [
    (None, ""), ("", ""), ("text/plain", "text/plain"), ("text/json", "text/json"),
    ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
    ("application/json-seq", "application/json-seq"), ("Application/JSONX; charset=utf-8", "application/jsonx"),
])
def test_other_media_types_are_415(content_type: str | None, media_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        parse_json_object(b"{}", content_type)
    assert caught.value.media_type == media_type


def test_body_size_limit_is_exact() -> None:
    filler = MAX_BODY_BYTES - len(b'{"a": ""}')
    at_limit = json.dumps({"a": "x" * filler}).encode()
    assert len(at_limit) == MAX_BODY_BYTES
    assert parse_json_object(at_limit, "application/json") == {"a": "x" * filler}
    with pytest.raises(BodyTooLargeError) as caught:
        parse_json_object(at_limit[:-1] + b' }', "application/json")
    assert (caught.value.size, caught.value.limit) == (MAX_BODY_BYTES + 1, MAX_BODY_BYTES)


@pytest.mark.parametrize("body", [b"", b'{"machineId": ', b"\xff\xfe{}", b"{'a': 1}", b'{"a": 1} x',
                                  '\ufeff{"a": 1}'.encode()])
def test_not_json_at_all(body: bytes) -> None:
    error = refused(parse_json_object, body, "application/json")
    assert error.fault is BodyFault.NOT_JSON
    assert only_error(error, "body").startswith("is not valid UTF-8 JSON")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"42", b"true"])
def test_json_that_is_not_an_object(body: bytes) -> None:
    error = refused(parse_json_object, body, "application/json")
    assert error.fault is BodyFault.NOT_AN_OBJECT
    assert only_error(error, "body") == "must be a JSON object"


def test_a_duplicate_key_is_named() -> None:
    error = refused(parse_json_object, b'{"severity": "Low", "title": "t", "severity": "High"}', "application/json")
    assert error.fault is BodyFault.UNACCEPTABLE_JSON
    assert only_error(error, "body.severity") == "appears more than once in the JSON object"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_refused(constant: str) -> None:
    error = refused(parse_json_object, f'{{"reportId": {constant}}}'.encode(), "application/json")
    assert error.fault is BodyFault.UNACCEPTABLE_JSON
    assert only_error(error, "body") == f"is not valid JSON: {constant} is not a JSON number"


def test_an_integer_too_long_to_read_is_refused_but_a_long_one_is_kept() -> None:
    error = refused(parse_json_object, b'{"reportId": ' + b"9" * 5000 + b"}", "application/json")
    assert error.fault is BodyFault.UNACCEPTABLE_JSON
    assert "has an integer of 5000 digits" in only_error(error, "body")
    assert parse_json_object(b'{"reportId": 9223372036854775807}', "application/json") == {"reportId": MAX_REPORT_ID}


@pytest.mark.parametrize("body", [b"[" * 32_000 + b"]" * 32_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000])
def test_nesting_too_deep_to_parse_is_refused(body: bytes) -> None:
    assert len(body) <= MAX_BODY_BYTES
    error = refused(parse_json_object, body, "application/json")
    assert error.fault is BodyFault.UNACCEPTABLE_JSON
    assert "nested too deeply" in only_error(error, "body")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


#: Derandomised (the same examples every run, as the HTTP fuzz tests), and fast enough for the unit layer.
QUICK = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


@settings(QUICK, max_examples=60)
@given(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8))
def test_any_json_object_is_read_as_it_is(document: dict[str, Any]) -> None:
    assert parse_json_object(json.dumps(document).encode(), "application/json") == document


_JSONISH = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"1", b"-", b"e", b"NaN", b"true", b" ",
                            b"\\u", b"\\ud800", b'"k"', b"\xff", b"\xc3\xa9", b"9" * 50])


@QUICK
@given(body=st.one_of(st.binary(max_size=200), st.lists(_JSONISH, max_size=40).map(b"".join),
                      st.builds(lambda prefix, inner: prefix + inner, st.sampled_from([b'{"a":', b'{"a":{"a":']),
                                st.lists(_JSONISH, max_size=20).map(b"".join))),
       content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None]))
def test_any_body_is_an_object_or_an_input_error(body: bytes, content_type: str | None) -> None:
    try:
        document = parse_json_object(body, content_type)
    except InputError as error:
        assert isinstance(error, InvalidInputError | UnsupportedMediaTypeError | BodyTooLargeError)
        if isinstance(error, InvalidInputError):
            assert error.errors and error.fault is not None
    else:
        assert isinstance(document, dict)


# --- validate_create_alert ------------------------------------------------------------------------------------

def test_a_valid_body_comes_back_with_exactly_the_eight_fields_in_order() -> None:
    clean = validate_create_alert(dict(VALID))
    assert list(clean) == list(CREATE_FIELDS)
    assert clean == VALID


def test_values_are_made_canonical_and_keep_their_precision() -> None:
    body = {**VALID, "severity": "hIGH", "category": "commandandcontrol", "reportId": 20776,
            "machineId": VALID["machineId"].upper(), "eventTime": "2018-08-03t16:45:21.7115183z"}
    assert validate_create_alert(body) == {**VALID, "severity": "High", "category": "CommandAndControl",
                                           "reportId": "20776", "eventTime": "2018-08-03T16:45:21.7115183Z"}


@pytest.mark.parametrize("name", SEVERITIES)
def test_every_severity_in_any_case(name: str) -> None:
    for spelled in (name, name.lower(), name.upper(), f" {name.swapcase()}\n"):
        assert validate_create_alert({**VALID, "severity": spelled})["severity"] == name


@pytest.mark.parametrize("name", CATEGORIES)
def test_every_category_in_any_case(name: str) -> None:
    for spelled in (name, name.lower(), name.upper()):
        assert validate_create_alert({**VALID, "category": spelled})["category"] == name


@pytest.mark.parametrize(("raw", "sent"), [
    ("2018-08-03T16:45:21.7115183Z", "2018-08-03T16:45:21.7115183Z"),
    ("2018-08-03T16:45:21.7100000Z", "2018-08-03T16:45:21.7100000Z"),  # trailing zeros are digits too
    ("2018-08-03T16:45:21.7Z", "2018-08-03T16:45:21.7Z"),
    ("2018-08-03T16:45:21Z", "2018-08-03T16:45:21Z"),
    ("2018-08-03T16:45:21.7115183+00:00", "2018-08-03T16:45:21.7115183Z"),
    ("2018-08-03T16:45:21.7115183-00:00", "2018-08-03T16:45:21.7115183Z"),
    (" 2018-08-03T16:45:21.7115183Z\r\n", "2018-08-03T16:45:21.7115183Z"),
    ("2020-02-29T23:59:59.9999999Z", "2020-02-29T23:59:59.9999999Z"),
])
def test_event_time_keeps_every_digit(raw: str, sent: str) -> None:
    assert validate_create_alert({**VALID, "eventTime": raw})["eventTime"] == sent


@pytest.mark.parametrize("raw", [
    "2018-08-03T16:45:21.71151839Z",  # 8 fractional digits
    "2018-08-03T16:45:21.7115183+02:00", "2018-08-03T16:45:21.7115183", "2018-08-03 16:45:21Z",
    "2018-08-03T16:45:21.Z", "2019-02-29T00:00:00Z", "2018-08-03T24:00:00Z", "2018-08-03T23:59:60Z",
    "2018-8-3T16:45:21Z", "2018-08-03T16:45:21.7115183Z".translate(ARABIC_INDIC),
    "2018-08-03T16:45:21.7115183Z".translate(FULL_WIDTH), "2018-08-03T16:45:21Z\u00a0", 1533314721, None, "",
])
def test_event_time_must_be_an_advanced_hunting_time(raw: Any) -> None:
    message = only_error(refused(validate_create_alert, {**VALID, "eventTime": raw}), "body.eventTime")
    assert "ISO-8601 UTC" in message and "up to 7 fractional digits" in message


@pytest.mark.parametrize(("raw", "sent"), [
    (0, "0"), (20776, "20776"), (MAX_REPORT_ID, str(MAX_REPORT_ID)), ("20776", "20776"),
    (str(MAX_REPORT_ID), str(MAX_REPORT_ID)), (" 20776\t", "20776"), ("0020776", "0020776"),
])
def test_report_id_is_sent_as_its_digit_string(raw: Any, sent: str) -> None:
    assert validate_create_alert({**VALID, "reportId": raw})["reportId"] == sent


@pytest.mark.parametrize("raw", [
    -1, MAX_REPORT_ID + 1, str(MAX_REPORT_ID + 1), "1" * 20, "", " ", "+12", "-1", "1_000", "12.0", 12.0, True,
    False, None, [20776], "123".translate(ARABIC_INDIC), "123".translate(FULL_WIDTH), "\u001c20776", "12\u0000",
])
def test_report_id_must_be_a_non_negative_long(raw: Any) -> None:
    message = only_error(refused(validate_create_alert, {**VALID, "reportId": raw}), "body.reportId")
    assert "non-negative integer" in message and str(MAX_REPORT_ID) in message


@pytest.mark.parametrize("raw", [
    VALID["machineId"][:-1], VALID["machineId"] + "0", VALID["machineId"][:-1] + "z",
    VALID["machineId"].translate(ARABIC_INDIC), " " + VALID["machineId"][1:], 1234, None,
])
def test_machine_id_must_be_40_hex_characters(raw: Any) -> None:
    message = only_error(refused(validate_create_alert, {**VALID, "machineId": raw}), "body.machineId")
    assert message == "must be the device id: 40 hexadecimal characters"


@pytest.mark.parametrize(("name", "raw"), [
    ("severity", "Critical"), ("severity", "Low\u00a0"), ("severity", "\u2003High"), ("severity", 3),
    ("category", "Malwares"), ("category", "Exploit\u3000"), ("category", "\uff25xploit"), ("category", None),
])
def test_enums_are_ascii_names_only(name: str, raw: Any) -> None:
    message = only_error(refused(validate_create_alert, {**VALID, name: raw}), f"body.{name}")
    assert message.startswith("must be one of ")


@pytest.mark.parametrize("name", ["title", "description", "recommendedAction"])
@pytest.mark.parametrize("raw", [
    "", "   ", "\t\r\n", "x" * (MAX_TEXT_LENGTH + 1), "a\u0000b", "bell\u0007", "escape \u001b[31m", "delete\u007f",
    "next line\u0085", "csi\u009b", "lone \ud800 high", "lone \udfff low", None, 42, ["text"],
])
def test_free_text_rules(name: str, raw: Any) -> None:
    message = only_error(refused(validate_create_alert, {**VALID, name: raw}), f"body.{name}")
    assert "non-empty string" in message and str(MAX_TEXT_LENGTH) in message


def test_free_text_is_kept_exactly() -> None:
    text = {"title": "Ärger\tmit 🔥", "description": " line 1\r\nline 2\n", "recommendedAction": "x" * MAX_TEXT_LENGTH}
    assert {name: validate_create_alert({**VALID, **text})[name] for name in text} == text


@pytest.mark.parametrize("name", CREATE_FIELDS)
def test_each_missing_field_is_required(name: str) -> None:
    body = {key: value for key, value in VALID.items() if key != name}
    assert only_error(refused(validate_create_alert, body), f"body.{name}") == "is required"


def test_unknown_fields_are_refused_with_a_hint_for_typos() -> None:
    body = {**{k: v for k, v in VALID.items() if k != "recommendedAction"}, "recommendedActions": "x",
            "Severity": "Low", "extra": 1}
    error = refused(validate_create_alert, body)
    messages = {e.field: e.message for e in error.errors}
    assert set(messages) == {"body.recommendedActions", "body.Severity", "body.extra", "body.recommendedAction"}
    assert messages["body.recommendedActions"].endswith("Did you mean 'recommendedAction'?")
    assert messages["body.Severity"].endswith("Did you mean 'severity'?")  # names are case-sensitive
    assert messages["body.extra"] == "is not a field of CreateAlertByReference."
    assert messages["body.recommendedAction"] == "is required"


def test_every_bad_field_is_reported_at_once() -> None:
    error = refused(validate_create_alert, {**VALID, "severity": "urgent", "category": "bad", "machineId": "x",
                                            "reportId": -1, "eventTime": "yesterday", "title": ""})
    assert sorted(e.field for e in error.errors) == ["body.category", "body.eventTime", "body.machineId",
                                                     "body.reportId", "body.severity", "body.title"]
    assert error.fault is None
    assert all(isinstance(e, FieldError) for e in error.errors)
    assert str(error) == ", ".join(e.field for e in error.errors)


def test_an_empty_body_names_all_eight() -> None:
    error = refused(validate_create_alert, {})
    assert [e.field for e in error.errors] == [f"body.{name}" for name in
                                               ("eventTime", "reportId", "machineId", "severity", "category",
                                                "title", "description", "recommendedAction")]
    assert {e.message for e in error.errors} == {"is required"}
