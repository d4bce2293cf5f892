"""GET /api/health with an operations table that kept 10,000 expired operations, beside one that kept none.

    .venv/bin/python -m bench.health_bench [--records 10000] [--quick]

Two local hosts share one Azurite; each has its own operations table, one empty, one filled with expired
records written the way the gateway writes them (with their index rows). Health reads pending operations
from the pending index, so its time should not depend on what the table has kept: the ratio is the figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from azure.data.tables import TableClient

from bench.results import add_quick_option, record
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import start_host, start_services
from shared.asynchronous.operations import Source, State
from shared.asynchronous.operations_table import TableOperationStore
from shared.defender.client import DefenderRequest

KEY = "bench-key"


def fill(connection_string: str, table: str, records: int) -> None:
    """`records` operations, done, that expired a day ago (each with its index rows, as the gateway writes them)."""
    long_ago = time.time() - 3 * 24 * 3600
    operations = TableOperationStore(TableClient.from_connection_string(connection_string, table), 24 * 3600,
                                clock=lambda: long_ago)

    def one(_: int) -> None:
        created = operations.create(operations.new(uuid.uuid4().hex, DefenderRequest.file_alerts(SEED_FILE_SHA1),
                                                   caller="", source=Source.QUEUE, correlation_id="bench"))
        operations.update(created.operation, state=State.DONE)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(records)))


def timed(url: str, calls: int) -> list[float]:
    session = requests.Session()
    durations = []
    for _ in range(calls):
        started = time.perf_counter()
        response = session.get(url, headers={"x-functions-key": KEY}, timeout=60)
        durations.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"health answered {response.status_code}: {response.text}")
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=50)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.records, args.calls = 300, 10
    services = start_services()  # Azurite, the simulator (a process of its own) and the identity endpoint
    tables = {"empty": "opsempty" + uuid.uuid4().hex[:10], "kept": "opskept" + uuid.uuid4().hex[:10]}
    results: dict[str, list[float]] = {}
    try:
        started = time.monotonic()
        fill(services.azurite.connection_string, tables["kept"], args.records)
        print(f"({args.records} expired operations written in {time.monotonic() - started:.0f} s)")
        with tempfile.TemporaryDirectory(prefix="mde-gateway-health-bench-") as log_dir:
            hosts = {}
            for name, table in tables.items():
                env = services.host_environment(function_key=KEY,
                                       OPERATIONS_TABLE=table, LOG_LEVEL="WARNING",
                                       MAINTENANCE_SCHEDULE="0 0 0 1 1 *")  # no sweep during the measurement
                hosts[name] = start_host(env, log_path=Path(log_dir) / f"{name}.log")
            try:
                for host in hosts.values():
                    timed(f"{host.url}/api/health", 5)  # warm-up: token, clients
                for _ in range(5):  # interleaved rounds: both see the same machine load
                    for name, host in hosts.items():
                        results.setdefault(name, []).extend(timed(f"{host.url}/api/health", args.calls // 5))
            finally:
                for host in hosts.values():
                    host.stop()
    finally:
        services.stop()
    empty, kept = statistics.median(results["empty"]), statistics.median(results["kept"])
    print(f"GET /api/health, {len(results['empty'])} calls each, same run (ms)")
    print(f"{'operations table':<36}{'p50':>8}{'max':>8}")
    print(f"{'empty':<36}{empty:>8.2f}{max(results['empty']):>8.2f}")
    print(f"{f'{args.records} expired operations kept':<36}{kept:>8.2f}{max(results['kept']):>8.2f}")
    print(f"  ratio kept/empty: {kept / empty:.2f} (health reads the pending index, not the table)")
    record({"health_p50_ms_empty": round(empty, 2), "health_p50_ms_10k_expired": round(kept, 2),
            "health_ratio_10k_expired_vs_empty": round(kept / empty, 3)})


if __name__ == "__main__":
    main()
