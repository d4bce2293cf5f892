"""Queue triggers as the Functions host runs them, against Azurite (Core Tools can't be installed here).

The semantics come from host.json `extensions.queues` and the queue extension's sources, as in Azure:
- up to `batchSize` messages are fetched at a time and run in parallel; another batch is fetched when
  the messages in flight drop to `newBatchThreshold` (so at most batchSize + newBatchThreshold at once);
- a message in flight stays invisible: the host takes it for a 10-minute lease and renews the lease at
  half-time while the function runs (LOCAL_QUEUE_LEASE_SECONDS changes the lease here, for a test that
  must see a killed host's messages come back soon);
- a message whose dequeue count already exceeds `maxDequeueCount` moves to `<queue>-poison` without
  running (the poison queue is created when the first message moves there);
- success deletes the message; an exception (or host.json's `functionTimeout` passing) makes it
  visible again after `visibilityTimeout`, and a message that has failed `maxDequeueCount` times
  moves to `<queue>-poison`;
- the listener does not create the queue it watches (the deployment does: infra/, localdev.stack); a
  missing queue reads as empty, polled with exponential backoff up to `maxPollingInterval`;
- `%NAME%` in a queue name is the app setting NAME; a setting that does not exist (or a connection
  that names none) puts that function alone in error, as the host does, and the others run on;
- `messageEncoding` `base64` (the default) or `none`; with `base64`, a message that does not decode moves to
  `<queue>-poison` as it is, at once and without running (the storage SDK's MessageDecodingFailed, which the
  extension handles so), instead of failing `maxDequeueCount` times;
- the function gets the message with its trigger metadata (Id, PopReceipt, DequeueCount, InsertionTime,
  ExpirationTime, NextVisibleTime, as the extension reads them from the message it received), converted as the
  worker converts it: each invocation goes through the instance's worker (localdev.workers), the same object the
  HTTP path uses, so on 3.13 azure-functions-runtime converts and runs it, before 3.13 the emulation;
  `dequeue_count` is 1 on the first delivery.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from localdev.worker_pool import FunctionTimeoutError
from localdev.workers import EmulatedWorker, IndexedFunction, QueueCall, Worker, invoke

logger = logging.getLogger("localdev.queue_host")

#: Azure's lease of a message in flight (the extension renews it at half-time while the function runs).
DEFAULT_LEASE_SECONDS = 600
POISON_SUFFIX = "-poison"
#: Why a message moves to the poison queue, as the host logs it.
DEQUEUE_COUNT_REACHED = "Message has reached MaxDequeueCount of {}."
NOT_DECODED = "Message could not be decoded as messageEncoding '{}' requires."


def host_timespan(text: str | None, default: float) -> float:
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
                   visibility_timeout=host_timespan(queues.get("visibilityTimeout"), 0.0),
                   max_polling_interval=host_timespan(queues.get("maxPollingInterval"), 60.0),
                   message_encoding=str(queues.get("messageEncoding", "base64")).lower())


@dataclass(frozen=True)
class QueueFunction:
    function: IndexedFunction  # what the worker runs for each message (localdev.workers)
    queue: str
    connection: str

    @property
    def name(self) -> str:
        return self.function.name


class UnresolvedSettingError(KeyError):
    """A binding expression names an app setting that does not exist."""

    def __init__(self, expression: str, name: str) -> None:
        super().__init__(name)
        self.expression = expression
        self.name = name

    def __str__(self) -> str:
        return f"'{self.expression}' does not resolve to a value."


def resolve(expression: str, env: Mapping[str, str]) -> str:
    """`%SETTING%` binding expressions, as the host resolves them from app settings (UnresolvedSettingError)."""
    def value(match: re.Match[str]) -> str:
        if match[1] not in env:
            raise UnresolvedSettingError(match[0], match[1])
        return env[match[1]]

    return re.sub(r"%([^%]+)%", value, expression)


class QueueListener:
    """Runs one queue function against one queue until `stop()`."""

    def __init__(self, function: QueueFunction, client: QueueClient, poison: QueueClient, options: QueueOptions, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, function_timeout: float = float("inf"),
                 worker: Worker | None = None) -> None:
        self.function = function
        self._client = client
        self._poison = poison
        self._options = options
        self._lease = max(2.0, lease_seconds)
        self._function_timeout = function_timeout
        # The host's side: the messages in flight, each waiting for its invocation (up to batch + threshold).
        self._pool = ThreadPoolExecutor(options.batch_size + options.new_batch_threshold,
                                        thread_name_prefix=f"queue-{function.name}")
        # The worker's side: the instance's worker, the one the HTTP path uses (localdev.workers); an emulated one
        # of its own when none is given.
        self._worker: Worker = worker or EmulatedWorker(os.environ)
        self._in_flight: dict[str, QueueMessage] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._poll, name=f"poll-{function.name}", daemon=True),
                         threading.Thread(target=self._renew, name=f"renew-{function.name}", daemon=True)]

    @property
    def queue_name(self) -> str:
        return str(self._client.queue_name)

    @property
    def lease_seconds(self) -> float:
        return self._lease

    def in_flight(self) -> list[QueueMessage]:
        """The messages this listener holds now (leased, running)."""
        with self._lock:
            return list(self._in_flight.values())

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _poll(self) -> None:
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
            except ResourceNotFoundError:  # not created (yet): an empty queue to the listener
                messages = []
            except AzureError as error:
                logger.warning("queue %s: receive failed (%s)", self.queue_name, type(error).__name__)
                messages = []
            if not messages:
                self._stopping.wait(delay)
                delay = min(self._options.max_polling_interval, delay * 2)
                continue
            delay = 0.1
            for message in messages:
                if (message.dequeue_count or 0) > self._options.max_dequeue_count:
                    self._move_to_poison(message, DEQUEUE_COUNT_REACHED.format(self._options.max_dequeue_count))
                    continue  # failed too often elsewhere already: not run again
                try:
                    body = self._body(message.content)
                except ValueError:  # binascii.Error: the SDK cannot decode it, so the extension poisons it
                    self._move_to_poison(message, NOT_DECODED.format(self._options.message_encoding))
                    continue
                with self._lock:
                    self._in_flight[message.id] = message
                self._pool.submit(self._run, message.id, body)

    def _run(self, message_id: str, body: bytes) -> None:
        with self._lock:
            message = self._in_flight[message_id]
        try:
            invoke(self._worker, self.function.function, queue_call(message, body), self._function_timeout)
            failed = False
        except FunctionTimeoutError:
            failed = True
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
                self._move_to_poison(message, DEQUEUE_COUNT_REACHED.format(self._options.max_dequeue_count))
            else:
                self._client.update_message(message.id, message.pop_receipt,
                                            visibility_timeout=int(self._options.visibility_timeout))
        except AzureError as error:  # the lease may have passed to another host: it will run the message
            logger.warning("message %s: completion failed (%s)", message.id, type(error).__name__)

    def _move_to_poison(self, message: QueueMessage, reason: str) -> None:
        """Copy to `<queue>-poison` as it is (created if missing, as the extension does), then delete the original;
        `reason` starts the warning logged (never the message's content)."""
        try:
            try:
                self._poison.send_message(message.content)
            except ResourceNotFoundError:
                with contextlib.suppress(ResourceExistsError):
                    self._poison.create_queue()
                self._poison.send_message(message.content)
            self._client.delete_message(message.id, message.pop_receipt)
        except AzureError as error:  # it comes back when its lease ends, and is moved then
            logger.warning("message %s: not moved to %s (%s)", message.id, self._poison.queue_name,
                           type(error).__name__)
            return
        logger.warning("%s Moving message %s to queue '%s'.", reason, message.id, self._poison.queue_name)

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
        """The message's body as the function gets it (binascii.Error, a ValueError: not base64 when it must be)."""
        raw = content if isinstance(content, bytes) else str(content or "").encode()
        if self._options.message_encoding == "base64":
            return base64.b64decode(raw, validate=True)
        return raw


def queue_call(message: QueueMessage, body: bytes) -> QueueCall:
    """A received message as the queue extension hands it to the worker: its body and its trigger metadata."""
    return QueueCall(id=message.id, body=body, dequeue_count=int(message.dequeue_count or 0),
                     pop_receipt=str(message.pop_receipt or ""), insertion_time=message.inserted_on,
                     expiration_time=message.expires_on, next_visible_time=message.next_visible_on)


def start_listeners(functions: list[QueueFunction], options: QueueOptions, env: Mapping[str, str] | None = None, *,
                    function_timeout: float = float("inf"), worker: Worker | None = None) -> list[QueueListener]:
    """A running listener per queue function whose bindings resolve; a function whose bindings do not is
    reported in error (as the host reports it) and not run. `worker`: the instance's worker (localdev.workers), which
    runs every invocation on the instance's one pool."""
    env = os.environ if env is None else env
    lease = float(env.get("LOCAL_QUEUE_LEASE_SECONDS") or DEFAULT_LEASE_SECONDS)
    listeners = []
    for function in functions:
        try:
            queue = resolve(function.queue, env)
            connection = env.get(function.connection) or env.get(f"AzureWebJobs{function.connection}")
            if not connection:
                raise LookupError(f"Storage account connection string 'AzureWebJobs{function.connection}' does not "
                                  "exist. Make sure that it is a defined App Setting.")
        except (UnresolvedSettingError, LookupError) as error:
            logger.error("The '%s' function is in error: Microsoft.Azure.WebJobs.Host: Error indexing method "
                         "'Functions.%s'. Microsoft.Azure.WebJobs.Host: %s", function.name, function.name, error)
            continue
        listener = QueueListener(function, QueueClient.from_connection_string(connection, queue),
                                 QueueClient.from_connection_string(connection, queue + POISON_SUFFIX), options,
                                 lease_seconds=lease, function_timeout=function_timeout, worker=worker)
        listener.start()
        listeners.append(listener)
    return listeners
