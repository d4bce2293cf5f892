"""How long the failure paths take, each beside the bound it must stay within (the tests assert only what happens).

    .venv/bin/python -m bench.failure_bench [--quick]

Each figure is a duration in one run divided by the bound the configuration sets for it, so a ratio at or under 1 is
a failure path that keeps its bound on this machine: the table unreachable or hanging (CLIENT_OPTIONS: 1 s timeouts,
one retry; 6 threads on one hanging table, each at most 1 s in the queue), the Defender call path's total timeout,
a Retry-After honoured (at least 1: the wait was taken) or returned without a wait, the managed identity endpoint
unreachable, and Azurite's restart against the 12 s window the restart test relies on.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from azure.data.tables import TableClient

from bench.results import add_quick_option, record
from localdev.azurite import DEV_ACCOUNT, DEV_KEY, start_azurite
from localdev.identity_endpoint import IDENTITY_PATH
from localdev.processes import free_port
from localdev.silent import SilentServer
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import IDENTITY_SECRET, start_services
from shared.defender.client import DefenderClient, DefenderRequest, IdentityError
from shared.defender.credentials import build_credential
from shared.defender.facts import Api
from shared.defender.gateway import Gateway, RetryPolicy
from shared.ratelimit import (
    CLIENT_OPTIONS,
    RateLimiter,
    RateLimitStorageError,
    RatePolicy,
    TableStore,
    build_rate_limiters,
    parse_windows,
)
from shared.ratelimit.memory_store import MemoryStore
from shared.settings import load_defender_settings

#: The bounds (seconds) each figure is divided by.
TABLE_UNREACHABLE_BOUND = 2.0
TABLE_HANGING_BOUND = 2.0  # two attempts of a 1 s read timeout
TABLE_HANGING_6_THREADS_BOUND = 3.0  # 1 s in the queue, then two 1 s attempts
TOTAL_TIMEOUT = 4.0
RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 2.0
IDENTITY_BOUND = 15.0
RESTART_WINDOW = 12.0


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def table_limiter(port: int) -> RateLimiter:
    conn = (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};")
    client = TableClient.from_connection_string(conn, "ratelimits", **CLIENT_OPTIONS)
    return RateLimiter(TableStore(client), RatePolicy("file_alerts", parse_windows("100/60")), margin_seconds=0,
                       max_conflict_retries=3)


def refused(limiter: RateLimiter) -> None:
    try:
        limiter.acquire("p")
    except RateLimitStorageError:
        return
    raise SystemExit("the table answered: nothing measured")


def storage_failures() -> dict[str, float]:
    unreachable = timed(lambda: refused(table_limiter(free_port())))
    with SilentServer() as silent:
        hanging = timed(lambda: refused(table_limiter(silent.port)))
    with SilentServer() as silent:
        limiter = table_limiter(silent.port)
        threads = [threading.Thread(target=refused, args=(limiter,)) for _ in range(6)]

        def all_threads() -> None:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        six = timed(all_threads)
    server = start_azurite()
    try:
        restart = timed(lambda: server.stop())
        ports = (server.blob_port, server.queue_port, server.table_port)
        started = time.perf_counter()
        server = start_azurite(blob_port=ports[0], queue_port=ports[1], table_port=ports[2])
        restart += time.perf_counter() - started
    finally:
        server.stop()
    return {"failure_table_unreachable_ratio": unreachable / TABLE_UNREACHABLE_BOUND,
            "failure_table_hanging_ratio": hanging / TABLE_HANGING_BOUND,
            "failure_table_hanging_6_threads_ratio": six / TABLE_HANGING_6_THREADS_BOUND,
            "failure_azurite_restart_vs_window_ratio": restart / RESTART_WINDOW}


def gateway_on(simulator_url: str, **settings: str) -> Gateway:
    defender = load_defender_settings({"MDE_BASE_URL": simulator_url, "MDE_READ_TIMEOUT_SECONDS": "1",
                                       "MDE_CONNECT_TIMEOUT_SECONDS": "1", **settings})
    client = DefenderClient(defender, build_credential(defender))
    limiters = build_rate_limiters(MemoryStore(), [RatePolicy(api, parse_windows("1000/60")) for api in Api],
                                   margin_seconds=0, max_conflict_retries=3, new_state_share=1.0)
    retry = RetryPolicy(defender)
    return Gateway(client, limiters, retry)


def fault(simulator_url: str, **options: Any) -> None:
    requests.post(f"{simulator_url}/_sim/faults", json=options, timeout=5).raise_for_status()


def defender_failures(simulator_url: str, identity_url: str) -> dict[str, float]:
    lookup = DefenderRequest.file_alerts(SEED_FILE_SHA1)
    requests.post(f"{simulator_url}/_sim/reset", timeout=5).raise_for_status()
    requests.post(f"{simulator_url}/_sim/limits", json={"file_alerts": [[100000, 60]]}, timeout=5).raise_for_status()
    os.environ["IDENTITY_ENDPOINT"], os.environ["IDENTITY_HEADER"] = identity_url + IDENTITY_PATH, IDENTITY_SECRET
    fault(simulator_url, kind="latency", api="file_alerts", delay=2.5, count=10)
    total = timed(lambda: gateway_on(simulator_url, MDE_TOTAL_TIMEOUT_SECONDS=str(TOTAL_TIMEOUT),
                                     MDE_MAX_RETRIES="5").call(lookup, "bench-deadline"))
    requests.post(f"{simulator_url}/_sim/reset", timeout=5).raise_for_status()
    fault(simulator_url, kind="status", api="file_alerts", status=503, retry_after=int(RETRY_AFTER), count=1)
    honoured = timed(lambda: gateway_on(simulator_url).call(lookup, "bench-retry-after"))
    fault(simulator_url, kind="status", api="file_alerts", status=429, retry_after=30, count=1)
    returned = timed(lambda: gateway_on(simulator_url, MDE_MAX_RETRY_AFTER_SECONDS=str(MAX_RETRY_AFTER))
                     .call(lookup, "bench-long-retry-after"))
    os.environ["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{free_port()}{IDENTITY_PATH}"
    client = gateway_on(simulator_url).client

    def no_token() -> None:
        try:
            client.token()
        except IdentityError:
            return
        raise SystemExit("a token from nowhere: nothing measured")

    identity = timed(no_token)
    return {"failure_defender_total_timeout_ratio": total / TOTAL_TIMEOUT,
            "failure_retry_after_honoured_ratio": honoured / RETRY_AFTER,
            "failure_long_retry_after_returned_ratio": returned / MAX_RETRY_AFTER,
            "failure_identity_unreachable_ratio": identity / IDENTITY_BOUND}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_option(parser)
    parser.parse_args()  # each path is measured once either way: a failure's length is what it is
    figures = storage_failures()
    with start_services() as services:
        figures.update(defender_failures(services.simulator.url, services.identity.url))
    print(f"{'failure path':<48}{'duration / bound':>18}")
    for name, ratio in figures.items():
        print(f"{name.removeprefix('failure_').removesuffix('_ratio'):<48}{ratio:>18.2f}")
    record({name: round(ratio, 3) for name, ratio in figures.items()})


if __name__ == "__main__":
    main()
