"""A Defender for Endpoint API simulator that follows the documented contract (see README)."""

from localdev.simulator.app import Simulator

__all__ = ["Simulator"]
