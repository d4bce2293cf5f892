"""A TCP server that accepts connections and never answers: a hanging service (a table or an endpoint that took the
request and went quiet). It counts the connections it took, so a test can tell how many attempts a client made."""

from __future__ import annotations

import socket
import threading


class SilentServer:
    """Listens on a free loopback port until `close()` (or `with`); `connections` is how many it accepted."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self._accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._accepted)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._server.accept()[0]
            except TimeoutError:
                continue
            with self._lock:
                self._accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            for conn in self._accepted:
                conn.close()
        self._server.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
