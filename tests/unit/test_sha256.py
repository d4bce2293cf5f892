"""Lookups by SHA-256, in process: the real entry point, edge, gateway, client and limiters over a scripted
Defender. A SHA-256 is resolved to the file's SHA-1 with Get file information (its own budget, File.Read.All),
kept in the shared map, then looked up like the SHA-1; an unknown file is 200 with no alerts."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import azure.functions as func
import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.data.tables import TableClient

import file_alerts_fn
from localdev.invocation import run
from shared import runtime
from shared.asynchronous.messages import InvalidMessageError, RequestMessage, encode, parse
from shared.configuration import ConfigurationError
from shared.defender.client import DefenderRequest
from shared.defender.facts import DEFENDER_APP_ID, Api
from shared.defender.outcomes import Malformed, Rejected, Success, classify
from shared.lookups.hash_map import PARTITION, FileHashMap
from shared.settings import load_settings
from shared.validation import FileHash, HashKind, InvalidInputError, validate_file_hash
from tests.support.rigs import GATEWAY_URL, UNIT_ENV, EdgeRig, make_edge, response_problem
from tests.support.scripted import DEFENDER_URL, FakeTable, Reply, alerts_reply, error_reply

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
SHA256 = "c4bc2cafdb2881be3e6912ac60fad245fcc918f68ced49110166f9dd21603d8a"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
EMPTY_ALERTS = {"@odata.context": f"{DEFENDER_URL}/api/$metadata#Alerts", "value": []}
FILE_INFO_POLICY = '"60s";q=100;w=60, "3600s";q=1500;w=3600'


def file_reply(sha1: str | None = SHA1, sha256: str = SHA256, **fields: Any) -> Reply:
    """Get file information as Defender answers it: the file entity."""
    return Reply(200, {"@odata.context": f"{DEFENDER_URL}/api/$metadata#Files/$entity", "sha1": sha1,
                       "sha256": sha256, "globalPrevalence": 2, "fileType": "PS1", "isPeFile": False, **fields})


def with_map(rig: EdgeRig, table: FakeTable | None = None) -> FakeTable:
    """Give the rig's edge the shared SHA-256 map over `table` (a new one by default)."""
    table = table or FakeTable()
    rig.edge.lookups.hash_map = FileHashMap(cast(TableClient, table))
    return table


@pytest.fixture
def lookup(monkeypatch: pytest.MonkeyPatch) -> Callable[..., func.HttpResponse]:
    """GET /api/files/{fileHash}/alerts through the real entry point (GetFileRelatedAlerts), called as the host
    calls it, and a rig's edge."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(file_alerts_fn.bp)
    (function,) = [f.get_user_function() for f in app.get_functions()]

    def call(rig: EdgeRig, file_hash: str, *, headers: dict[str, str] | None = None) -> func.HttpResponse:
        monkeypatch.setattr(runtime, "_runtime", SimpleNamespace(edge=rig.edge))
        request = func.HttpRequest("GET", f"{GATEWAY_URL}/api/files/{file_hash}/alerts", headers=headers or {},
                                   route_params={"fileHash": file_hash}, body=b"")
        response: func.HttpResponse = run("GetFileRelatedAlerts", function, request)
        return response

    return call


def sent_paths(rig: EdgeRig) -> list[str]:
    return [call.url.removeprefix(DEFENDER_URL) for call in rig.transport.calls]


# --- validation ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (SHA1, FileHash(HashKind.SHA1, SHA1)),
    (SHA1.upper(), FileHash(HashKind.SHA1, SHA1)),
    (SHA256, FileHash(HashKind.SHA256, SHA256)),
    (f" {SHA256.upper()}\t", FileHash(HashKind.SHA256, SHA256)),
])
def test_a_sha1_or_sha256_is_returned_in_lower_case_with_its_kind(raw: str, expected: FileHash) -> None:
    assert validate_file_hash(raw) == expected
    kind, value = validate_file_hash(raw)  # a (kind, value) pair
    assert (kind, value) == tuple(expected)


@pytest.mark.parametrize(("raw", "says"), [
    (MD5, "looks like an MD5 hash"),
    ("ab" * 64, "looks like a SHA-512 hash"),
    ("", "must be a SHA-1 or SHA-256 hash"),
    (SHA256[:-1], "must be a SHA-1 or SHA-256 hash"),
    (SHA256[:-1] + "g", "must be a SHA-1 or SHA-256 hash"),
    (SHA256[:-1] + "\u0661", "must be a SHA-1 or SHA-256 hash"),  # another script's digit
    (SHA256 + "\u3000", "must be a SHA-1 or SHA-256 hash"),
])
def test_anything_else_is_400_naming_the_field(raw: str, says: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_file_hash(raw)
    (error,) = caught.value.errors
    assert error.field == "route.fileHash" and says in error.message
    with pytest.raises(InvalidInputError) as named:
        validate_file_hash(raw, field="fileHash")
    assert named.value.errors[0].field == "fileHash"


# --- the file entity's documented shape ---------------------------------------------------------------------------

@pytest.mark.parametrize(("document", "success"), [
    ({"sha1": SHA1, "sha256": SHA256}, True),
    ({"sha1": SHA1.upper()}, True),
    ({"sha1": None, "sha256": SHA256}, False),
    ({"sha256": SHA256}, False),
    ({"sha1": SHA1[:-1]}, False),
    ({"sha1": "../../alerts/CreateAlertByReference"}, False),
    ({"sha1": 42}, False),
    ({"value": []}, False),
    ([SHA1], False),
])
def test_file_information_succeeds_only_with_a_sha1(document: Any, success: bool) -> None:
    outcome = classify(Api.FILE_INFO, 200, {}, json.dumps(document).encode())
    assert isinstance(outcome, Success) is success
    if not success:
        assert outcome == Malformed(200, is_json=True)


def test_file_information_404_is_a_rejection() -> None:
    outcome = classify(Api.FILE_INFO, 404, {}, json.dumps({"error": {"code": "ResourceNotFound"}}).encode())
    assert isinstance(outcome, Rejected) and outcome.status == 404


def test_the_file_info_request() -> None:
    request = DefenderRequest.file_info(SHA256)
    assert (request.api, request.method, request.path, request.body) == (Api.FILE_INFO, "GET", f"/api/files/{SHA256}",
                                                                         None)


# --- lookups by SHA-256 through the edge --------------------------------------------------------------------------

def test_a_sha256_is_resolved_then_looked_up_by_its_sha1(lookup: Callable[..., func.HttpResponse]) -> None:
    alerts = alerts_reply({"id": "da1", "title": "x"})
    rig = make_edge([file_reply(), alerts])
    table = with_map(rig)
    response = lookup(rig, SHA256.upper())
    assert response.status_code == 200 and response.get_body() == alerts.content()
    assert sent_paths(rig) == [f"/api/files/{SHA256}", f"/api/files/{SHA1}/alerts"]
    assert response.headers["RateLimit-Policy"] == FILE_INFO_POLICY  # the alerts API's: same numbers
    assert table.entities == {(PARTITION, SHA256): {"PartitionKey": "sha256", "RowKey": SHA256, "Sha1": SHA1}}
    # Both calls carry the caller's correlation id.
    assert len({call.headers["client-request-id"] for call in rig.transport.calls}) == 1
    # Each API spent a slot of its own budget.
    assert [api for _, api, _ in rig.store.writes] == ["file_info", "file_alerts"]


def test_a_repeated_sha256_costs_no_resolution(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([file_reply(), alerts_reply(), alerts_reply()])
    with_map(rig)
    assert lookup(rig, SHA256).status_code == 200
    assert lookup(rig, SHA256).status_code == 200
    assert sent_paths(rig) == [f"/api/files/{SHA256}", f"/api/files/{SHA1}/alerts", f"/api/files/{SHA1}/alerts"]
    rig.transport.assert_done()


def test_a_queued_lookup_and_a_get_take_one_lookup_path(lookup: Callable[..., func.HttpResponse]) -> None:
    """The queue worker and the HTTP edge share one FileAlertsLookups: the SHA-256 a queued lookup resolved is known
    to the GET that follows, which sends only the alerts call."""
    rig = make_edge([file_reply(), alerts_reply(), alerts_reply()])
    table = with_map(rig)
    assert rig.runtime.worker.lookups is rig.edge.lookups
    rig.runtime.worker.handle(json.dumps({"version": 1, "id": "q-sha256", "operation": "GetFileRelatedAlerts",
                                          "fileHash": SHA256}))
    operation = rig.runtime.operations.get("q-sha256")
    assert operation is not None and operation.answer is not None and operation.answer.status == 200
    assert sent_paths(rig) == [f"/api/files/{SHA256}", f"/api/files/{SHA1}/alerts"]
    assert table.entities[(PARTITION, SHA256)]["Sha1"] == SHA1
    assert lookup(rig, SHA256).status_code == 200
    assert sent_paths(rig)[2:] == [f"/api/files/{SHA1}/alerts"]
    rig.transport.assert_done()


def test_without_a_map_every_sha256_is_resolved(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([file_reply(), alerts_reply(), file_reply(), alerts_reply()])
    assert lookup(rig, SHA256).status_code == 200 and lookup(rig, SHA256).status_code == 200
    rig.transport.assert_done()


@pytest.mark.parametrize("failure", [ServiceRequestError("down"), HttpResponseError("boom")])
def test_a_failing_map_is_a_miss_never_a_failed_lookup(lookup: Callable[..., func.HttpResponse],
                                                       failure: Exception) -> None:
    rig = make_edge([file_reply(), alerts_reply()])
    table = with_map(rig)
    table.failure = failure
    assert lookup(rig, SHA256).status_code == 200
    assert table.entities == {} and table.reads == 1
    rig.transport.assert_done()


def test_a_missing_map_table_is_created_on_first_store(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([file_reply(), alerts_reply()])
    table = with_map(rig, FakeTable(exists=False))
    assert lookup(rig, SHA256).status_code == 200
    assert table.exists and table.entities[(PARTITION, SHA256)]["Sha1"] == SHA1


def test_an_unreadable_map_entry_is_a_miss() -> None:
    table = FakeTable()
    table.entities[(PARTITION, SHA256)] = {"PartitionKey": PARTITION, "RowKey": SHA256, "Sha1": "nope"}
    hashes = FileHashMap(cast(TableClient, table))
    assert hashes.get(SHA256) is None
    assert hashes.put(SHA256, "NOPE") is False and hashes.put(SHA256, SHA1) is True and hashes.get(SHA256) == SHA1


def test_an_unknown_file_is_200_with_no_alerts_and_no_alerts_call(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([error_reply(404, "ResourceNotFound", f"File {SHA256} was not found.")])
    table = with_map(rig)
    response = lookup(rig, SHA256)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert json.loads(response.get_body()) == EMPTY_ALERTS  # as Defender answers an unknown SHA-1
    assert sent_paths(rig) == [f"/api/files/{SHA256}"]
    assert response.headers["Cache-Control"] == "no-store" and response.headers["RateLimit"].startswith('"60s";r=99')
    assert table.entities == {}  # the file may become known: nothing kept


@pytest.mark.parametrize(("reply", "status", "kind", "says"), [
    (error_reply(403, "Forbidden", "Missing application roles. API required roles: File.Read.All. Application "
                                   "roles: Alert.Read.All"), 502, "upstream-forbidden",
     f"The identity needs the application role File.Read.All on WindowsDefenderATP (appId {DEFENDER_APP_ID})"),
    (error_reply(403, "Forbidden", "Access denied"), 502, "upstream-forbidden", "File.Read.All"),
    (error_reply(401, "Unauthorized", "Invalid token"), 502, "upstream-unauthorized", "(401)"),
    (error_reply(429, "TooManyRequests", "Rate limit is exceeded", retry_after="40"), 429, "upstream-throttled",
     "retry after 40 s"),
    (error_reply(500, "InternalServerError", "oops"), 502, "upstream-error", "failed with 500"),
    (error_reply(503, "ServiceUnavailable", "busy", retry_after="30"), 503, "upstream-unavailable", "30 s"),
    (error_reply(400, "InvalidHashValue", "bad hash"), 400, "upstream-bad-request", "InvalidHashValue"),
    (file_reply(sha1=None), 502, "upstream-malformed", "not the documented shape"),
], ids=["403-role", "403-unknown", "401", "429", "500", "503", "400", "malformed"])
def test_a_failed_resolution_is_answered_like_any_call_and_asks_no_alerts(
        lookup: Callable[..., func.HttpResponse], reply: Reply, status: int, kind: str, says: str) -> None:
    rig = make_edge([reply])
    with_map(rig)
    response = lookup(rig, SHA256)
    document = response_problem(response, status)
    assert document["type"] == f"urn:mde-alert-gateway:problem:{kind}" and says in document["detail"]
    assert response.headers["RateLimit-Policy"] == FILE_INFO_POLICY
    assert sent_paths(rig) == [f"/api/files/{SHA256}"]


def test_defenders_429_on_file_information_holds_only_that_api(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([error_reply(429, "TooManyRequests", "Rate limit is exceeded", retry_after="40"), alerts_reply()])
    assert lookup(rig, SHA256).status_code == 429
    held = lookup(rig, "ab" * 32)  # held by the shared block, nothing sent
    response_problem(held, 429)
    assert 38 <= int(held.headers["Retry-After"]) <= 40
    assert lookup(rig, SHA1).status_code == 200  # the alerts API is not held
    assert sent_paths(rig) == [f"/api/files/{SHA256}", f"/api/files/{SHA1}/alerts"]


def test_the_file_information_budget_is_its_own(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([file_reply(), alerts_reply(), alerts_reply()], limits={Api.FILE_INFO: "1/60"})
    assert lookup(rig, SHA256).status_code == 200
    refused = lookup(rig, "ab" * 32)
    document = response_problem(refused, 429)
    assert document["type"].endswith(":rate-limited") and "Nothing was sent to Defender." in document["detail"]
    assert refused.headers["RateLimit-Policy"] == '"60s";q=1;w=60'
    assert int(refused.headers["Retry-After"]) >= 60
    assert lookup(rig, SHA1).status_code == 200  # SHA-1 lookups still pass
    assert sent_paths(rig) == [f"/api/files/{SHA256}", f"/api/files/{SHA1}/alerts", f"/api/files/{SHA1}/alerts"]


def test_a_known_sha256_needs_no_file_information_budget(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([file_reply(), alerts_reply(), alerts_reply()], limits={Api.FILE_INFO: "1/60"})
    with_map(rig)
    assert lookup(rig, SHA256).status_code == 200
    assert lookup(rig, SHA256).status_code == 200  # the budget is spent, but the map knows it
    rig.transport.assert_done()


def test_md5_is_400_and_nothing_is_sent(lookup: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge()
    document = response_problem(lookup(rig, MD5), 400, "route.fileHash")
    assert "MD5" in document["errors"][0]["message"]
    assert rig.transport.calls == [] and rig.store.writes == []


# --- queue messages -------------------------------------------------------------------------------------------------

def test_a_queue_message_may_name_a_sha256() -> None:
    message = parse(json.dumps({"version": 1, "id": "m1", "operation": "GetFileRelatedAlerts",
                                "fileHash": SHA256.upper()}))
    assert message.request == DefenderRequest.file_alerts(SHA256)
    assert parse(encode(RequestMessage("m1", message.request))) == message


@pytest.mark.parametrize("file_hash", [MD5, "ab" * 64, "x", 42, None])
def test_a_queue_message_with_another_hash_is_invalid_naming_file_hash(file_hash: Any) -> None:
    with pytest.raises(InvalidMessageError) as caught:
        parse(json.dumps({"version": 1, "id": "m1", "operation": "GetFileRelatedAlerts", "fileHash": file_hash}))
    assert [error.field for error in caught.value.errors] == ["fileHash"]


# --- the setting ----------------------------------------------------------------------------------------------------

def test_the_file_hash_table_setting() -> None:
    assert load_settings(UNIT_ENV).answer_cache.file_hash_table == "mdegatewayfilehashes"
    assert load_settings({**UNIT_ENV, "FILE_HASH_TABLE": "hashes2"}).answer_cache.file_hash_table == "hashes2"
    with pytest.raises(ConfigurationError, match="FILE_HASH_TABLE must be a table name"):
        load_settings({**UNIT_ENV, "FILE_HASH_TABLE": "no-dashes"})


@pytest.mark.parametrize("other", ["RATE_LIMIT_TABLE", "ANSWER_CACHE_TABLE", "OPERATIONS_TABLE"])
def test_the_file_hash_table_must_be_its_own(other: str) -> None:
    with pytest.raises(ConfigurationError, match="FILE_HASH_TABLE must differ"):
        load_settings({**UNIT_ENV, other: "sametable", "FILE_HASH_TABLE": "SameTable"})
