"""One 'instance' of the multi-process test: a process whose threads share one limiter.

Run as `python -m tests.integration.ratelimit.contention_worker ARGS_JSON`; prints a JSON report.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from azure.data.tables import TableClient

from localdev.contention import hammer
from shared.ratelimit import CLIENT_OPTIONS, Decision, RateLimiter, RatePolicy, Reason, TableStore, parse_windows


def run(args: dict[str, Any]) -> dict[str, Any]:
    client = TableClient.from_connection_string(args["connection_string"], args["table"], **CLIENT_OPTIONS)
    limiter = RateLimiter(TableStore(client), RatePolicy("file_alerts", parse_windows(args["windows"])),
                          margin_seconds=args["margin"], max_conflict_retries=args["retries"],
                          new_state_share=1.0)  # the whole limit from the start, as ideal_admissions counts
    report: dict[str, Any] = {"admitted": [], "refused": 0, "contention": 0, "conflicts": 0, "errors": 0}

    def record(decision: Decision, latency: float, returned: float) -> None:
        report["conflicts"] += decision.conflicts
        if decision.admitted:
            report["admitted"].append([decision.decided_at, returned])
        else:
            report["refused"] += 1
            report["contention"] += decision.reason is Reason.CONTENTION

    report["errors"] = hammer(limiter, args["principal"], threads=args["threads"], start=args["start"],
                              duration=args["duration"], record=record)
    return report


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
