"""Benchmark of the shared rate limiter under sustained overload, against a private Azurite.

    .venv/bin/python -m bench.ratelimit_bench [--duration SECONDS]

Runs 1, 8 and 32 concurrent workers (processes = instances, each with one limiter shared by its
threads), all calling for one principal as fast as they can (0-10 ms think time), with windows
scaled down so a run takes seconds: 20 calls per 2 s and 60 per 10 s, margin 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from azure.data.tables import TableClient

from bench.results import add_quick_option, record
from localdev.azurite import start_azurite
from localdev.contention import hammer, ideal_admissions, max_in_any_interval
from shared.ratelimit import CLIENT_OPTIONS, Decision, RateLimiter, RatePolicy, Reason, TableStore, parse_windows
from shared.ratelimit.limiter import to_ms

ROOT = Path(__file__).resolve().parent.parent
WINDOWS = "20/2,60/10"
MARGIN = 0.5
#: (processes, threads per process): 1, 8 and 32 concurrent workers.
CONFIGS = ((1, 1), (2, 4), (4, 8))


def _policy() -> RatePolicy:
    return RatePolicy("file_alerts", parse_windows(WINDOWS))


def worker(args: dict[str, Any]) -> dict[str, Any]:
    """One instance: `threads` threads sharing one limiter; returns every decision, compactly."""
    client = TableClient.from_connection_string(args["connection_string"], args["table"], **CLIENT_OPTIONS)
    limiter = RateLimiter(TableStore(client), _policy(), margin_seconds=MARGIN, max_conflict_retries=10,
                          new_state_share=1.0)  # the whole limit from the start, as ideal_admissions counts
    # [decided_at_ms, returned_at, admitted, round_trips, conflicts, contention, latency]; decided_at_ms is
    # the admission time as the limiter stores it (integer ms), so window figures need no float tolerance.
    calls: list[list[Any]] = []

    def record(d: Decision, latency: float, returned: float) -> None:
        calls.append([to_ms(d.decided_at), returned, d.admitted, d.storage_round_trips, d.conflicts,
                      d.reason is Reason.CONTENTION, latency])

    errors = hammer(limiter, "bench-tenant", threads=args["threads"], start=args["start"],
                    duration=args["duration"], record=record)
    return {"calls": calls, "errors": errors}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_config(connection_string: str, processes: int, threads: int, duration: float) -> dict[str, Any]:
    start = time.time() + 3.0
    args = {"connection_string": connection_string, "table": "bench" + uuid.uuid4().hex[:12],
            "threads": threads, "start": start, "duration": duration}
    procs = [subprocess.Popen([sys.executable, "-m", "bench.ratelimit_bench", "--worker", json.dumps(args)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    calls: list[list[Any]] = []
    errors = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=duration + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed with exit code {proc.returncode}")
        report = json.loads(out)
        calls += report["calls"]
        errors += report["errors"]

    admitted = [c for c in calls if c[2]]
    refused = [c for c in calls if not c[2]]
    ideal = ideal_admissions(_policy(), MARGIN, start, duration)
    windows = [(w.limit, w.seconds) for w in _policy().windows]
    return {
        "workers": processes * threads,
        "layout": f"{processes}x{threads}",
        "calls": len(calls),
        "errors": errors,
        "admitted": len(admitted),
        "ideal": ideal,
        # per window: (max in any window + margin by the stored admission time in ms, max in any window by
        # the time acquire returned, limit)
        "max": [(max_in_any_interval([float(c[0]) for c in admitted], to_ms(s + MARGIN)),
                 max_in_any_interval([c[1] for c in admitted], s), n) for n, s in windows],
        "rt_admitted": sum(c[3] for c in admitted) / max(1, len(admitted)),
        "rt_refused": sum(c[3] for c in refused) / max(1, len(refused)),
        "refused_from_memory": sum(1 for c in refused if c[3] == 0) / max(1, len(refused)),
        "conflicts": sum(c[4] for c in calls),
        "contention": sum(1 for c in calls if c[5]),
        "p50": percentile([c[6] for c in calls], 0.50) * 1000,
        "p99": percentile([c[6] for c in calls], 0.99) * 1000,
        "adm_p50": percentile([c[6] for c in admitted], 0.50) * 1000,
        "adm_p99": percentile([c[6] for c in admitted], 0.99) * 1000,
    }


def render(rows: list[dict[str, Any]], duration: float) -> str:
    names = [w.name for w in _policy().windows]
    head = ["workers", "procs x thr", "calls", "admitted", "ideal", "share"] + \
        [f"max/{n} (limit)" for n in names] + \
        ["RT/admit", "RT/refuse", "refused w/o RT", "409/412", "contention", "p50 ms", "p99 ms",
         "admit p50/p99 ms"]
    lines = [head]
    for r in rows:
        lines.append([
            str(r["workers"]), r["layout"], str(r["calls"]), str(r["admitted"]), str(r["ideal"]),
            f"{r['admitted'] / r['ideal']:.1%}",
            *(f"{logged}/{returned} ({limit})" for logged, returned, limit in r["max"]),
            f"{r['rt_admitted']:.2f}", f"{r['rt_refused']:.3f}", f"{r['refused_from_memory']:.1%}",
            str(r["conflicts"]), str(r["contention"]), f"{r['p50']:.2f}", f"{r['p99']:.1f}",
            f"{r['adm_p50']:.1f}/{r['adm_p99']:.1f}",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    table = ["| " + " | ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) + " |"
             for line in lines]
    table.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    errors = sum(r["errors"] for r in rows)
    return "\n".join([
        f"Rate limiter under sustained overload: windows {WINDOWS} (calls/s), margin {MARGIN} s, "
        f"{duration:g} s per run, one principal, Azurite on loopback.",
        *table,
        "max/W: most admissions in any interval of W + margin by the admission time the limiter stores (ms) / in any "
        "interval of W by the time acquire returned (what Defender would count); must be <= limit.",
        "share: admitted / what an exact limiter admits in the same time under unbroken demand. "
        "RT: table round trips per call. refused w/o RT: refusals answered from the in-process memory.",
        f"storage errors: {errors}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per configuration")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_quick_option(parser)
    options = parser.parse_args()
    if options.quick:
        options.duration = 1.0
    if options.worker:
        print(json.dumps(worker(json.loads(options.worker))))
        return

    azurite = start_azurite()
    try:
        rows = []
        for processes, threads in CONFIGS:
            rows.append(run_config(azurite.connection_string, processes, threads, options.duration))
            print(f"... {processes * threads} workers done", file=sys.stderr)
    finally:
        azurite.stop()
    print(render(rows, options.duration))
    figures: dict[str, Any] = {f"round_trips_per_admit_{r['workers']}": round(r["rt_admitted"], 3) for r in rows}
    # The most any window held beyond its limit, by either measure (must be 0).
    figures["max_over_limit"] = max(0, *(max(logged, returned) - limit
                                         for r in rows for logged, returned, limit in r["max"]))
    record(figures)
    if figures["max_over_limit"]:
        sys.exit(f"FAILED: a window held {figures['max_over_limit']} admission(s) over its limit")


if __name__ == "__main__":
    main()
