"""A Defender for Endpoint API simulator that follows the documented contract, with Microsoft Graph's advanced hunting
(runHuntingQuery) on the same port (see docs/local-development.md)."""

from localdev.simulator.app import Simulator

__all__ = ["Simulator"]
