"""What a test needs from the machine, checked one way everywhere: `require(what, how_to_install)` skips the test
with an install hint on a developer's machine and fails it under CI (`CI` set to anything but empty, 0, false or
no), where nothing may be skipped."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, what: str, how_to_install: str) -> None:
    """Go on when `available`; else fail under CI, and skip elsewhere saying what is missing and how to get it."""
    if available:
        return
    message = f"{what} is missing: {how_to_install}"
    if in_ci():
        pytest.fail(message + " (CI must run this test)")
    pytest.skip(message)
