"""What one Flex Consumption instance drains from the request queue, with the deployment's concurrency settings.

    .venv/bin/python -m bench.drain_bench [--lookups 160] [--defender-ms 1000] [--quick]

A 2048 MB Flex instance has one vCPU, so the Python worker's one thread pool (every sync function of the instance:
HTTP, queue, timer) has `min(32, cpus + 4)` = 5 threads unless PYTHON_THREADPOOL_THREAD_COUNT says otherwise; the
Bicep sets it (infra/main.bicep: max(pythonThreadCount, httpPerInstanceConcurrency)). host.json has the listener
fetch `batchSize` messages whenever no more than `newBatchThreshold` are in flight (so at most the two together at
once, when runs end at different times); runs that each take as long as Defender does end together, and the
listener then fetches one batch per answer time. Each queued lookup holds a thread while Defender answers, so one
instance drains about min(threads, batchSize) / Defender's answer time: the model printed beside the measurement.

The benchmark runs one local host with those numbers (read from the Bicep and host.json, not repeated here), and
once more with the worker's default of 5 threads, against the simulator answering every lookup after
`--defender-ms` (a stand-in for Defender's own time: the local machine's is ~1 ms, which would measure this machine's
two cores rather than the pool). The gateway's and the simulator's rate limits are lifted and the answer cache is
off, so nothing but the instance paces the drain. The figure is the rate of Defender calls, first to last, as the
simulator saw them; the model's figure is printed beside it. Defender's own limit (100 file-alert calls a minute per
tenant and application) is far below either: one instance is never what holds a tenant's queue back.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import uuid
from pathlib import Path

import requests
from azure.storage.queue import QueueClient

from bench.results import add_quick_option, record
from localdev.stack import start_host, start_services
from localdev.worker_pool import THREAD_COUNT_SETTING

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
#: What one vCPU gives the worker's pool unless the setting is there (min(32, cpus + 4)).
DEFAULT_THREADS_2GB = 5
#: Lifted limits: far more than the drain can reach, so the pool alone paces it.
UNLIMITED = "5000/1"


def bicep_threads(main_bicep: Path = ROOT / "infra" / "main.bicep") -> int:
    """PYTHON_THREADPOOL_THREAD_COUNT as the Bicep's defaults set it: max(pythonThreadCount,
    httpPerInstanceConcurrency)."""
    text = main_bicep.read_text()

    def default(name: str) -> int:
        match = re.search(rf"^param {name} int = (\d+)$", text, re.MULTILINE)
        if not match:
            raise SystemExit(f"infra/main.bicep: no default for {name}")
        return int(match[1])

    if f"{THREAD_COUNT_SETTING}: string(max(pythonThreadCount, httpPerInstanceConcurrency))" not in text:
        raise SystemExit(f"infra/main.bicep no longer sets {THREAD_COUNT_SETTING} as this benchmark reads it")
    return max(default("pythonThreadCount"), default("httpPerInstanceConcurrency"))


def queue_batch(host_json: Path = ROOT / "host.json") -> tuple[int, int]:
    """host.json's batchSize and newBatchThreshold."""
    queues = json.loads(host_json.read_text())["extensions"]["queues"]
    return int(queues["batchSize"]), int(queues["newBatchThreshold"])


def drained_per_second(threads: int, lookups: int, defender_seconds: float) -> float:
    """Lookups a second one local host with `threads` worker threads drains from a full queue."""
    services = start_services()
    suffix = uuid.uuid4().hex[:12]
    settings = {"REQUESTS_QUEUE": "drain-" + suffix, "OPERATIONS_TABLE": "ops" + suffix,
                "RATE_LIMIT_TABLE": "rl" + suffix, "RATE_LIMIT_FILE_ALERTS": UNLIMITED,
                "FILE_ALERTS_CACHE_SECONDS": "0", THREAD_COUNT_SETTING: str(threads)}
    try:
        simulator = services.simulator.url
        requests.post(f"{simulator}/_sim/limits", json={"file_alerts": [[5000.0, 1.0]]},
                      timeout=5).raise_for_status()
        requests.post(f"{simulator}/_sim/faults", json={"kind": "latency", "api": "file_alerts", "count": lookups,
                                                        "delay": defender_seconds}, timeout=5).raise_for_status()
        with tempfile.TemporaryDirectory() as log_dir:
            env = services.host_environment(function_key=KEY, **settings)
            host = start_host(env, log_path=Path(log_dir) / "host.log")
            try:
                queue = QueueClient.from_connection_string(services.azurite.connection_string,
                                                           settings["REQUESTS_QUEUE"])
                for _ in range(lookups):  # distinct files: no two lookups share a call
                    operation_id = uuid.uuid4().hex
                    queue.send_message(json.dumps({"version": 1, "id": operation_id,
                                                   "operation": "GetFileRelatedAlerts",
                                                   "fileHash": uuid.uuid4().hex.ljust(40, "0")}))
                times = wait_for_calls(simulator, lookups, timeout=60 + lookups * defender_seconds * 2)
            finally:
                host.stop()
    finally:
        services.stop()
    return (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 0.0


def wait_for_calls(simulator: str, count: int, timeout: float) -> list[float]:
    """When the simulator answered each of `count` file-alert calls (their arrival times, sorted)."""
    deadline = time.monotonic() + timeout
    while True:
        calls = requests.get(f"{simulator}/_sim/calls", timeout=10).json()["calls"]
        times = sorted(call["time"] for call in calls if call["api"] == "file_alerts")
        if len(times) >= count:
            return times
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(times)} of {count} lookups reached the simulator in {timeout:.0f} s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=160)
    parser.add_argument("--defender-ms", type=float, default=1000.0)
    add_quick_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.lookups, args.defender_ms = 24, 500.0
    defender = args.defender_ms / 1000
    batch, threshold = queue_batch()
    figures: dict[str, float | int] = {"drain_defender_ms": args.defender_ms, "drain_queue_batch": batch}
    print(f"Queue drain of one instance: {args.lookups} queued lookups, Defender answering in {args.defender_ms:g} ms, "
          f"host.json batchSize {batch} (another batch at {threshold} in flight)")
    print(f"{'worker threads':<44}{'model /s':>10}{'measured /s':>13}")
    for label, key, threads in (("Bicep (PYTHON_THREADPOOL_THREAD_COUNT)", "drain_bicep", bicep_threads()),
                                ("worker default on 2 GB (1 vCPU)", "drain_default", DEFAULT_THREADS_2GB)):
        model = min(threads, batch) / defender
        measured = drained_per_second(threads, args.lookups, defender)
        print(f"{label + f': {threads}':<44}{model:>10.1f}{measured:>13.1f}")
        figures.update({f"{key}_threads": threads, f"{key}_model_per_second": round(model, 2),
                        f"{key}_lookups_per_second": round(measured, 2)})
    print("Defender's own limit: 100 file-alert calls a minute per tenant and application (1.7/s): one instance "
          "drains a tenant's queue faster than Defender lets it.")
    record(figures)


if __name__ == "__main__":
    main()
