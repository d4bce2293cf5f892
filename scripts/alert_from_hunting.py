"""Turn an advanced-hunting answer into CreateAlertByReference bodies: one per row, at most --max.

    curl ... /api/advancedqueries/run | .venv/bin/python scripts/alert_from_hunting.py --title "..." \\
        | curl ... -d @- /api/alerts/CreateAlertByReference

Reads the answer on standard input, in Defender's shape (`Results`) or Graph's (`results`), and writes one JSON body
per line: `eventTime`, `reportId` and `machineId` from the row's `Timestamp`, `ReportId` and `DeviceId` (the three
values Create alert by reference needs "as obtained from advanced hunting"), the rest from the options. The query must
project those three columns. Standard library only, so any Python runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

#: The hunting columns that name an event, and the fields of CreateAlertByReference they fill.
EVENT_COLUMNS = {"Timestamp": "eventTime", "ReportId": "reportId", "DeviceId": "machineId"}


class HuntingAnswerError(ValueError):
    """The input is not a hunting answer whose rows name events."""


def rows_of(answer: Any) -> list[Mapping[str, Any]]:
    """The rows of a hunting answer in either shape."""
    rows = answer.get("Results", answer.get("results")) if isinstance(answer, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise HuntingAnswerError("not a hunting answer: no Results (Defender's shape) or results (Graph's)")
    return rows


def alert_bodies(answer: Any, fields: Mapping[str, str], limit: int) -> Iterator[dict[str, str]]:
    """A CreateAlertByReference body for each of the first `limit` rows of `answer`, with `fields` added."""
    for index, row in enumerate(rows_of(answer)[:limit]):
        missing = [column for column in EVENT_COLUMNS if row.get(column) in (None, "")]
        if missing:
            raise HuntingAnswerError(f"row {index} has no {', '.join(missing)}: project Timestamp, ReportId, DeviceId")
        yield {**{name: str(row[column]) for column, name in EVENT_COLUMNS.items()}, **fields}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=1, help="alerts at most (default 1: the first row)")
    parser.add_argument("--severity", default="Low", help="Low, Medium or High (default Low)")
    parser.add_argument("--category", default="Malware", help="one of Defender's alert categories (default Malware)")
    parser.add_argument("--title", default="Found by advanced hunting")
    parser.add_argument("--description", default="An event found by an advanced-hunting query.")
    parser.add_argument("--recommended-action", default="Investigate the device and the file.")
    args = parser.parse_args(argv)
    fields = {"severity": args.severity, "category": args.category, "title": args.title,
              "description": args.description, "recommendedAction": args.recommended_action}
    try:
        bodies = list(alert_bodies(json.load(sys.stdin), fields, args.max))
    except (ValueError, HuntingAnswerError) as error:  # json's JSONDecodeError is a ValueError
        print(f"alert_from_hunting: {error}", file=sys.stderr)
        return 1
    if not bodies:
        print("alert_from_hunting: the query found no event", file=sys.stderr)
        return 1
    for body in bodies:
        print(json.dumps(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
