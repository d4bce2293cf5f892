"""Starting a local server as a child process on free ports (localdev.processes.start_listening), with real children.

A port is free only when it is chosen: another process may take it before the child binds it (a client's outgoing
connection takes its local port from the same range). Azurite, the simulator and the Functions host then exit at once
(EADDRINUSE); once, a test waited 60 s on a dead Azurite and failed. The child is started again on new free ports."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from localdev.processes import PORT_TRIES, ChildExitedError, start_listening, stop_process

#: A child that listens on the port it is given (and exits at once, 1, when it cannot bind it), as the servers do.
LISTENER = ("import socket, sys, time\n"
            "s = socket.socket()\n"
            "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
            "s.listen()\n"
            "time.sleep(120)\n")


def listener(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", LISTENER, str(port)], stderr=subprocess.DEVNULL)


def listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


def test_a_free_port_taken_before_the_child_binds_it_gets_a_new_one() -> None:
    thief = socket.socket()
    given: list[int] = []

    def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
        if not given:  # another socket takes the port between its choice and the child's bind (it does not listen)
            thief.bind(("127.0.0.1", ports[0]))
        given.append(ports[0])
        return listener(ports[0])

    try:
        process, (port,) = start_listening(start, (0,), timeout=30)
        try:
            assert len(given) == 2 and port == given[1] != given[0]
            assert process.poll() is None and listens(port)
        finally:
            stop_process(process)
    finally:
        thief.close()


def test_a_fixed_port_that_is_taken_fails_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: nothing answers on it
        port = taken.getsockname()[1]
        calls: list[tuple[int, ...]] = []

        def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
            calls.append(ports)
            return listener(ports[0])

        with pytest.raises(ChildExitedError):
            start_listening(start, (port,), timeout=30)
        assert calls == [(port,)]


def test_a_child_that_always_exits_is_tried_port_tries_times() -> None:
    calls: list[tuple[int, ...]] = []

    def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
        calls.append(ports)
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    with pytest.raises(ChildExitedError, match=r"exited \(3\)"):
        start_listening(start, (0, 0), timeout=30)
    assert len(calls) == PORT_TRIES and all(len(ports) == 2 and all(ports) for ports in calls)


def test_a_child_that_never_listens_is_stopped_at_the_timeout() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
        return started[-1]

    with pytest.raises(TimeoutError):
        start_listening(start, (0,), timeout=0.5)
    assert len(started) == 1 and started[0].poll() is not None
