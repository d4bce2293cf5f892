"""Run the Defender simulator (and the fake managed-identity endpoint): `python -m localdev.simulator`.

Tests and benchmarks run it in a process of its own (localdev.simulator.process).
"""

from __future__ import annotations

import argparse
import signal
import threading

from localdev.identity_endpoint import IdentityEndpoint
from localdev.servers import serve_in_thread
from localdev.simulator.app import COMMERCIAL_AUDIENCE, Simulator
from shared.defender.clouds import GLOBAL_GRAPH


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7073, help="simulator port")
    parser.add_argument("--identity-port", type=int, default=7072, help="managed-identity endpoint port")
    parser.add_argument("--no-identity", action="store_true", help="run the simulator alone")
    parser.add_argument("--identity-secret", default="local-identity-header",
                        help="value the identity endpoint expects in X-IDENTITY-HEADER")
    parser.add_argument("--audience", action="append", default=None,
                        help="accepted token audience (repeatable); default the commercial cloud's")
    parser.add_argument("--graph-audience", action="append", default=None,
                        help="accepted token audience of Graph's runHuntingQuery (repeatable); default global Graph's")
    args = parser.parse_args(argv)
    simulator = serve_in_thread(Simulator(tuple(args.audience or [COMMERCIAL_AUDIENCE]),
                                          graph_audiences=tuple(args.graph_audience or [GLOBAL_GRAPH])), args.port,
                                name="simulator")
    identity = None if args.no_identity else serve_in_thread(IdentityEndpoint(args.identity_secret),
                                                             args.identity_port, name="identity")
    print(f"MDE simulator on {simulator.url}" + (f", identity endpoint on {identity.url}" if identity else ""),
          flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    simulator.stop()
    if identity is not None:
        identity.stop()


if __name__ == "__main__":
    main()
