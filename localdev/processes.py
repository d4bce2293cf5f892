"""Child processes and loopback ports: free ports, waiting for a listener, stopping cleanly."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger("localdev.processes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: How many times a child that exited before it listened is started on new free ports: a port is free only when
#: chosen, and another process (a client's outgoing connection, say) may take it before the child binds it.
PORT_TRIES = 3


class ChildExitedError(RuntimeError):
    """The child exited before every port it was given listened."""


def wait_for_ports(process: subprocess.Popen[bytes], ports: Sequence[int], *, timeout: float,
                   host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on each of `ports`; ChildExitedError as soon as `process` has exited,
    TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if process.poll() is not None:
                raise ChildExitedError(f"the child exited ({process.returncode}) before {host}:{port} listened")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s") from None
                time.sleep(0.05)


def start_listening(start: Callable[[tuple[int, ...]], subprocess.Popen[bytes]], ports: Sequence[int], *,
                    timeout: float) -> tuple[subprocess.Popen[bytes], tuple[int, ...]]:
    """Start a child with `start(ports)` (a 0 replaced by a free port) and wait until each port listens: the child and
    its ports. A child that exits first is started again on new free ports, up to PORT_TRIES times in all, when any
    port was free-chosen (on fixed ports it fails at once). ChildExitedError or TimeoutError (the child stopped)."""
    tries = 1
    while True:
        chosen = tuple(port or free_port() for port in ports)
        process = start(chosen)
        try:
            wait_for_ports(process, chosen, timeout=timeout)
            return process, chosen
        except ChildExitedError:
            if tries == PORT_TRIES or all(ports):
                raise
            logger.warning("a child exited before it listened on %s; starting it again on new free ports", chosen)
            tries += 1
        except TimeoutError:
            stop_process(process)
            raise


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """Terminate, then kill if it has not exited within `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
