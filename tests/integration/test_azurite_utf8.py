"""Azurite keeps the text it is sent, as Azure Storage does, however the request body reaches it.

Azurite 3.37.0 decodes each piece of a request body that its socket hands it on its own and joins the strings
(Azure/Azurite#2670), so a character split between two pieces becomes U+FFFD. A queued hunting query of emoji came
back from the queue with replacement characters, now and then, under load (a 64 KiB message is read in pieces), and
the worker refused it as too long. `patches/azurite+3.37.0.patch` (applied by patch-package when npm installs
Azurite) decodes the joined bytes once. Here the body goes in chunks (chunked transfer encoding), cut inside a 4-byte
character: Node hands each chunk on its own, so the cut is where it would fall under load, every time.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import TableSasPermissions, TableServiceClient, generate_table_sas
from azure.storage.queue import QueueSasPermissions, QueueServiceClient, generate_queue_sas

from localdev.azurite import DEV_ACCOUNT, DEV_KEY, Azurite

TEXT = "DeviceFileEvents | where FileName != \"" + "\U0001f600" * 40 + "\" | project ReportId"


def pieces(body: bytes) -> Iterator[bytes]:
    """The body in three chunks, cut after the first byte of one emoji and after the second byte of another."""
    emoji = "\U0001f600".encode()
    first = body.index(emoji) + 1
    second = body.index(emoji, first + 40) + 2
    assert body[first - 1:first + 3] == emoji and body[second - 2:second + 2] == emoji, "cut inside a character"
    yield body[:first]
    yield body[first:second]
    yield body[second:]


def post_chunked(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to `url` (a SAS URL on loopback) in the chunks `pieces` cuts; the status."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request("POST", f"{parts.path}?{parts.query}", body=pieces(body), headers=headers,
                           encode_chunked=True)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_queue_message_cut_inside_a_character_comes_back_as_sent(azurite: Azurite) -> None:
    name = "utf8-" + uuid.uuid4().hex[:12]
    queue = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(name)
    queue.create_queue()
    sas = generate_queue_sas(DEV_ACCOUNT, name, DEV_KEY, permission=QueueSasPermissions(add=True),
                             expiry=datetime.now(UTC) + timedelta(hours=1))
    body = f"<QueueMessage><MessageText>{TEXT}</MessageText></QueueMessage>".encode()
    status = post_chunked(f"{queue.url}/messages?{sas}", body, {"Content-Type": "application/xml"})
    assert status == 201
    [message] = list(queue.receive_messages(max_messages=1))
    assert message.content == TEXT


def test_a_table_entity_cut_inside_a_character_is_stored_as_sent(azurite: Azurite) -> None:
    name = "utf8" + uuid.uuid4().hex[:12]
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table = service.create_table(name)
    sas = generate_table_sas(AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY), name,
                             permission=TableSasPermissions(add=True), expiry=datetime.now(UTC) + timedelta(hours=1))
    body = json.dumps({"PartitionKey": "p", "RowKey": "r", "Query": TEXT}, ensure_ascii=False).encode()
    status = post_chunked(f"{service.url.rstrip('/')}/{name}?{sas}", body, {
        "Content-Type": "application/json;odata=nometadata",
        "Accept": "application/json;odata=nometadata", "Prefer": "return-no-content"})
    assert status == 204
    assert table.get_entity("p", "r")["Query"] == TEXT

