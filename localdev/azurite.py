"""Start Azurite (from the project's node_modules) on loopback ports."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from localdev.processes import start_listening, stop_process

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
    """Start an in-memory Azurite and wait until it listens; port 0 means a free port (see start_listening)."""
    if not AZURITE_BIN.exists():
        raise FileNotFoundError(f"{AZURITE_BIN} is missing: run `npm ci` (make does it for you).")

    def start(ports: tuple[int, ...]) -> subprocess.Popen[bytes]:
        command = [
            str(AZURITE_BIN), "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck",
            "--loose", "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
            "--blobPort", str(ports[0]), "--queuePort", str(ports[1]), "--tablePort", str(ports[2]),
        ]
        if quiet:
            command.append("--silent")
        return subprocess.Popen(command, stdout=subprocess.DEVNULL if quiet else None,
                                stderr=subprocess.DEVNULL if quiet else None, start_new_session=True)

    process, (blob, queue, table) = start_listening(start, (blob_port, queue_port, table_port), timeout=60)
    return Azurite(process, blob, queue, table)
