"""The table failing or unreachable: a dedicated error, fast, never an admission; recovery after."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient

from localdev.azurite import DEV_ACCOUNT, DEV_KEY, Azurite, start_azurite
from localdev.processes import free_port
from shared.ratelimit import CLIENT_OPTIONS, RateLimiter, RateLimitStorageError, TableStore
from tests.support.scripted import FakeClock, policy


def connection_string(port: int, key: str = DEV_KEY) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};"
            f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")


def limiter_on(conn: str, table: str = "ratelimits") -> RateLimiter:
    client = TableClient.from_connection_string(conn, table, **CLIENT_OPTIONS)
    return RateLimiter(TableStore(client), policy("100/60"), margin_seconds=0, max_conflict_retries=3,
                       clock=FakeClock(), sync_clock=False)


def test_nothing_listening_fails_fast() -> None:
    limiter = limiter_on(connection_string(free_port()))
    started = time.monotonic()
    with pytest.raises(RateLimitStorageError, match="read failed"):
        limiter.acquire("p")
    with pytest.raises(RateLimitStorageError):
        limiter.block("p", 10)
    assert time.monotonic() - started < 2


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_hanging_storage_fails_within_the_timeouts(silent_port: int) -> None:
    limiter = limiter_on(connection_string(silent_port))
    started = time.monotonic()
    with pytest.raises(RateLimitStorageError, match="ServiceResponseTimeoutError"):
        limiter.acquire("p")
    assert time.monotonic() - started < 3  # 1 s read timeout, one retry


def test_threads_waiting_on_a_hanging_table_do_not_queue_up(silent_port: int) -> None:
    limiter = limiter_on(connection_string(silent_port))
    errors: list[Exception] = []

    def call() -> None:
        try:
            limiter.acquire("p")
        except RateLimitStorageError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 6
    assert time.monotonic() - started < 4.5  # at most 1 s in the queue, then 2 x 1 s timeouts each


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
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(RateLimitStorageError):
                limiter.acquire("p")
        assert time.monotonic() - started < 3
        server = start_azurite(blob_port=server.blob_port, queue_port=server.queue_port,
                               table_port=server.table_port)
        # In-memory Azurite lost the table: it is created again on first use.
        decision = limiter.acquire("p")
        assert decision.admitted
    finally:
        server.stop()
