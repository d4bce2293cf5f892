"""Start Azurite (from the project's node_modules) on loopback ports."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from localdev.processes import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"

# Azurite's documented, public development account (not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azurite:
    """A running Azurite process and how to reach it."""

    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{DEV_ACCOUNT};"
        )

    def stop(self) -> None:
        stop_process(self.process)


def start_azurite(*, blob_port: int = 0, queue_port: int = 0, table_port: int = 0,
                  quiet: bool = True) -> Azurite:
    """Start an in-memory Azurite; port 0 means a free port."""
    if not AZURITE_BIN.exists():
        raise FileNotFoundError(f"{AZURITE_BIN} is missing: run `npm ci` (make does it for you).")
    ports = [p or free_port() for p in (blob_port, queue_port, table_port)]
    command = [
        str(AZURITE_BIN), "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck",
        "--loose", "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
        "--blobPort", str(ports[0]), "--queuePort", str(ports[1]), "--tablePort", str(ports[2]),
    ]
    if quiet:
        command.append("--silent")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL if quiet else None,
                               stderr=subprocess.DEVNULL if quiet else None, start_new_session=True)
    azurite = Azurite(process, *ports)
    try:
        for port in ports:
            wait_for_port(port, timeout=60)
    except TimeoutError:
        azurite.stop()
        raise
    return azurite
