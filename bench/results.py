"""bench/results.json: every benchmark adds its figures (flat keys) to the one file `make bench` leaves behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(figures: dict[str, Any]) -> None:
    """Merge `figures` into bench/results.json (created if missing) and say where they went."""
    current: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    current.update(figures)
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    print(f"(figures written to {RESULTS.relative_to(RESULTS.parent.parent)})")
