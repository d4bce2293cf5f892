"""Queue triggers as the Functions host runs them, against Azurite (Core Tools can't be installed here).

The semantics come from host.json `extensions.queues`, as in Azure:
- up to `batchSize` messages are fetched at a time and run in parallel; another batch is fetched when
  the messages in flight drop to `newBatchThreshold` (so at most batchSize + newBatchThreshold at once);
- a message in flight stays invisible: the host takes it for a lease and renews the lease while the
  function runs (Azure: 10 minutes; here LOCAL_QUEUE_LEASE_SECONDS, so a test can kill a host and see
  its messages come back soon);
- success deletes the message; an exception makes it visible again after `visibilityTimeout`, and a
  message that has failed `maxDequeueCount` times moves to `<queue>-poison`;
- an empty queue is polled with exponential backoff up to `maxPollingInterval`;
- `messageEncoding` `base64` (the default) or `none`.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, QueueMessage

logger = logging.getLogger("localdev.queue_host")

#: Azure's lease of a message in flight (it renews it while the function runs).
DEFAULT_LEASE_SECONDS = 600


def _timespan(text: str | None, default: float) -> float:
    """host.json time spans: "hh:mm:ss" (with optional fractions)."""
    if not text:
        return default
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", text)
    if not match:
        raise ValueError(f"not a host.json time span: {text!r}")
    return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the Functions host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueueOptions:
        queues = host_json.get("extensions", {}).get("queues", {})
        batch = int(queues.get("batchSize", 16))
        return cls(batch_size=batch, new_batch_threshold=int(queues.get("newBatchThreshold", batch // 2)),
                   max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
                   visibility_timeout=_timespan(queues.get("visibilityTimeout"), 0.0),
                   max_polling_interval=_timespan(queues.get("maxPollingInterval"), 60.0),
                   message_encoding=str(queues.get("messageEncoding", "base64")).lower())


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue: str
    connection: str
    handler: Callable[[func.QueueMessage], None]


def resolve(expression: str, env: Mapping[str, str]) -> str:
    """`%SETTING%` binding expressions, as the host resolves them from app settings."""
    return re.sub(r"%([^%]+)%", lambda match: env[match[1]], expression)


class QueueListener:
    """Runs one queue function against one queue until `stop()`."""

    def __init__(self, function: QueueFunction, client: QueueClient, poison: QueueClient, options: QueueOptions, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.function = function
        self._client = client
        self._poison = poison
        self._options = options
        self._lease = max(2.0, lease_seconds)
        self._pool = ThreadPoolExecutor(options.batch_size + options.new_batch_threshold,
                                        thread_name_prefix=f"queue-{function.name}")
        self._in_flight: dict[str, QueueMessage] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._poll, name=f"poll-{function.name}", daemon=True),
                         threading.Thread(target=self._renew, name=f"renew-{function.name}", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _create_queues(self) -> None:
        for client in (self._client, self._poison):
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as error:  # storage down: the poller keeps trying, as the host does
                logger.warning("queue %s: not created yet (%s)", client.queue_name, type(error).__name__)

    def stop(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _poll(self) -> None:
        self._create_queues()  # here, not in start(): storage that is down must not keep the host from serving
        delay = 0.1
        while not self._stopping.is_set():
            with self._lock:
                room = self._options.batch_size + self._options.new_batch_threshold - len(self._in_flight)
                fetch = len(self._in_flight) <= self._options.new_batch_threshold
            if not fetch or room <= 0:
                self._stopping.wait(0.05)
                continue
            try:
                messages = list(self._client.receive_messages(
                    messages_per_page=min(32, self._options.batch_size, room), max_messages=min(
                        self._options.batch_size, room), visibility_timeout=int(self._lease)))
            except AzureError as error:
                logger.warning("queue %s: receive failed (%s)", self.function.queue, type(error).__name__)
                messages = []
            if not messages:
                self._stopping.wait(delay)
                delay = min(self._options.max_polling_interval, delay * 2)
                continue
            delay = 0.1
            for message in messages:
                with self._lock:
                    self._in_flight[message.id] = message
                self._pool.submit(self._run, message.id)

    def _run(self, message_id: str) -> None:
        with self._lock:
            message = self._in_flight[message_id]
        try:
            body = self._body(message.content)
            self.function.handler(func.QueueMessage(id=message.id, body=body, pop_receipt=message.pop_receipt))
            failed = False
        except Exception:
            logger.exception("Function %s failed on message %s (dequeue count %s)", self.function.name, message.id,
                             message.dequeue_count)
            failed = True
        with self._lock:
            message = self._in_flight.pop(message_id)
        try:
            if not failed:
                self._client.delete_message(message.id, message.pop_receipt)
            elif (message.dequeue_count or 0) >= self._options.max_dequeue_count:
                self._poison.send_message(message.content)
                self._client.delete_message(message.id, message.pop_receipt)
                logger.warning("message %s moved to %s after %s attempts", message.id, self._poison.queue_name,
                               message.dequeue_count)
            else:
                self._client.update_message(message.id, message.pop_receipt,
                                            visibility_timeout=int(self._options.visibility_timeout))
        except AzureError as error:  # the lease may have passed to another host: it will run the message
            logger.warning("message %s: completion failed (%s)", message.id, type(error).__name__)

    def _renew(self) -> None:
        while not self._stopping.wait(self._lease / 2):
            with self._lock:
                messages = list(self._in_flight.values())
            for message in messages:
                try:
                    receipt = self._client.update_message(message.id, message.pop_receipt,
                                                          visibility_timeout=int(self._lease))
                except AzureError:
                    continue
                with self._lock:
                    if message.id in self._in_flight:
                        self._in_flight[message.id].pop_receipt = receipt.pop_receipt

    def _body(self, content: Any) -> bytes:
        raw = content if isinstance(content, bytes) else str(content or "").encode()
        if self._options.message_encoding == "base64":
            return base64.b64decode(raw, validate=True)  # binascii.Error: the message fails, as in Azure
        return raw


def start_listeners(functions: list[QueueFunction], options: QueueOptions,
                    env: Mapping[str, str] | None = None) -> list[QueueListener]:
    env = os.environ if env is None else env
    lease = float(env.get("LOCAL_QUEUE_LEASE_SECONDS") or DEFAULT_LEASE_SECONDS)
    listeners = []
    for function in functions:
        connection = env[function.connection]
        queue = resolve(function.queue, env)
        listener = QueueListener(function, QueueClient.from_connection_string(connection, queue),
                                 QueueClient.from_connection_string(connection, queue + "-poison"), options,
                                 lease_seconds=lease)
        listener.start()
        listeners.append(listener)
    return listeners
