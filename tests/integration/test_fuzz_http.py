"""Property-based fuzzing of both endpoints through a dedicated local Functions host (hypothesis).

Random request lines, methods, headers and bodies (random JSON, near-valid create bodies with one
field mutated, deep nesting, huge integers, raw and non-UTF-8 bytes) go over raw loopback sockets, so
nothing is normalised on the way. For every request:

1. the answer is never 5xx;
2. a 4xx from the app (it carries X-Correlation-ID) is a well-formed problem+json whose `status` is the
   HTTP status; a 4xx from the host itself (401 key, 404 route or method, or the HTTP server's own
   400/414/431) is allowed, and which ones occurred is printed at the end of the module;
3. a request the gateway refused never reached the simulator (it is in its reset state before each
   request, so its call log holds exactly what this request caused), and whatever did reach it is a well-formed
   Defender call: ASCII-digit reportId, ASCII eventTime, lower-case hex machineId, canonical enums, no
   NUL or lone surrogate in the texts.

The hypothesis runs are derandomised (the same examples every run); the whole module takes under a
minute on two shared cores. Two deterministic tests complement them: every fixed one-field mutation
of the valid body, and a short list of the nastiest requests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import string
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from localdev.simulator.data import SEED_EVENT, SEED_FILE_SHA1
from localdev.stack import Server
from tests.support.inputs import VALID
from tests.support.servers import FUNCTION_KEY, GatewayClient, HostFactory, SimulatorAdmin

#: Per hypothesis test (there are two): together about 40 s on two shared cores when nothing fails.
MAX_EXAMPLES = 1500
CREATE_PATH = "/api/alerts/CreateAlertByReference"
CREATE_FIELDS = tuple(VALID)
#: The fields to mutate, the riskiest first (hypothesis draws earlier ones more often).
MUTATION_ORDER = ("reportId", "eventTime", "title", "machineId", "description", "recommendedAction", "severity",
                  "category")
TEXT_FIELDS = ("title", "description", "recommendedAction")
SEVERITIES = ("Low", "Medium", "High")
CATEGORIES = ("General", "CommandAndControl", "Collection", "CredentialAccess", "DefenseEvasion", "Discovery",
              "Exfiltration", "Exploit", "Execution", "InitialAccess", "LateralMovement", "Malware", "Persistence",
              "PrivilegeEscalation", "Ransomware", "SuspiciousActivity")
MAX_BODY_BYTES = 64 * 1024
#: Problem kinds that say Defender answered (so the request did reach it); everything else is a refusal.
UPSTREAM_KINDS = re.compile(r"(upstream-[a-z-]+|event-not-found)")
#: What Defender may receive (ASCII only: explicit classes, fullmatch).
SHA1 = re.compile(r"[0-9a-f]{40}")
REPORT_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
MAX_REPORT_ID = 2**63 - 1  # advanced hunting's ReportId is a long
EVENT_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?Z")
#: Other scripts' digits, which `\d`, int() and strptime accept but Defender does not.
UNICODE_DIGITS = {script: "".join(chr(zero + i) for i in range(10)) for script, zero in
                  {"arabic-indic": 0x0660, "full-width": 0xFF10, "devanagari": 0x0966, "math-bold": 0x1D7CE}.items()}

# -- requests and answers over raw sockets --------------------------------------------------------------------

def _short(data: bytes | str, limit: int = 160) -> str:
    text = repr(data)
    unit = "bytes" if isinstance(data, bytes) else "chars"
    return text if len(text) <= limit else f"{text[:limit]}...({len(data)} {unit})"


@dataclass(frozen=True)
class Probe:
    """One HTTP request, byte for byte (the client adds Host, Content-Length and Connection: close)."""

    label: str
    method: str
    target: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes | None = None

    def __repr__(self) -> str:
        headers = ", ".join(f"{name}: {_short(value, 60)}" for name, value in self.headers)
        body = "no body" if self.body is None else _short(self.body, 300)
        return f"<{self.label}: {self.method} {_short(self.target, 200)} [{headers}] {body}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis prints a falsifying example
        printer.text(repr(self))


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def send(port: int, probe: Probe) -> Answer:
    lines = [probe.method.encode() + b" " + probe.target + b" HTTP/1.1", f"Host: 127.0.0.1:{port}".encode()]
    lines += [name.encode("latin-1") + b": " + value for name, value in probe.headers]
    if probe.body is not None:
        lines.append(b"Content-Length: %d" % len(probe.body))
    lines.append(b"Connection: close")
    data = b"\r\n".join(lines) + b"\r\n\r\n" + (probe.body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        with contextlib.suppress(OSError):  # the server may answer (414, 431...) before reading it all
            sock.sendall(data)
        response = http.client.HTTPResponse(sock, method=probe.method)
        response.begin()
        return Answer(response.status, response.headers, response.read())


# -- the properties ------------------------------------------------------------------------------------------

@dataclass
class Target:
    gateway: GatewayClient
    sim: SimulatorAdmin
    #: The host's own 4xx answers seen (status, body shape), reported at the end of the module.
    host_answers: Counter[tuple[int, str]] = field(default_factory=Counter, repr=False)
    #: Whether the simulator may differ from its reset state (it does only after it was called).
    sim_touched: bool = True

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # keep hypothesis' falsifying examples short
        printer.text(f"<gateway {self.gateway.url}, simulator {self.sim.url}>")

    def failure_in_log(self, correlation_id: str | None) -> str:
        """The exception the host logged for this request (last line of its traceback), if any."""
        if not correlation_id:
            return ""
        lines = self.gateway.host.log().splitlines()
        for index, line in enumerate(lines):
            if correlation_id in line and "unexpected failure" in line:
                trace = []
                for following in lines[index + 1:]:
                    if re.match(r"\d{4}-\d{2}-\d{2} ", following):
                        break
                    trace.append(following)
                return trace[-1] if trace else line
        return ""


def exchange(target: Target, probe: Probe) -> tuple[Answer, list[dict[str, Any]]]:
    """Send the probe to a simulator in its reset state; return the answer and the calls it caused.

    The reset state (seed data, generous limits, empty call log) makes every request independent of
    the ones before it, so hypothesis replays and shrinks faithfully. A 503 because Azurite did not answer
    within the limiter's 1 s timeouts, or a connection closed without an answer, says the machine is
    overloaded, not that the request is mishandled: such a request is sent again (twice at most).
    """
    for attempt in range(3):
        if target.sim_touched:
            target.sim.reset()
        try:
            answer = send(target.gateway.host.port, probe)
        except (ConnectionError, http.client.RemoteDisconnected):
            if attempt == 2:
                raise
            time.sleep(1)
            continue
        finally:
            target.sim_touched = True  # until the call log shows otherwise
        calls = target.sim.calls()
        target.sim_touched = bool(calls)
        if answer.status == 503 and b"rate-limit-storage-unavailable" in answer.body and attempt < 2:
            time.sleep(1)
            continue
        return answer, calls
    raise AssertionError("unreachable")


def check_problem(answer: Answer) -> dict[str, Any]:
    content_type = answer.header("Content-Type") or ""
    assert content_type.startswith("application/problem+json"), f"{answer.status} with {content_type!r}"
    problem = json.loads(answer.body)
    assert isinstance(problem, dict), problem
    assert {"type", "title", "status", "detail"} <= problem.keys(), problem
    assert problem["status"] == answer.status, problem
    assert all(isinstance(problem[key], str) for key in ("type", "title", "detail")), problem
    assert problem.get("correlationId") == answer.header("X-Correlation-ID"), problem
    return problem


def _clean_text(value: str) -> bool:
    return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def check_defender_call(call: dict[str, Any]) -> None:
    """What reached the simulator is something Defender accepts as the gateway documents it."""
    if call["api"] == "file_alerts":
        match = re.fullmatch(r"/api/files/([^/]*)/alerts", call["path"])
        assert match and SHA1.fullmatch(match[1]), f"file alerts for {call['path']!r} reached Defender"
        return
    if call["api"] == "file_info":  # a SHA-256 lookup resolves the file's SHA-1 first
        match = re.fullmatch(r"/api/files/([^/]*)", call["path"])
        assert match and re.fullmatch(r"[0-9a-f]{64}", match[1]), f"file info for {call['path']!r} reached Defender"
        return
    assert call["api"] == "create_alert", f"the gateway called {call['method']} {call['path']!r}"
    body = json.loads(call["body"])
    assert isinstance(body, dict) and sorted(body) == sorted(CREATE_FIELDS), f"sent {_short(call['body'])}"
    for name in CREATE_FIELDS:
        assert isinstance(body[name], str), f"{name}={body[name]!r} reached Defender"
    assert REPORT_ID.fullmatch(body["reportId"]) and int(body["reportId"]) <= MAX_REPORT_ID, \
        f"reportId={_short(body['reportId'])} reached Defender"
    assert EVENT_TIME.fullmatch(body["eventTime"]), f"eventTime={body['eventTime']!r} reached Defender"
    assert SHA1.fullmatch(body["machineId"]), f"machineId={body['machineId']!r} reached Defender"
    assert body["severity"] in SEVERITIES, f"severity={body['severity']!r} reached Defender"
    assert body["category"] in CATEGORIES, f"category={body['category']!r} reached Defender"
    for name in TEXT_FIELDS:
        assert _clean_text(body[name]), f"{name}={_short(body[name])} (NUL or lone surrogate) reached Defender"


def _note(text: str) -> None:
    if currently_in_test_context():  # hypothesis prints notes with a falsifying example
        note(text)


def check_properties(target: Target, probe: Probe) -> None:
    answer, calls = exchange(target, probe)
    correlation_id = answer.header("X-Correlation-ID")
    _note(f"answer: {answer.status} {answer.header('Content-Type')!r} {_short(answer.body, 300)}")
    reached = [(c["method"], _short(c["path"], 80), _short(c["body"] or "", 200)) for c in calls]
    _note(f"reached the simulator: {reached}")

    # 1. never 5xx
    assert answer.status < 500, (f"{answer.status} ({target.failure_in_log(correlation_id) or 'nothing logged'}) "
                                 f"for {probe!r}: {_short(answer.body, 300)}")

    refused = False
    if 400 <= answer.status < 500:
        if correlation_id is not None:
            # 2. the app's 4xx: problem+json with the HTTP status
            problem = check_problem(answer)
            refused = not UPSTREAM_KINDS.fullmatch(str(problem["type"]).rsplit(":", 1)[-1])
        else:
            # 2'. the host's own 4xx: empty, or the HTTP server's error page for a request it could not parse
            refused = True
            shape = "empty" if not answer.body else (answer.header("Content-Type") or "?").split(";")[0]
            assert shape == "empty" or (answer.status in (400, 414, 431) and shape == "text/html"), \
                f"host answered {answer.status} with {_short(answer.body)}"
            target.host_answers[(answer.status, shape)] += 1
    # 3. refused means nothing reached Defender; what did reach it is well-formed
    if refused:
        assert calls == [], f"refused with {answer.status}, but the simulator got {_short(str(calls), 400)}"
    for call in calls:
        check_defender_call(call)


# -- strategies ---------------------------------------------------------------------------------------------

def lit(value: Any, *, ascii_only: bool = True) -> str:
    """A JSON literal (lone surrogates escaped as \\udXXX unless ascii_only=False)."""
    return json.dumps(value, ensure_ascii=ascii_only)


def utf8(text: str) -> bytes:
    """Encode, keeping lone surrogates as their (invalid) 3-byte forms."""
    return text.encode("utf-8", "surrogatepass")


def object_text(members: list[tuple[str, str]]) -> str:
    """A JSON object from raw member texts, in order, duplicates kept."""
    return "{" + ", ".join(f"{lit(name)}: {raw}" for name, raw in members) + "}"


def with_digits(value: str, digits: str, index: int | None = None) -> str:
    """`value` with every ASCII digit (or only the index-th one) written in another script."""
    positions = [i for i, c in enumerate(value) if c.isascii() and c.isdigit()]
    chosen = positions if index is None else [positions[index % len(positions)]]
    return "".join(digits[int(c)] if i in chosen else c for i, c in enumerate(value))


def full_width(value: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value)


any_text = st.text(st.characters(exclude_categories=[]), max_size=40)  # lone surrogates included
token_chars = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
digit_scripts = st.sampled_from(sorted(UNICODE_DIGITS.values()))


LITERALS = ("null", "true", "false", "0", "-1", "1.5", "-0", "1e999", "[]", "{}", "NaN", "Infinity", "-Infinity",
            "20776.0", "2.0776e4")
ODD_CHARACTERS = ("\x00", "\ud800", "\udfff", "\ud83d", "\ufeff", "\u200b", "\u3000", "\n", " ")
SPECIFIC_VALUES: dict[str, tuple[str, ...]] = {
    "eventTime": ("2018-08-03T16:45:21.7115183+00:00", "2018-08-03T16:45:21.7115183-00:00",
                  "2018-08-03t16:45:21.7115183z", "2018-08-03T16:45:21Z", "2018-08-03T16:45:21.7Z",
                  "2018-08-03T16:45:21.71151830Z", "2018-08-03T16:45:21.Z", "2018-02-29T16:45:21Z",
                  "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z", "2018-08-03T24:00:00Z",
                  "2018-08-03T16:45:60Z", " 2018-08-03T16:45:21.7115183Z\n", "2018-08-03T16:45:21.7115183Z\x00",
                  "2018-08-03T16:45:21,7115183Z", "20180803T164521Z"),
    "reportId": ("abc", "-5", "+5", "0x10", "1e3", "20776.0", " 20776 ", "20776\t", "00020776", "1" * 19, "1" * 20,
                 "9" * 5000, "1" * 60000, "\u0662\u0660\u0661\u0668", full_width("2018")),
    "machineId": (str(VALID["machineId"])[:39], str(VALID["machineId"]) + "0", "g" * 40, " " * 40),
    "severity": ("Critical", "Informational", "LOW", "low", "hIGH", full_width("Low"), "L\u0131w", "Lo\u200bw"),
    "category": ("Malwares", "MALWARE", "commandandcontrol", "\u0130nitialAccess", "Exploit\x00", "Exploit "),
}


def fixed_mutations(name: str) -> list[tuple[str, str, str]]:
    """(field, label, raw JSON text): wrong types, odd numbers, odd strings for the field `name`."""
    valid = str(VALID[name])
    table = [(f"literal {raw}", raw) for raw in LITERALS]
    table += [("in a list", lit([valid])), ("in an object", lit({"value": valid}))]
    table += [(f"{n}-digit int", "9" * n) for n in (19, 20, 100, 4300, 4301, 5000, 20000)]
    table += [("2**63 - 1", str(2**63 - 1)), ("2**63", str(2**63)), ("2**64", str(2**64))]
    for odd in ODD_CHARACTERS:
        table += [(f"+{odd!r}", lit(valid + odd)), (f"{odd!r}+", lit(odd + valid)), (f"only {odd!r}", lit(odd)),
                  (f"+{odd!r} unescaped", lit(valid + odd, ascii_only=False))]
    table += [(f"{n} chars", lit((valid * n)[:n])) for n in (4096, 4097, 20000, 60000)]
    table += [("4096 astral chars", lit(chr(0x1D7D8) * 4096, ascii_only=False)),
              ("full-width", lit(full_width(valid), ascii_only=False))]
    table += [("case/space", lit(v)) for v in (valid.upper(), valid.lower(), f" {valid} ", valid + "\n")]
    for script, digits in UNICODE_DIGITS.items():
        if any(c.isdigit() for c in valid):
            table += [(f"{script} digits", lit(with_digits(valid, digits))),
                      (f"one {script} digit", lit(with_digits(valid, digits, 0), ascii_only=False))]
        else:
            table += [(f"+{script} digit", lit(valid + digits[2]))]
    table += [("variant", lit(value)) for value in SPECIFIC_VALUES.get(name, ())]
    return [(name, label, raw) for label, raw in table]


#: About 700 deterministic mutations: hypothesis draws from them (favouring the first ones), and
#: test_every_fixed_mutation_keeps_the_properties sends every one of them.
FIXED_MUTATIONS = [mutation for name in MUTATION_ORDER for mutation in fixed_mutations(name)]


def replace_one(value: str, position: int, replacement: str) -> str:
    return value[:position % len(value)] + replacement + value[position % len(value) + 1:]


@st.composite
def random_mutations(draw: st.DrawFn) -> tuple[str, str, str]:
    """(field, label, raw JSON text): a random value, or the valid one with one character replaced or added."""
    name = draw(st.sampled_from(MUTATION_ORDER))
    valid = str(VALID[name])

    def one_character(characters: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
        return st.tuples(st.integers(0, 40), characters, st.booleans()).map(
            lambda t: (f"char {t[0] % len(valid)} <- {t[1]!r}", lit(replace_one(valid, t[0], t[1]), ascii_only=t[2])))

    label, raw = draw(st.one_of(
        one_character(st.characters(categories=["Nd"], min_codepoint=0x80)),  # a digit of another script
        one_character(st.characters(exclude_categories=[])),
        st.tuples(any_text, st.booleans()).map(lambda t: ("random text", lit(t[0], ascii_only=t[1]))),
        st.integers(min_value=0).map(lambda n: ("random int", str(n))),
        st.integers(1, 20000).map(lambda n: (f"{n}-digit int", "9" * n)),
        json_values.map(lambda v: ("random JSON value", lit(v))),
        st.datetimes().map(lambda t: ("other time", lit(t.isoformat() + "Z"))),
        st.text("0123456789abcdefABCDEF", min_size=38, max_size=42).map(lambda v: ("hex", lit(v))),
    ))
    return name, label, raw


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """The valid body with exactly one thing changed."""
    members = [(key, lit(value)) for key, value in VALID.items()]
    how = draw(st.sampled_from(["value", "value", "value", "value", "missing", "duplicate before", "duplicate after",
                                "extra field"]))
    if how == "missing":
        name = draw(st.sampled_from(MUTATION_ORDER))
        del members[CREATE_FIELDS.index(name)]
        return f"{name} missing", utf8(object_text(members))
    if how == "extra field":
        extra = draw(st.one_of(st.sampled_from(["recommendedActions", "ReportId", "id", "", "__proto__"]), any_text))
        members.append((extra, draw(st.sampled_from([lit("x"), "1" * 4301, "[" * 3000 + "]" * 3000]))))
        return f"extra field {extra!r}", utf8(object_text(members))
    name, label, raw = draw(st.one_of(random_mutations(), st.sampled_from(FIXED_MUTATIONS)))
    index = CREATE_FIELDS.index(name)
    if how == "value":
        members[index] = (name, raw)
    elif how == "duplicate before":
        members.insert(index, (name, raw))
    else:
        members.insert(index + 1, (name, raw))
    return f"{name} <- {label} ({how})", utf8(object_text(members))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=15,
)


@st.composite
def deep_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    depth = draw(st.one_of(st.sampled_from([999, 1000, 1001, 2000, 10000]), st.integers(500, 12000)))
    shape = draw(st.sampled_from(["array", "object", "in title", "unterminated"]))
    if shape == "array":
        raw = "[" * depth + "]" * depth
    elif shape == "object":
        raw = '{"a":' * depth + "1" + "}" * depth
    elif shape == "in title":
        raw = object_text([*((k, lit(v)) for k, v in VALID.items() if k != "title"),
                           ("title", "[" * depth + "]" * depth)])
    else:
        raw = "[" * depth
    return f"nested {depth} deep ({shape})", raw.encode()


valid_json = json.dumps(VALID)
other_bodies = st.one_of(
    st.tuples(json_values, st.booleans()).map(lambda v: ("random JSON", utf8(lit(v[0], ascii_only=v[1])))),
    st.dictionaries(st.one_of(st.sampled_from(CREATE_FIELDS), any_text), json_values, max_size=10).map(
        lambda d: ("random JSON object", utf8(lit(d, ascii_only=False)))),
    st.binary(max_size=300).map(lambda b: ("random bytes", b)),
    st.sampled_from(["utf-16", "utf-32", "utf-16-be", "latin-1", "cp1252", "utf-8-sig"]).map(
        lambda codec: (f"valid body in {codec}", json.dumps({**VALID, "title": "café"}, ensure_ascii=False)
                       .encode(codec))),
    st.sampled_from([b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80"]).map(
        lambda junk: ("title not UTF-8", json.dumps({**VALID, "title": "<>"}).encode().replace(b"<>", junk))),
    st.sampled_from([MAX_BODY_BYTES - 1, MAX_BODY_BYTES, MAX_BODY_BYTES + 1]).map(
        lambda n: (f"valid body padded to {n} bytes", valid_json.encode().ljust(n, b" "))),
    st.sampled_from(["", " ", "null", "[]", '""', "0", "{", "}", '{"a":1}{"b":2}', valid_json + "x"]).map(
        lambda raw: ("short JSON-ish", raw.encode())),
)
# Near-valid bodies first: hypothesis favours earlier branches, and they are what gets deepest into validation.
create_bodies = st.one_of(near_valid_bodies(), st.just(("valid body", valid_json.encode())), near_valid_bodies(),
                          deep_bodies(), near_valid_bodies(), other_bodies)

header_values = st.one_of(
    st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=40).map(
        lambda v: v.encode("latin-1")),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=40).map(
        lambda v: v.encode()),
    st.sampled_from([b"", b" ", b"\t", b"\x00", b"\x7f", b"\xff", b"*/*", b"return=minimal",
                     b"return=representation; respond-async, wait=100000"]),
    st.sampled_from([8 * 1024, 60 * 1024, 70 * 1024]).map(lambda n: b"x" * n),
)
content_types = st.one_of(
    st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"APPLICATION/JSON",
                     b"application/json;charset=latin-1", b"application/json; charset=utf-16",
                     b" application/json ", b"application/json;;;", b"application/problem+json",
                     b"application/merge-patch+json", b"application/x+json", b"application/+json",
                     b"application/jsonx", b"application/json-patch", b"text/json", b"text/plain",
                     b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", b"", b";",
                     b"application/json\x00"]),
    header_values,
)
extra_header_names = st.one_of(
    st.sampled_from(["Prefer", "Accept", "Accept-Charset", "Accept-Encoding", "Authorization", "Cookie", "Origin",
                     "X-Forwarded-For", "X-Forwarded-Host", "X-HTTP-Method-Override", "X-Original-URL",
                     "X-MS-CLIENT-PRINCIPAL-ID", "client-request-id", "If-Match", "Range", "X-Correlation-ID",
                     "Content-Type"]),
    st.text(token_chars, min_size=1, max_size=20).filter(
        lambda n: n.lower() not in ("host", "content-length", "transfer-encoding", "connection", "expect")),
)


@st.composite
def headers_for(draw: st.DrawFn, content_type: bool) -> tuple[tuple[tuple[str, bytes], ...], bool]:
    """Headers (function key right, wrong, missing or in the query), and whether the key goes in the query."""
    headers: list[tuple[str, bytes]] = []
    key = draw(st.sampled_from(["header", "header", "header", "query", "none", "wrong", "empty", "padded"]))
    if key == "header":
        headers.append(("x-functions-key", FUNCTION_KEY.encode()))
    elif key == "wrong":
        headers.append(("x-functions-key", draw(header_values)))
    elif key == "empty":
        headers.append(("x-functions-key", b""))
    elif key == "padded":
        headers.append(("X-Functions-Key", b" " + FUNCTION_KEY.encode() + b"\t"))
    if content_type:
        headers.append(("Content-Type", draw(st.one_of(st.just(b"application/json"), content_types))))
    elif draw(st.booleans()):
        headers.append(("Content-Type", draw(content_types)))
    correlation = draw(st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._:-]{8,128}", fullmatch=True).map(
        str.encode), header_values))
    if correlation is not None:
        headers.append(("X-Correlation-ID", correlation))
    headers += draw(st.lists(st.tuples(extra_header_names, header_values), max_size=3))
    return tuple(headers), key == "query"


segments = st.one_of(
    st.sampled_from(["", ".", "..", "%2e%2e", "%2F", "%2f", "%00", "%", "%zz", "%C0%AF", "%ED%A0%80", "%FF", "~",
                     ";x=1", "alerts", "files", "CreateAlertByReference", SEED_FILE_SHA1, "%20", "%E3%80%80"]),
    st.tuples(st.text(st.characters(exclude_categories=[]), max_size=30),
              st.sampled_from(["", ":@!$&'()*+,;=", "%"])).map(
        lambda t: urllib.parse.quote(t[0], safe=t[1], errors="surrogatepass")),
    st.text(st.characters(exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], exclude_characters="?#/%"),
            min_size=1, max_size=20),  # raw UTF-8 in the request line
)
sha1_segments = st.one_of(
    st.just(SEED_FILE_SHA1),
    st.text("0123456789abcdefABCDEF", min_size=40, max_size=40),
    st.sampled_from([0, 1, 32, 39, 41, 64, 128]).flatmap(lambda n: st.text("0123456789abcdef", min_size=n,
                                                                           max_size=n)),
    st.tuples(digit_scripts, st.one_of(st.none(), st.integers(0, 39))).map(
        lambda d: urllib.parse.quote(with_digits(SEED_FILE_SHA1, d[0], d[1]))),
    st.just(urllib.parse.quote(full_width(SEED_FILE_SHA1))),
    st.sampled_from(["%00", "%20", "%09", "%0A", "%0B", "%E3%80%80", "%C2%A0", "+"]).flatmap(
        lambda pad: st.sampled_from([pad + SEED_FILE_SHA1, SEED_FILE_SHA1 + pad, SEED_FILE_SHA1[:20] + pad
                                     + SEED_FILE_SHA1[20:]])),
    st.sampled_from([41, 1000, 8000, 65000, 70000]).map(lambda n: "a" * n),
    segments,
)


def queries(key_in_query: bool) -> st.SearchStrategy[str]:
    junk = st.lists(st.tuples(st.one_of(st.just("code"), st.text(max_size=10)), st.text(max_size=20)), max_size=3)
    return junk.map(lambda pairs: urllib.parse.urlencode(
        ([("code", FUNCTION_KEY)] if key_in_query else []) + pairs, errors="surrogatepass"))


@st.composite
def probes(draw: st.DrawFn) -> Probe:
    route = draw(st.sampled_from(["file", "create", "create", "other"]))
    any_method = st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                                            "get", "post", "Post", "PROPFIND"]),
                           st.text(string.ascii_letters, min_size=1, max_size=10))
    headers, key_in_query = draw(headers_for(content_type=route == "create"))
    body: bytes | None = None
    if route == "file":
        method = draw(st.one_of(st.just("GET"), any_method))
        path = f"/api/files/{draw(sha1_segments)}/alerts" + draw(st.sampled_from(["", "/", "//"]))
        label = "file alerts"
        if draw(st.integers(0, 4)) == 0:
            label, body = draw(create_bodies)
    elif route == "create":
        method = draw(st.one_of(st.just("POST"), any_method))
        path = "/api/alerts/" + draw(st.sampled_from(["CreateAlertByReference", "createalertbyreference",
                                                       "CREATEALERTBYREFERENCE", "CreateAlertByReference/"]))
        label, body = draw(create_bodies)
    else:
        method = draw(any_method)
        prefix = draw(st.sampled_from(["/api/alerts/", "/api/files/", "/api/", "/", "//api/files/", "/api/alerts"]))
        tail = draw(st.lists(segments, min_size=0, max_size=4))
        path = prefix + "/".join(tail)
        if draw(st.booleans()):
            path += "/alerts"
        label = "other path"
        if draw(st.booleans()):
            label, body = draw(create_bodies)
    query = draw(queries(key_in_query))
    target = utf8(path) + (b"?" + query.encode() if query else b"")
    return Probe(label, method, target, headers, body)


@st.composite
def create_probes(draw: st.DrawFn) -> Probe:
    """A keyed POST to the create endpoint: only the body (and sometimes the content type) varies."""
    label, body = draw(create_bodies)
    content_type = draw(st.one_of(st.just(b"application/json"), content_types))
    return Probe(label, "POST", CREATE_PATH.encode(),
                 (("x-functions-key", FUNCTION_KEY.encode()), ("Content-Type", content_type)), body)


# -- the tests ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_target(host_factory: HostFactory, simulator_server: Server,
                request: pytest.FixtureRequest) -> Iterator[Target]:
    """A host of its own, and the simulator (kept in its reset state before every request, see `exchange`)."""
    gateway = host_factory()
    target = Target(gateway, SimulatorAdmin(simulator_server.url))
    yield target
    gateway.host.stop()
    seen = ", ".join(f"{status} {shape} x{count}" for (status, shape), count in sorted(target.host_answers.items()))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and seen:
        with capture.global_and_fixture_disabled():  # shown even when the tests pass
            reporter.write_line(f"\n{__name__}: 4xx answers from the host itself (status, body): {seen}")


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no "explain" phase: every replay is an HTTP call
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@FUZZ_SETTINGS
@given(probe=probes())
def test_random_requests_keep_the_properties(fuzz_target: Target, probe: Probe) -> None:
    """Any path, method, headers and body, with or without the key."""
    check_properties(fuzz_target, probe)


@FUZZ_SETTINGS
@given(probe=create_probes())
def test_random_create_bodies_keep_the_properties(fuzz_target: Target, probe: Probe) -> None:
    """Keyed creates whose body (and content type) vary: near-valid, random JSON, deep, huge, not UTF-8."""
    check_properties(fuzz_target, probe)


def _create(label: str, body: str | bytes, *, content_type: bytes = b"application/json") -> Probe:
    return Probe(label, "POST", CREATE_PATH.encode(),
                 (("x-functions-key", FUNCTION_KEY.encode()), ("Content-Type", content_type)),
                 body if isinstance(body, bytes) else utf8(body))


def _with(name: str, raw: str) -> str:
    return object_text([(key, raw if key == name else lit(value)) for key, value in VALID.items()])


EDGE_CASES = [
    _create("valid", valid_json),
    _create("nested 1000 deep", "[" * 1000 + "]" * 1000),
    _create("nested 20000 deep", "[" * 20000 + "]" * 20000),
    _create("title nested 5000 deep", _with("title", "[" * 5000 + "]" * 5000)),
    _create("reportId 4301-digit int", _with("reportId", "1" * 4301)),
    _create("unknown field 5000-digit int", object_text([*((k, lit(v)) for k, v in VALID.items()), ("x", "9" * 5000)])),
    _create("reportId 2**64", _with("reportId", str(2**64))),
    _create("reportId NaN", _with("reportId", "NaN")),
    _create("eventTime Infinity", _with("eventTime", "Infinity")),
    _create("eventTime arabic-indic digits", _with("eventTime", lit(with_digits(str(SEED_EVENT["eventTime"]),
                                                                                UNICODE_DIGITS["arabic-indic"])))),
    _create("eventTime full-width digits", _with("eventTime", lit(with_digits(str(SEED_EVENT["eventTime"]),
                                                                              UNICODE_DIGITS["full-width"])))),
    _create("eventTime one devanagari digit", _with("eventTime", lit(with_digits(str(SEED_EVENT["eventTime"]),
                                                                                 UNICODE_DIGITS["devanagari"], 0)))),
    _create("reportId arabic-indic digits", _with("reportId", lit("٢٠١٨"))),
    _create("reportId with NUL", _with("reportId", lit(str(SEED_EVENT["reportId"]) + "\x00"))),
    _create("reportId lone surrogate", _with("reportId", lit("\ud800"))),
    _create("reportId 5000 digits", _with("reportId", lit("1" * 5000))),
    _create("title with NUL", _with("title", lit("a\x00b"))),
    _create("title lone surrogate", _with("title", lit("a\udfffb"))),
    _create("title unescaped lone surrogate", _with("title", lit("a\ud800b", ascii_only=False))),
    _create("duplicate severity", valid_json[:-1] + ', "severity": "Critical"}'),
    _create("body of 64 KiB + 1", valid_json.encode().ljust(MAX_BODY_BYTES + 1)),
    _create("valid body in UTF-16", valid_json.encode("utf-16")),
    _create("latin-1 body", json.dumps({**VALID, "title": "café"}, ensure_ascii=False).encode("latin-1")),
    _create("no content type", valid_json, content_type=b""),
    Probe("no key", "GET", f"/api/files/{SEED_FILE_SHA1}/alerts".encode()),
    Probe("wrong key", "GET", f"/api/files/{SEED_FILE_SHA1}/alerts".encode(), (("x-functions-key", b"nope"),)),
    Probe("no route", "GET", b"/api/nothing", (("x-functions-key", FUNCTION_KEY.encode()),)),
    Probe("wrong method", "DELETE", CREATE_PATH.encode(), (("x-functions-key", FUNCTION_KEY.encode()),)),
    Probe("full-width sha1", "GET", f"/api/files/{urllib.parse.quote(full_width(SEED_FILE_SHA1))}/alerts".encode(),
          (("x-functions-key", FUNCTION_KEY.encode()),)),
    Probe("request line over 64 KiB", "GET", b"/api/files/" + b"a" * 70000 + b"/alerts"),
    Probe("header over 64 KiB", "GET", f"/api/files/{SEED_FILE_SHA1}/alerts".encode(),
          (("x-functions-key", FUNCTION_KEY.encode()), ("X-Correlation-ID", b"x" * 70000))),
]


@pytest.mark.parametrize("probe", EDGE_CASES, ids=[probe.label for probe in EDGE_CASES])
def test_edge_cases_keep_the_properties(fuzz_target: Target, probe: Probe) -> None:
    check_properties(fuzz_target, probe)


def failure_kind(error: AssertionError) -> str:
    first = str(error).splitlines()[0]
    if match := re.fullmatch(r"(\w+)=.* reached Defender", first):
        return f"an invalid {match[1]} reached Defender"
    return first.split(" for <", 1)[0][:200]


def test_every_fixed_mutation_keeps_the_properties(fuzz_target: Target) -> None:
    """Each fixed one-field mutation of the valid body, in place: all of them, every run (about 10 s)."""
    failures: dict[str, list[str]] = {}
    for name, label, raw in FIXED_MUTATIONS:
        probe = _create(f"{name} <- {label}", _with(name, raw))
        try:
            check_properties(fuzz_target, probe)
        except AssertionError as error:
            failures.setdefault(failure_kind(error), []).append(probe.label)
    assert not failures, "\n".join(f"{reason}\n    in: {', '.join(labels)}" for reason, labels in failures.items())
