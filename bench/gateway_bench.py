"""The gateway's added latency (p50/p99) against calling the simulator directly, in the same run, both through
the local host and with the function called in process as the worker calls it (localdev.workers: on 3.13 and later
azure-functions-runtime's invocation, else the emulation), so that the local host's own HTTP handling does not hide
the figure users get in Azure; and the cold import time of function_app vs bare azure.functions.

Run: `make bench` or `.venv/bin/python -m bench.gateway_bench [--calls N]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from time import perf_counter

import requests
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, UpdateMode

from bench.results import add_quick_option, record
from localdev.invocation import request_activity
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import start_host, start_services
from localdev.tokens import issue_token
from localdev.workers import HttpCall, IndexedFunction, Worker, choose_worker
from shared.ratelimit import CLIENT_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed_calls(session: requests.Session, url: str, headers: dict[str, str], calls: int) -> list[float]:
    durations = []
    for _ in range(calls):
        started = perf_counter()
        response = session.get(url, headers=headers, timeout=30)
        durations.append((perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"unexpected {response.status_code}: {response.text}")
    return durations


def worker_calls(worker: Worker, function: IndexedFunction, call: HttpCall, calls: int) -> list[float]:
    """The function called in process as the worker calls it, through the worker's conversions and pool (ms each)."""
    durations = []
    for _ in range(calls):
        started = perf_counter()
        answer = worker.start(function, call, request_activity(None)).result(30)
        durations.append((perf_counter() - started) * 1000)
        if answer.status != 200:
            raise SystemExit(f"unexpected {answer.status} in process: {answer.body!r}")
    return durations


def in_process(env: dict[str, str]) -> tuple[Worker, IndexedFunction]:
    """The app indexed in this process by the worker the local host would choose, with the host's app settings."""
    os.environ.update(env)
    worker = choose_worker(os.environ)
    functions = {function.name: function for function in worker.index(ROOT)}
    return worker, functions["GetFileRelatedAlerts"]


def table_round_trips(connection_string: str, calls: int) -> list[float]:
    """One conditional write to Azurite, as the limiter makes per admission (ms each)."""
    client = TableClient.from_connection_string(connection_string, "benchroundtrip", **CLIENT_OPTIONS)
    with suppress(ResourceExistsError):
        client.create_table()
    etag = client.upsert_entity({"PartitionKey": "p", "RowKey": "r", "Admissions": b"\0" * 800})["etag"]
    durations = []
    for _ in range(calls):
        started = perf_counter()
        etag = client.update_entity({"PartitionKey": "p", "RowKey": "r", "Admissions": b"\0" * 800},
                                    mode=UpdateMode.REPLACE, etag=etag,
                                    match_condition=MatchConditions.IfNotModified)["etag"]
        durations.append((perf_counter() - started) * 1000)
    client.close()
    return durations


def import_time(statement: str, runs: int = 5) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    # function_app reads and checks its settings at import: give it some (no request is made).
    env = {**os.environ, "MDE_BASE_URL": "http://127.0.0.1:1", "AzureWebJobsStorage": "UseDevelopmentStorage=true",
           "PYTHONPATH": str(ROOT)}
    samples = [float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                    check=True).stdout) * 1000 for _ in range(runs)]
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.calls = 50

    services = start_services()  # Azurite, the simulator (a process of its own) and the identity endpoint
    requests.post(f"{services.simulator.url}/_sim/limits", json={"file_alerts": [[100000, 60]]}, timeout=5)
    env = services.host_environment(function_key=KEY,
                           RATE_LIMIT_FILE_ALERTS="5000/1", LOG_LEVEL="WARNING",
                           FILE_ALERTS_CACHE_SECONDS="0")  # every call takes the whole path to the simulator
    # The host's log lives only as long as the run (shown if the host fails to start).
    with tempfile.TemporaryDirectory(prefix="mde-gateway-bench-") as log_dir:
        try:
            host = start_host(env, log_path=Path(log_dir) / "host.log")
            # The same gateway with telemetry recorded (metrics and spans, exported in batches to its log).
            traced = start_host({**env, "TELEMETRY_CONSOLE": "true"}, log_path=Path(log_dir) / "traced.log")
            try:
                session = requests.Session()
                direct_url = f"{services.simulator.url}/api/files/{SEED_FILE_SHA1}/alerts"
                gateway_url = f"{host.url}/api/files/{SEED_FILE_SHA1}/alerts"
                traced_url = f"{traced.url}/api/files/{SEED_FILE_SHA1}/alerts"
                direct_headers = {"Authorization": "Bearer " + issue_token("https://api.securitycenter.microsoft.com")[0]}
                gateway_headers = {"x-functions-key": KEY}
                timed_calls(session, gateway_url, gateway_headers, 20)  # warm-up: token, pools, table creation
                timed_calls(session, direct_url, direct_headers, 20)
                timed_calls(session, traced_url, gateway_headers, 20)
                worker, lookup = in_process(env)
                call = HttpCall("GET", gateway_url, {"x-functions-key": KEY}, {}, {"fileHash": SEED_FILE_SHA1}, b"")
                worker_calls(worker, lookup, call, 20)
                # Interleave rounds so both paths see the same machine load.
                direct: list[float] = []
                through: list[float] = []
                with_telemetry: list[float] = []
                called: list[float] = []
                table: list[float] = []
                for _ in range(10):
                    direct += timed_calls(session, direct_url, direct_headers, args.calls // 10)
                    through += timed_calls(session, gateway_url, gateway_headers, args.calls // 10)
                    with_telemetry += timed_calls(session, traced_url, gateway_headers, args.calls // 10)
                    table += table_round_trips(services.azurite.connection_string, args.calls // 10)
                    called += worker_calls(worker, lookup, call, args.calls // 10)
            finally:
                host.stop()
                traced.stop()
        finally:
            services.stop()

    print(f"GET /api/files/{{sha1}}/alerts, {len(direct)} sequential calls each, same run (ms)")
    print(f"{'path':<34}{'p50':>8}{'p99':>8}{'mean':>8}")
    for name, samples in (("simulator directly", direct), ("through the gateway", through),
                          ("in process, as the worker calls", called),
                          ("through the gateway, telemetry on", with_telemetry)):
        print(f"{name:<34}{percentile(samples, 0.5):>8.2f}{percentile(samples, 0.99):>8.2f}"
              f"{statistics.fmean(samples):>8.2f}")
    print(f"{'added by the gateway':<34}{percentile(through, 0.5) - percentile(direct, 0.5):>8.2f}"
          f"{percentile(through, 0.99) - percentile(direct, 0.99):>8.2f}"
          f"{statistics.fmean(through) - statistics.fmean(direct):>8.2f}")
    hop = percentile(through, 0.5) - percentile(called, 0.5)
    added_in_process = percentile(called, 0.5) - percentile(direct, 0.5)
    print(f"{'added in process (as the worker)':<34}{added_in_process:>8.2f}"
          f"{percentile(called, 0.99) - percentile(direct, 0.99):>8.2f}"
          f"{statistics.fmean(called) - statistics.fmean(direct):>8.2f}")
    print(f"{'the local host hop':<34}{hop:>8.2f}"
          f"{percentile(through, 0.99) - percentile(called, 0.99):>8.2f}"
          f"{statistics.fmean(through) - statistics.fmean(called):>8.2f}")
    overhead = percentile(with_telemetry, 0.5) - percentile(through, 0.5)
    print(f"{'added by telemetry':<34}{overhead:>8.2f}"
          f"{percentile(with_telemetry, 0.99) - percentile(through, 0.99):>8.2f}"
          f"{statistics.fmean(with_telemetry) - statistics.fmean(through):>8.2f}")
    print(f"{'one Table round trip (Azurite)':<34}{percentile(table, 0.5):>8.2f}{percentile(table, 0.99):>8.2f}"
          f"{statistics.fmean(table):>8.2f}")
    added, budget = percentile(through, 0.5) - percentile(direct, 0.5), percentile(table, 0.5) + 2
    print(f"  target: added p50 <= one table round trip + 2 ms = {budget:.2f} ms: "
          f"{'met' if added <= budget else 'NOT met'} ({added:.2f} ms)")
    print("  (the gateway's share: the local host's HTTP handling, validation, the token cache and one conditional"
          " Table write to Azurite for the shared rate limit)")
    print(f"  in process, as the worker calls it ({worker.name}): {added_in_process:.2f} ms added, "
          f"{added_in_process / max(percentile(through, 0.5) - percentile(direct, 0.5), 1e-9):.0%} of the added "
          f"p50 through the local host (the rest, {hop:.2f} ms, is the local host's HTTP hop, not Azure's)")
    print(f"  target: telemetry adds p50 <= 1 ms: {'met' if overhead <= 1 else 'NOT met'} ({overhead:.2f} ms; "
          "metrics and 4 spans per call, exported in batches)")
    print()
    runs = 2 if args.quick else 5
    print(f"Cold import, median of {runs} fresh interpreters (ms)")
    bare = import_time("import azure.functions", runs)
    app = import_time("import function_app", runs)
    print(f"{'import azure.functions':<34}{bare:>8.1f}")
    print(f"{'import function_app':<34}{app:>8.1f}")
    print(f"{'added by the app':<34}{app - bare:>8.1f}")
    record({
        "direct_p50_ms": round(percentile(direct, 0.5), 3),
        "gateway_p50_ms": round(percentile(through, 0.5), 3),
        "added_latency_p50_ms": round(percentile(through, 0.5) - percentile(direct, 0.5), 3),
        "added_latency_p99_ms": round(percentile(through, 0.99) - percentile(direct, 0.99), 3),
        "table_round_trip_p50_ms": round(percentile(table, 0.5), 3),
        "telemetry_overhead_p50_ms": round(overhead, 3),
        "in_process_p50_ms": round(percentile(called, 0.5), 3),
        "added_latency_in_process_p50_ms": round(added_in_process, 3),
        "local_host_hop_p50_ms": round(hop, 3),
        "in_process_worker": worker.name,
        "import_azure_functions_ms": round(bare, 1),
        "import_function_app_ms": round(app, 1),
    })


if __name__ == "__main__":
    main()
