"""The Python versions the project supports: pyproject.toml's requires-python (">=3.A,<3.B"), the one place they are
named (scripts/python.sh reads the same line for the Makefile)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]


def supported_pythons() -> list[str]:
    """The supported minor versions, oldest first: ["3.11", "3.12", "3.13"]."""
    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(30) if f"3.{minor}" in spec]
