"""bench/results.json: every benchmark adds its figures (flat keys) to the one file `make bench` leaves behind.

`BENCH_RESULTS` names another file (the quick runs in `make test` write theirs to a temporary one). Every
benchmark takes `--quick`: the same measurement on a few seconds of load, its figures printed and
recorded but too small to quote.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"
QUICK_HELP = "a few seconds of load: checks that the benchmark runs; its figures are too small to quote"


def results_path() -> Path:
    return Path(os.environ.get("BENCH_RESULTS") or RESULTS)


def add_quick_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)


def record(figures: dict[str, Any]) -> None:
    """Merge `figures` into bench/results.json (or BENCH_RESULTS; created if missing) and say where they went."""
    path = results_path()
    current: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    current.update(figures)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    print(f"(figures written to {path})")
