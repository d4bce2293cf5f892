"""Shared fixtures: the real servers the tests talk to over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite for the whole test session, on free ports."""
    server = start_azurite()
    try:
        yield server
    finally:
        server.stop()
