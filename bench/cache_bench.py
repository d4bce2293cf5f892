"""Quota spent on a skewed lookup workload, with and without the shared answer cache, in the same run.

    .venv/bin/python -m bench.cache_bench [--lookups 5000] [--hashes 300]

An outbreak: `lookups` file-alerts lookups over `hashes` SHA-1s, Zipf-distributed (a few hashes in most
incidents), from 16 client threads spread over 4 local hosts (instances) that share one Azurite. Run once
with FILE_ALERTS_CACHE_SECONDS=0 and once with the default 60 s; the simulator counts the calls that
reached Defender. Windows are generous here: this measures quota spent, not the rate limit.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.results import add_quick_option, record
from localdev.stack import HostProcess, start_host, start_services

KEY = "bench-key"
INSTANCES = 4
CLIENT_THREADS = 16
ZIPF_EXPONENT = 1.1


def workload(lookups: int, hashes: int, seed: int = 7) -> list[str]:
    """`lookups` SHA-1s drawn from `hashes` with Zipf weights 1/k^s: the same sequence every run."""
    rng = random.Random(seed)
    pool = [f"{rng.getrandbits(160):040x}" for _ in range(hashes)]
    weights = [1 / rank ** ZIPF_EXPONENT for rank in range(1, hashes + 1)]
    return rng.choices(pool, weights=weights, k=lookups)


def run(hosts: list[HostProcess], sequence: list[str], simulator_url: str) -> dict[str, Any]:
    requests.delete(f"{simulator_url}/_sim/calls", timeout=5).raise_for_status()
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    local = threading.local()

    def lookup(index: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        host = hosts[index % len(hosts)]
        status = session.get(f"{host.url}/api/files/{sequence[index]}/alerts", headers={"x-functions-key": KEY},
                             timeout=60).status_code
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(lookup, range(len(sequence))))
    elapsed = time.perf_counter() - started
    upstream = len(requests.get(f"{simulator_url}/_sim/calls", timeout=30).json()["calls"])
    return {"lookups": len(sequence), "upstream": upstream, "seconds": elapsed, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--hashes", type=int, default=300)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.lookups, args.hashes = 300, 50
    sequence = workload(args.lookups, args.hashes)

    services = start_services()  # Azurite, the simulator (a process of its own) and the identity endpoint
    requests.post(f"{services.simulator.url}/_sim/limits", json={"file_alerts": [[10_000_000, 60]]},
                  timeout=5).raise_for_status()
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="mde-gateway-cache-bench-") as log_dir:
            for name, ttl in (("uncached", "0"), ("cached", "60")):
                env = services.host_environment(function_key=KEY, LOG_LEVEL="WARNING",
                    RATE_LIMIT_FILE_ALERTS="5000/1", RATE_LIMIT_NEW_STATE_SHARE="1",
                    RATE_LIMIT_TABLE="bench" + uuid.uuid4().hex[:12],
                    ANSWER_CACHE_TABLE="answers" + uuid.uuid4().hex[:12], FILE_ALERTS_CACHE_SECONDS=ttl)
                hosts = [start_host(env, log_path=Path(log_dir) / f"{name}-{index}.log")
                         for index in range(INSTANCES)]
                try:
                    results[name] = run(hosts, sequence, services.simulator.url)
                finally:
                    for host in hosts:
                        host.stop()
    finally:
        services.stop()

    distinct = len(set(sequence))
    print(f"{args.lookups} lookups of {distinct} distinct SHA-1s (of {args.hashes}, Zipf s={ZIPF_EXPONENT}), "
          f"{CLIENT_THREADS} client threads over {INSTANCES} instances sharing one Azurite, same run")
    print(f"{'':<10}{'upstream calls':>16}{'per lookup':>12}{'lookups/s':>12}{'statuses':>22}")
    for name, result in results.items():
        print(f"{name:<10}{result['upstream']:>16}{result['upstream'] / result['lookups']:>12.3f}"
              f"{result['lookups'] / result['seconds']:>12.1f}{result['statuses']!s:>22}")
    print(f"  (the fewest calls any cache can make is one per distinct SHA-1: {distinct / args.lookups:.3f} per "
          "lookup; 'uncached' still shares concurrent identical lookups within each instance)")
    record({
        "upstream_calls_per_lookup_uncached": round(results["uncached"]["upstream"] / args.lookups, 4),
        "upstream_calls_per_lookup_cached": round(results["cached"]["upstream"] / args.lookups, 4),
        "lookups_per_second_uncached": round(args.lookups / results["uncached"]["seconds"], 1),
        "lookups_per_second_cached": round(args.lookups / results["cached"]["seconds"], 1),
    })


if __name__ == "__main__":
    main()
