"""The whole local stack without an Azure tenant: Azurite, the identity endpoint, the simulator, the host.

`make run` runs `python -m localdev.stack`; the tests use the same pieces on free ports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueServiceClient

from localdev.azurite import DEV_ACCOUNT, Azurite, start_azurite
from localdev.functions_host import DEFAULT_LOCAL_AUDIENCE, DEFAULT_LOCAL_KEY
from localdev.identity_endpoint import IDENTITY_PATH, IdentityEndpoint
from localdev.processes import ChildExitedError, start_listening, stop_process
from localdev.servers import serve_in_thread
from localdev.simulator.app import Simulator
from localdev.simulator.data import SEED_EVENT, SEED_FILE_SHA1
from localdev.simulator.process import start_simulator_process
from localdev.token_endpoint import TlsServer, TokenEndpoint, serve_token_endpoint
from localdev.tokens import ALL_ROLES, LOCAL_TENANT_ID
from shared.asynchronous.queue_names import POISON_SUFFIX
from shared.catalogue import CATALOGUE
from shared.configuration import ConfigurationError
from shared.http.openapi_tenants import TENANT_EXAMPLE
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
IDENTITY_SECRET = "local-identity-header"  # the fake endpoint's X-IDENTITY-HEADER value; not a real secret
#: Many tenants, locally: the multi-tenant app, the user-assigned identity it trusts, and one customer tenant.
LOCAL_MULTITENANT_APP_ID = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
LOCAL_UAMI_CLIENT_ID = "0d1e2f30-4152-4637-8899-aabbccddeeff"
LOCAL_CUSTOMER_TENANT = "c0c0c0c0-1111-4222-8333-444455556666"
LOCAL_CUSTOMER_NAME = TENANT_EXAMPLE  # the OpenAPI document's example tenant


def host_environment(*, simulator_url: str, identity_url: str, storage_connection: str,
                     function_key: str = DEFAULT_LOCAL_KEY, token_url: str | None = None,
                     ca_bundle: Path | None = None, **overrides: str) -> dict[str, str]:
    """Environment for the local Functions host: settings as Azure would give them, pointed at loopback.

    Every catalogued setting with a default is given as an app setting, as infra/main.bicep gives them
    in Azure: a binding expression (`%REQUESTS_QUEUE%`) resolves only from app settings, never from a
    default in the code.
    """
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MDE_", "RATE_LIMIT_", "AzureWebJobsStorage", "IDENTITY_", "AZURE_", "GATEWAY_"))}
    for spec in CATALOGUE:
        if spec.default is not None:
            env.setdefault(spec.name, spec.default)
    env.update({
        "MDE_CLOUD": "commercial",
        "MDE_BASE_URL": simulator_url,
        "GRAPH_BASE_URL": simulator_url,  # the simulator serves Graph's runHuntingQuery on the same port
        "IDENTITY_ENDPOINT": identity_url + IDENTITY_PATH,
        "IDENTITY_HEADER": IDENTITY_SECRET,
        "AzureWebJobsStorage": storage_connection,
        "LOCAL_FUNCTION_KEY": function_key,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    })
    if token_url and ca_bundle:  # many tenants: the token exchange, over TLS with the local test CA
        env.update({"MDE_AUTHORITY_HOST": token_url, "REQUESTS_CA_BUNDLE": str(ca_bundle)})
        # With GATEWAY_AUTH=entra: the callers' tokens are the local endpoint's, for the local audience.
        env.update({"GATEWAY_TOKEN_ISSUER": f"{token_url}/{LOCAL_TENANT_ID}/v2.0",
                    "GATEWAY_TOKEN_AUDIENCES": DEFAULT_LOCAL_AUDIENCE})
    env.update(overrides)
    return env


def many_tenants(client_id: str = LOCAL_UAMI_CLIENT_ID) -> dict[str, str]:
    """The settings of a gateway for the local customer tenant (contoso) beside the home one: a user-assigned
    identity (`client_id`) that the local token endpoint trusts for the multi-tenant app."""
    return {"MDE_TENANTS": f"{LOCAL_CUSTOMER_NAME}={LOCAL_CUSTOMER_TENANT}",
            "MDE_MULTITENANT_CLIENT_ID": LOCAL_MULTITENANT_APP_ID, "AZURE_CLIENT_ID": client_id}


@dataclass
class HostProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)


def provision_queues(env: Mapping[str, str]) -> tuple[str, ...]:
    """Create every queue the app reads and its poison queue, as infra/main.bicep does in Azure (the queue
    trigger does not create the queue it watches). Nothing is created when the settings do not load: the
    host then reports them. Returns the queues' names."""
    try:
        settings = load_settings(env)
    except ConfigurationError:
        return ()
    names = tuple(name for queue in settings.asynchronous.queues for name in (queue, queue + POISON_SUFFIX))
    try:
        service = QueueServiceClient.from_connection_string(settings.storage.connection_string or "",
                                                            connection_timeout=2, retry_total=0)
        for name in names:
            with contextlib.suppress(ResourceExistsError):
                service.create_queue(name)
    except (ValueError, AzureError) as error:  # storage unusable or down: the host reports it, as in Azure
        print(f"queues not created: {type(error).__name__}", file=sys.stderr)
        return ()
    return names


def start_host(env: dict[str, str], *, log_path: Path, port: int = 0, timeout: float = 60, provision: bool = True,
               host_json: Path | None = None) -> HostProcess:
    """Start `python -m localdev.functions_host` and wait until it listens (or fail with its output).

    `provision` first creates the app's queues (see provision_queues); `host_json` is another host.json
    to follow. The host's stdout and stderr go to `log_path` (overwritten), which the caller owns: tests
    put it under their temporary directory, benchmarks under a TemporaryDirectory, `make run` in the
    checkout.
    """
    if provision:
        provision_queues(env)
    def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "localdev.functions_host", "--port", str(ports[0])]
        if host_json is not None:
            command += ["--host-json", str(host_json)]
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    try:
        process, (chosen,) = start_listening(start, (port,), timeout=timeout)
    except (ChildExitedError, TimeoutError):
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        raise RuntimeError(f"the local Functions host did not start:\n{log}") from None
    return HostProcess(process, chosen, log_path)


@dataclass
class LocalStack:
    services: Services
    host: HostProcess
    function_key: str
    requests_queue: str
    #: The host's master key: the operator routes (auth level admin) take it alone.
    master_key: str

    @property
    def azurite(self) -> Azurite:
        return self.services.azurite

    @property
    def simulator(self) -> Server:
        return self.services.simulator

    @property
    def identity(self) -> Server:
        return self.services.identity

    def stop(self) -> None:
        self.host.stop()
        self.services.stop()


class Server(Protocol):
    """A running loopback server: where it listens, and how to stop it."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class Services:
    """What the gateway stands on locally, the host aside: Azurite, the Defender simulator and the managed-identity
    endpoint. `make run`, the tests and the benchmarks all start them here; stop them with `stop()` (or `with`)."""

    azurite: Azurite
    simulator: Server
    identity: Server
    #: The Entra ID token endpoint of the customer tenants (TLS, local CA).
    tokens: TlsServer

    def host_environment(self, *, function_key: str = DEFAULT_LOCAL_KEY, **overrides: str) -> dict[str, str]:
        """The app settings of a host on these services (see host_environment)."""
        return host_environment(simulator_url=self.simulator.url, identity_url=self.identity.url,
                                storage_connection=self.azurite.connection_string, function_key=function_key,
                                token_url=self.tokens.url, ca_bundle=self.tokens.ca_bundle, **overrides)

    def stop(self) -> None:
        self.simulator.stop()
        self.identity.stop()
        self.tokens.stop()
        self.azurite.stop()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_services(*, identity_port: int = 0, simulator_port: int = 0, azurite_ports: tuple[int, int, int] = (0, 0, 0),
                   simulator_process: bool = True, token_port: int = 0) -> Services:
    """Azurite, the simulator and the identity endpoint on these ports (0: free ones). `simulator_process`: the
    simulator in a process of its own, as Defender is (tests, benchmarks); else in a thread of this one."""
    azurite = start_azurite(blob_port=azurite_ports[0], queue_port=azurite_ports[1], table_port=azurite_ports[2])
    started: list[Server] = []
    try:
        started.append(start_simulator_process(simulator_port) if simulator_process
                       else serve_in_thread(Simulator(), simulator_port, name="simulator"))
        started.append(serve_in_thread(IdentityEndpoint(IDENTITY_SECRET), identity_port, name="identity"))
        tokens = serve_token_endpoint(TokenEndpoint(LOCAL_MULTITENANT_APP_ID, {LOCAL_UAMI_CLIENT_ID},
                                                    tenants={LOCAL_CUSTOMER_TENANT: ALL_ROLES}), token_port)
    except BaseException:
        for server in started:
            server.stop()
        azurite.stop()
        raise
    return Services(azurite, started[0], started[1], tokens)


def start_stack(*, host_port: int = 7071, identity_port: int = 7072, simulator_port: int = 7073,
                azurite_ports: tuple[int, int, int] = (10000, 10001, 10002),
                function_key: str = DEFAULT_LOCAL_KEY) -> LocalStack:
    services = start_services(identity_port=identity_port, simulator_port=simulator_port, azurite_ports=azurite_ports,
                              simulator_process=False)
    # A second tenant, as an MSSP's gateway has: contoso, with an alert of its own on the seeded file.
    env = services.host_environment(function_key=function_key, **many_tenants(),
                                    LOCAL_MASTER_KEY=os.environ.get("LOCAL_MASTER_KEY") or secrets.token_urlsafe(32))
    requests.post(f"{services.simulator.url}/_sim/alerts", params={"tenant": LOCAL_CUSTOMER_TENANT}, timeout=5,
                  json={"sha1": SEED_FILE_SHA1, "title": "Contoso: suspicious PowerShell"}).raise_for_status()
    try:
        host = start_host(env, port=host_port, log_path=ROOT / ".local-host.log")
    except Exception:
        services.stop()
        raise
    return LocalStack(services, host, function_key, env["REQUESTS_QUEUE"], env["LOCAL_MASTER_KEY"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7071")))
    args = parser.parse_args()
    stack = start_stack(host_port=args.port)
    base = stack.host.url
    key = stack.function_key
    body = json.dumps({"machineId": SEED_EVENT["machineId"], "severity": "Low", "title": "example",
                       "description": "example alert", "recommendedAction": "nothing",
                       "eventTime": SEED_EVENT["eventTime"], "reportId": SEED_EVENT["reportId"],
                       "category": "Exploit"})
    # Advanced hunting: the seed file's events, newest first, projecting what Create alert by reference needs.
    hunt = json.dumps({"Query": f'DeviceFileEvents | where SHA1 == "{SEED_FILE_SHA1}" | order by Timestamp desc '
                                f'| take 2 | project Timestamp, ReportId, DeviceId, DeviceName, FileName'})
    # The interpreter running this (the venv's), as the command line can name it from the checkout.
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT) + os.sep) else sys.executable
    azurite = stack.azurite
    print(f"""
mde-alert-gateway is running locally (no Azure tenant needed).

  Gateway (local Functions host)  {base}/api   function key: {key}
  Defender simulator              {stack.simulator.url}   admin: {stack.simulator.url}/_sim/calls
  Managed-identity endpoint       {stack.identity.url}{IDENTITY_PATH}
  Azurite (Storage)               queues http://127.0.0.1:{azurite.queue_port}   tables http://127.0.0.1:{azurite.table_port}
                                  blobs http://127.0.0.1:{azurite.blob_port}   account {DEV_ACCOUNT}
  Entra ID token endpoint         {stack.services.tokens.url}   (customer tenant {LOCAL_CUSTOMER_NAME}; test CA)
  Request queue                   {stack.requests_queue}
  Host log                        {stack.host.log_path}
  Operator page (open it)         {base}/api/operator?code={stack.master_key}   (the master key: admin level)

Try:
  curl -s -H 'x-functions-key: {key}' {base}/api/files/{SEED_FILE_SHA1}/alerts

  curl -s -H 'x-functions-key: {key}' {base}/api/tenants/{LOCAL_CUSTOMER_NAME}/files/{SEED_FILE_SHA1}/alerts

  curl -s -H 'x-functions-key: {key}' -H 'Content-Type: application/json' \\
       -d '{body}' \\
       {base}/api/alerts/CreateAlertByReference

  curl -s -H 'x-functions-key: {key}' -H 'Content-Type: application/json' \\
       -d '{hunt}' \\
       {base}/api/advancedqueries/run

  curl -s -H 'x-functions-key: {key}' -H 'Content-Type: application/json' \\
       -d '{hunt}' \\
       {base}/api/advancedqueries/run \\
       | {python} scripts/alert_from_hunting.py --title 'Found by advanced hunting' \\
       | curl -s -H 'x-functions-key: {key}' -H 'Content-Type: application/json' -d @- \\
       {base}/api/alerts/CreateAlertByReference

(the fourth hunts through Graph's runHuntingQuery, answered in Defender's own shape; the fifth turns the newest event
it finds into an alert by reference.)

Queue input: see "A request through the queue" in README.md. Ctrl-C stops everything.
""", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # explicit: a background shell may have ignored SIGINT
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            if stack.host.process.poll() is not None:
                print(f"The local host stopped:\n{stack.host.log()}", file=sys.stderr)
                break
    finally:
        stack.stop()
        print("Stopped.")


if __name__ == "__main__":
    main()
