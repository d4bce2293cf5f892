"""Azure's storage errors become the gateway's in one place (shared/tables/errors.py): every store says what failed as
`HTTP <status>` or the error's class name, never the SDK's message (it may name the account or hold a SAS), and no
store builds a gateway error from an Azure one by hand. The clients here are scripted: every call raises."""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError

from shared.asynchronous.operations import OperationsStorageError
from shared.asynchronous.operations_table import TableOperationStore
from shared.asynchronous.queues import Hidden, QueueStorageError, StorageQueues
from shared.lookups.answer_cache import AnswerCache
from shared.lookups.hash_map import FileHashMap
from shared.ratelimit import RateLimitStorageError, TableStore, Tally
from shared.settings import load_async_settings
from shared.tables.errors import described, translated

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sig=s3cr3t"


def http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(f"The server said no. RequestUrl: https://acct.table.core.windows.net/t?{SECRET}")
    error.status_code = status
    return error


def unreachable() -> ServiceRequestError:
    return ServiceRequestError(f"Connection refused: https://acct.queue.core.windows.net/q?{SECRET}")


FAILURES: list[tuple[Callable[[], AzureError], str]] = [(lambda: http_error(503), "HTTP 503"),
                                                          (unreachable, "ServiceRequestError")]


class Failing:
    """A TableClient, QueueClient or QueueServiceClient whose every call raises `error`."""

    table_name = queue_name = "scripted"

    def __init__(self, error: AzureError) -> None:
        self.error = error

    def get_queue_client(self, _: str) -> Failing:
        return self

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*_: Any, **__: Any) -> Any:
            raise self.error
        return call


def _operations(client: Failing) -> None:
    TableOperationStore(client, 3600).get("op-1")  # type: ignore[arg-type]


def _pending(client: Failing) -> None:
    list(TableOperationStore(client, 3600).pending())  # type: ignore[arg-type]


def _purge(client: Failing) -> None:
    TableOperationStore(client, 3600).purge_unindexed()  # type: ignore[arg-type]


def _queue_put(client: Failing) -> None:
    StorageQueues(client, load_async_settings({})).put("requests", "{}")  # type: ignore[arg-type]


def _queue_delete(client: Failing) -> None:
    StorageQueues(client, load_async_settings({})).delete(Hidden("requests", "m1", "{}", "r1"))  # type: ignore[arg-type]


def _limiter_read(client: Failing) -> None:
    TableStore(client).read("p", "file_alerts", Tally())  # type: ignore[arg-type]


@pytest.mark.parametrize(("use", "kind"), [
    (_operations, OperationsStorageError), (_pending, OperationsStorageError), (_purge, OperationsStorageError),
    (_queue_put, QueueStorageError), (_queue_delete, QueueStorageError), (_limiter_read, RateLimitStorageError),
])
@pytest.mark.parametrize(("failure", "says"), FAILURES)
def test_every_store_says_what_failed_and_never_the_sdks_message(use: Callable[[Failing], None], kind: type[Exception],
                                                                 failure: Callable[[], AzureError], says: str) -> None:
    with pytest.raises(kind) as caught:
        use(Failing(failure()))
    assert says in str(caught.value) and SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # raised from None: no chained text


@pytest.mark.parametrize(("read", "what"), [
    (lambda client: AnswerCache(client, 60).get("principal", "a" * 40), "answer cache"),
    (lambda client: FileHashMap(client).get("b" * 64), "file hash map"),
])
@pytest.mark.parametrize(("failure", "says"), FAILURES)
def test_a_failed_best_effort_read_is_a_miss_logged_without_the_sdks_message(
        read: Callable[[Failing], object], what: str, failure: Callable[[], AzureError], says: str,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert read(Failing(failure())) is None
    assert [record.getMessage() for record in caplog.records] == [f"{what}: read failed ({says}); asking Defender"]


def test_a_missing_entity_is_a_quiet_miss(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert FileHashMap(Failing(http_error(404))).get("b" * 64) is None  # type: ignore[arg-type]
    assert caplog.records == []


def test_translated_lets_through_what_the_caller_takes() -> None:
    def lost_race(error: AzureError) -> bool:
        return described(error) == "HTTP 412"

    with pytest.raises(HttpResponseError), translated(RuntimeError, letting=lost_race):
        raise http_error(412)
    with pytest.raises(RuntimeError) as caught, translated(RuntimeError, letting=lost_race):
        raise http_error(500)
    assert str(caught.value) == "HTTP 500"


def _builds_an_error_in_an_azure_handler(path: Path) -> list[str]:
    """`raise SomeError(...)` inside `except AzureError` / `except HttpResponseError` (a bare `raise` is fine)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            caught = {name.id for name in ast.walk(node.type) if isinstance(name, ast.Name)}
            if caught & {"AzureError", "HttpResponseError"}:
                found.extend(f"{path.relative_to(ROOT)}:{inner.lineno}" for statement in node.body
                             for inner in ast.walk(statement) if isinstance(inner, ast.Raise) and inner.exc is not None)
    return found


def test_no_store_translates_azure_errors_by_hand() -> None:
    """Every module of shared/ that talks to Table or Queue Storage (the identity's errors are another matter)."""
    own = ROOT / "shared" / "tables" / "errors.py"
    stores = [path for path in (ROOT / "shared").rglob("*.py") if path != own
              and any(sdk in path.read_text() for sdk in ("azure.data.tables", "azure.storage.queue"))]
    assert len(stores) >= 6
    assert sorted(place for path in stores for place in _builds_an_error_in_an_azure_handler(path)) == []
