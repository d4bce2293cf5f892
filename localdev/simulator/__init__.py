"""A Defender for Endpoint API simulator that follows the documented contract (see docs/local-development.md)."""

from localdev.simulator.app import Simulator

__all__ = ["Simulator"]
