"""One 'instance' of the multi-process test: a process whose threads share one limiter.

Run as `python -m tests.ratelimit.contention_worker ARGS_JSON`; prints a JSON report.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from typing import Any

from azure.data.tables import TableClient

from shared.ratelimit import CLIENT_OPTIONS, RateLimiter, RatePolicy, Reason, parse_windows


def run(args: dict[str, Any]) -> dict[str, Any]:
    client = TableClient.from_connection_string(args["connection_string"], args["table"], **CLIENT_OPTIONS)
    limiter = RateLimiter(client, RatePolicy("file_alerts", parse_windows(args["windows"], setting_name="TEST")),
                          margin_seconds=args["margin"], max_conflict_retries=args["retries"])
    report: dict[str, Any] = {"admitted": [], "refused": 0, "contention": 0, "conflicts": 0, "errors": 0}
    lock = threading.Lock()
    end = args["start"] + args["duration"]

    def work() -> None:
        rng = random.Random()
        while time.time() < end:
            try:
                decision = limiter.acquire(args["principal"])
            except Exception:  # counted: the test expects none
                with lock:
                    report["errors"] += 1
                continue
            returned = time.time()
            with lock:
                report["conflicts"] += decision.conflicts
                if decision.admitted:
                    report["admitted"].append([decision.decided_at, returned])
                else:
                    report["refused"] += 1
                    report["contention"] += decision.reason is Reason.CONTENTION
            time.sleep(rng.uniform(0, 0.01))

    time.sleep(max(0.0, args["start"] - time.time()))
    threads = [threading.Thread(target=work) for _ in range(args["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return report


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
