"""GET /api/operator/state (the page's state, with its last hour) with 1 customer tenant and with 100, same run.

    .venv/bin/python -m bench.history_bench [--calls 30] [--quick]

Two local hosts share one Azurite, the simulator and the local Entra ID token endpoint; one lists 1 customer tenant,
the other 100 (each consented, each with a token through the real federated exchange). Before measuring, each
tenant's budget has been used once, so every budget has a log and a history row. The state reads every tenant's
budget (one rate-limit read each per API: its admissions come from that read) and the history in one range query,
so it grows with the tenants; the ratio 100/1 is the figure (docs/observability.md states the transactions).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import requests

from bench.results import add_quick_option, record
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import HostProcess, many_tenants, start_host, start_services
from localdev.tokens import ALL_ROLES

KEY = "bench-key"
MASTER_KEY = "bench-master-key"


def timed(host: HostProcess, calls: int) -> list[float]:
    session = requests.Session()
    durations = []
    for _ in range(calls):
        started = time.perf_counter()
        response = session.get(f"{host.url}/api/operator/state", headers={"x-functions-key": MASTER_KEY}, timeout=120)
        durations.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200 or response.json().get("history") is None:
            raise SystemExit(f"the state answered {response.status_code}: {response.text[:500]}")
    return durations


def use_every_budget(host: HostProcess, tenants: list[str]) -> None:
    """One lookup per tenant: each tenant's token, budget log and history row exist before the measurement."""
    session = requests.Session()
    for index in range(len(tenants)):
        response = session.get(f"{host.url}/api/tenants/t{index}/files/{SEED_FILE_SHA1}/alerts",
                               headers={"x-functions-key": KEY}, timeout=120)
        if response.status_code != 200:
            raise SystemExit(f"a lookup answered {response.status_code}: {response.text[:500]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.calls = 5
    services = start_services()
    tenants = [str(uuid.uuid4()) for _ in range(100)]
    with services.tokens.app.lock:
        for tenant in tenants:
            services.tokens.app.tenants[tenant] = ALL_ROLES
    results: dict[int, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="mde-gateway-history-bench-") as log_dir:
            hosts: dict[int, HostProcess] = {}
            for count in (1, 100):
                listed = ",".join(f"t{index}={tenant}" for index, tenant in enumerate(tenants[:count]))
                env = services.host_environment(
                    function_key=KEY, LOCAL_MASTER_KEY=MASTER_KEY, **{**many_tenants(), "MDE_TENANTS": listed},
                    RATE_LIMIT_TABLE="r" + uuid.uuid4().hex[:20], HISTORY_TABLE="h" + uuid.uuid4().hex[:20],
                    OPERATIONS_TABLE="o" + uuid.uuid4().hex[:20], REQUESTS_QUEUE="q" + uuid.uuid4().hex[:20],
                    FILE_ALERTS_CACHE_SECONDS="0", LOG_LEVEL="WARNING",
                    MAINTENANCE_SCHEDULE="0 0 0 1 1 *")  # no sweep during the measurement
                hosts[count] = start_host(env, log_path=Path(log_dir) / f"tenants-{count}.log")
            try:
                for count, host in hosts.items():
                    use_every_budget(host, tenants[:count])
                    timed(host, 2)  # warm-up: tokens, clients
                for _ in range(5):  # interleaved rounds: both see the same machine load
                    for count, host in hosts.items():
                        results.setdefault(count, []).extend(timed(host, max(1, args.calls // 5)))
            finally:
                for host in hosts.values():
                    host.stop()
    finally:
        services.stop()
    one, hundred = statistics.median(results[1]), statistics.median(results[100])
    print(f"GET /api/operator/state, {len(results[1])} calls each, same run (ms)")
    print(f"{'customer tenants':<36}{'p50':>8}{'max':>8}")
    print(f"{'1':<36}{one:>8.2f}{max(results[1]):>8.2f}")
    print(f"{'100':<36}{hundred:>8.2f}{max(results[100]):>8.2f}")
    print(f"  ratio 100/1: {hundred / one:.2f} (one budget read per tenant and API; the history in one query)")
    record({"operator_state_p50_ms_1_tenant": round(one, 2), "operator_state_p50_ms_100_tenants": round(hundred, 2),
            "operator_state_ratio_100_vs_1_tenants": round(hundred / one, 3)})


if __name__ == "__main__":
    main()
