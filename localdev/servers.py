"""Run WSGI apps on loopback in background threads (the simulator, the identity endpoint)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

#: Where QuietHandler leaves when the request arrived: (time.time(), time.monotonic()) once its request line was read.
RECEIVED_AT_KEY = "localdev.received_at"


class QuietHandler(WSGIRequestHandler):
    """No per-request access log lines (the simulator keeps its own call log); each request is stamped with the
    moment its request line was read, before anything else is done with it (RECEIVED_AT_KEY)."""

    def parse_request(self) -> bool:
        self._received_at = (time.time(), time.monotonic())
        return bool(super().parse_request())

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        environ[RECEIVED_AT_KEY] = getattr(self, "_received_at", None) or (time.time(), time.monotonic())
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class RunningServer:
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def quiet_server(app: Any, port: int = 0, *,
                 request_handler: type[WSGIRequestHandler] = QuietHandler) -> BaseWSGIServer:
    """A threaded server for `app` on 127.0.0.1:port (0 = a free port), not yet serving.

    Unlike werkzeug's `run_simple` it prints no start-up banner (the coloured development-server
    warning) and, with `QuietHandler`, no per-request lines; errors are still logged.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return make_server("127.0.0.1", port, app, threaded=True, request_handler=request_handler)


def serve_in_thread(app: Any, port: int = 0, *, name: str = "wsgi") -> RunningServer:
    """Serve `app` on 127.0.0.1:port (0 = a free port), threaded, until `.stop()`."""
    server = quiet_server(app, port)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return RunningServer(server, thread)
