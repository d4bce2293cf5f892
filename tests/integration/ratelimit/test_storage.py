"""The table failing or unreachable: a dedicated error within the client's bounded attempts, never an admission;
recovery after. How long a failure takes is the machine's: bench/failure_bench.py measures it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient

from localdev.azurite import DEV_ACCOUNT, DEV_KEY, Azurite, start_azurite
from localdev.processes import free_port
from localdev.silent import SilentServer
from shared.ratelimit import CLIENT_OPTIONS, RateLimiter, RateLimitStorageError, TableStore
from tests.support.scripted import FakeClock, policy


def connection_string(port: int, key: str = DEV_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};"
            f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")


def limiter_on(conn: str, table: str = "ratelimits") -> RateLimiter:
    client = TableClient.from_connection_string(conn, table, **CLIENT_OPTIONS)
    return RateLimiter(TableStore(client), policy("100/60"), margin_seconds=0, max_conflict_retries=3,
                       clock=FakeClock(), sync_clock=False)


def test_nothing_listening_is_a_storage_error() -> None:
    limiter = limiter_on(connection_string(free_port()))
    with pytest.raises(RateLimitStorageError, match="read failed"):
        limiter.acquire("p")
    with pytest.raises(RateLimitStorageError):
        limiter.block("p", 10)


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    """A server that accepts connections and never answers."""
    with SilentServer() as server:
        yield server


def test_hanging_storage_fails_after_one_retry(silent: SilentServer) -> None:
    limiter = limiter_on(connection_string(silent.port))
    with pytest.raises(RateLimitStorageError, match="ServiceResponseTimeoutError"):
        limiter.acquire("p")
    assert silent.connections == 2  # the read timed out, was retried once (CLIENT_OPTIONS), then given up


def test_threads_waiting_on_a_hanging_table_do_not_queue_up(silent: SilentServer) -> None:
    limiter = limiter_on(connection_string(silent.port))
    errors: list[Exception] = []

    def call() -> None:
        try:
            limiter.acquire("p")
        except RateLimitStorageError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert len(errors) == 6  # every thread was answered; none waited on another's hanging request for ever
    assert silent.connections <= 12  # and each made at most its two attempts


def test_rejected_credentials_are_a_storage_error(azurite: Azurite) -> None:
    wrong_key = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ=="
    with pytest.raises(RateLimitStorageError, match="HTTP 403"):
        limiter_on(connection_string(azurite.table_port, wrong_key)).acquire("p")


def test_unreadable_entity_is_refused_not_reset(azurite: Azurite, table_name: str) -> None:
    client = TableClient.from_connection_string(azurite.connection_string, table_name)
    client.create_table()
    client.create_entity({"PartitionKey": "p", "RowKey": "file_alerts", "Format": 99})
    with pytest.raises(RateLimitStorageError, match="unknown rate-limit entity format"):
        limiter_on(azurite.connection_string, table_name).acquire("p")


def test_storage_down_then_back() -> None:
    """A private Azurite stops (errors, fast) and restarts on the same port (works again)."""
    server = start_azurite()
    limiter = limiter_on(server.connection_string)
    try:
        assert limiter.acquire("p").admitted
        server.stop()
        for _ in range(3):
            with pytest.raises(RateLimitStorageError):
                limiter.acquire("p")
        server = start_azurite(blob_port=server.blob_port, queue_port=server.queue_port,
                               table_port=server.table_port)
        # In-memory Azurite lost the table: it is created again on first use.
        decision = limiter.acquire("p")
        assert decision.admitted
    finally:
        server.stop()
