"""The simulator in a process of its own, as tests and benchmarks run it: Defender is a service of its own, so the
calls it counts are stamped when they arrive, and no busy test process delays its threads."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from localdev.processes import start_listening, stop_process

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SimulatorProcess:
    """The simulator in a child process (`stop()` ends it)."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def start_simulator_process(port: int = 0) -> SimulatorProcess:
    """`python -m localdev.simulator --no-identity` on `port` (0: a free one), once it listens."""
    def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "localdev.simulator", "--port", str(ports[0]), "--no-identity"],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    process, (chosen,) = start_listening(start, (port,), timeout=30)
    return SimulatorProcess(process, chosen)
