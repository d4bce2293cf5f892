"""Defender scripted at the requests transport, a static credential, hand-driven clocks and a recording
rate-limit store: what the in-process (unit) tests put in place of the network and of time.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.client import RemoteDisconnected
from typing import Any

import requests
from azure.core.credentials import AccessToken as AzureAccessToken
from azure.core.exceptions import ResourceNotFoundError
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from shared.ratelimit import Decision, RatePolicy, Reason, parse_windows
from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.memory_store import MemoryStore
from shared.ratelimit.sliding_log import LogState
from shared.ratelimit.store import Snapshot, Tally


class FakeClock:
    """A clock the test moves by hand (epoch seconds); `sleep` is waiting on it: no real time, the clock moves on
    by the wait (thread-safe), and each wait is recorded in `sleeps`."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def policy(text: str, api: str = "file_alerts") -> RatePolicy:
    return RatePolicy(api, parse_windows(text))


#: The commercial cloud's API host: the real client judges and checks it; the scripted transport never connects.
DEFENDER_HOST = "api.securitycenter.microsoft.com"


DEFENDER_URL = f"https://{DEFENDER_HOST}"


TENANT_ID = "8f2b1c9e-6d3a-4e5f-9a1b-2c3d4e5f6a7b"


APP_ID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"


#: What the gateway's rate-limit state is keyed by for StaticCredential's token.
PRINCIPAL = f"{TENANT_ID}|{APP_ID}"


@dataclass(frozen=True)
class Reply:
    """One scripted answer from Defender: status, headers and a JSON document (or raw `body` bytes).

    `takes` is how long (seconds) the answer takes to arrive, on the transport's fake clock.
    """

    status: int = 200
    document: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    takes: float = 0.0

    def content(self) -> bytes:
        if self.body is not None:
            return self.body
        return b"" if self.document is None else json.dumps(self.document).encode()


@dataclass(frozen=True)
class Fail:
    """One scripted transport failure: `error` is raised from the adapter, as requests' HTTPAdapter raises it.

    `takes` is how long the failure takes to happen: seconds, or "connect" / "read" for the timeout
    the client gave for that phase (a timeout takes exactly as long as it allows).
    """

    error: requests.RequestException
    takes: float | str = 0.0


Step = Reply | Fail | requests.RequestException


def _pool() -> HTTPSConnectionPool:
    return HTTPSConnectionPool(DEFENDER_HOST, 443)  # never used to connect: only named by the errors


def connect_timeout() -> Fail:
    """No connection within the connect timeout: surely not sent (requests.ConnectTimeout)."""
    reason = ConnectTimeoutError(HTTPSConnection(DEFENDER_HOST, 443),
                                 f"Connection to {DEFENDER_HOST} timed out. (connect timeout=5)")
    return Fail(requests.ConnectTimeout(MaxRetryError(_pool(), "/", reason)), takes="connect")


def connection_refused() -> Fail:
    """No connection could be made (refused, unresolvable): requests.ConnectionError over NewConnectionError."""
    connection = HTTPSConnection(DEFENDER_HOST, 443)
    reason = NewConnectionError(connection, f"{connection}: Failed to establish a new connection: "
                                            "[Errno 111] Connection refused")
    return Fail(requests.ConnectionError(MaxRetryError(_pool(), "/", reason)))


def read_timeout() -> Fail:
    """Sent, but no answer within the read timeout (requests.ReadTimeout): it may have reached Defender."""
    return Fail(requests.ReadTimeout(ReadTimeoutError(_pool(), None, "Read timed out. (read timeout=30)")),
                takes="read")


def dropped_connection() -> Fail:
    """The connection closed after the request went out (requests.ConnectionError over ProtocolError)."""
    error = ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection without response"))
    return Fail(requests.ConnectionError(error))


def alerts_reply(*alerts: Mapping[str, Any]) -> Reply:
    """GET files/{sha1}/alerts as Defender answers it: the OData envelope."""
    return Reply(200, {"@odata.context": f"{DEFENDER_URL}/api/$metadata#Alerts", "value": list(alerts)})


def alert_reply(alert_id: str = "da637294883018012288_1364969609", **fields: Any) -> Reply:
    """CreateAlertByReference's success: the alert."""
    return Reply(200, {"id": alert_id, "title": "unit test", "severity": "Low", **fields})


def error_reply(status: int, code: str = "BadRequest", message: str = "Something is wrong", *,
                target: str | None = "43ee0aa3-0b58-4f87-bd10-1f3a5c2e6b7d", retry_after: str | None = None) -> Reply:
    """An error answer in Defender's shape, `{"error": {code, message, target}}`, optionally with Retry-After."""
    error = {"code": code, "message": message, **({"target": target} if target else {})}
    return Reply(status, {"error": error}, headers={"Retry-After": retry_after} if retry_after else {})


@dataclass(frozen=True)
class TransportCall:
    """One request the transport got, with the keyword arguments requests passed along."""

    request: requests.PreparedRequest
    timeout: Any
    verify: bool | str
    proxies: Mapping[str, str]

    @property
    def method(self) -> str:
        return self.request.method or ""

    @property
    def url(self) -> str:
        return self.request.url or ""

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def body(self) -> bytes | None:
        body = self.request.body
        return body.encode() if isinstance(body, str) else body

    def json(self) -> Any:
        assert self.body is not None, "the request had no body"
        return json.loads(self.body)


class ScriptedTransport(BaseAdapter):
    """A requests transport adapter that answers from a script instead of the network.

    Mount it on a session for http:// and https://. Each request takes the next step: a Reply
    becomes a real requests.Response, a Fail (or a bare RequestException) is raised. Every request
    is recorded in `calls`. A request beyond the script raises AssertionError (which code above may
    turn into something else, so `assert_done()` checks it again). `time_passes` moves the fake
    clocks by each step's `takes`; `on_send` runs before each step (e.g. to take storage down).
    """

    def __init__(self, script: Iterable[Step] = (), *, time_passes: Callable[[float], None] | None = None) -> None:
        super().__init__()
        self._script: list[Step] = list(script)
        self._time_passes = time_passes
        self._lock = threading.Lock()
        self.calls: list[TransportCall] = []
        self.overruns = 0
        self.on_send: Callable[[requests.PreparedRequest], None] | None = None

    def add(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    @property
    def prepared(self) -> list[requests.PreparedRequest]:
        """Every PreparedRequest the transport got, in order."""
        return [call.request for call in self.calls]

    @property
    def pending(self) -> int:
        """Steps not used yet."""
        return len(self._script)

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float, float] | tuple[float, None] | None = None, verify: bool | str = True,
             cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        with self._lock:
            self.calls.append(TransportCall(request, timeout, verify, dict(proxies or {})))
            if not self._script:
                self.overruns += 1
                raise AssertionError(f"ScriptedTransport: unscripted request #{len(self.calls)}: "
                                     f"{request.method} {request.url}")
            step = self._script.pop(0)
        if self.on_send is not None:
            self.on_send(request)
        if isinstance(step, requests.RequestException):
            step = Fail(step)
        self._pass(step.takes, timeout)
        if isinstance(step, Fail):
            if step.error.request is None:
                step.error.request = request
            raise step.error
        return self._response(request, step)

    def _pass(self, takes: float | str, timeout: Any) -> None:
        if isinstance(takes, str):
            assert takes in ("connect", "read"), takes
            connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            takes = float(connect if takes == "connect" else read)
        if takes and self._time_passes is not None:
            self._time_passes(takes)

    @staticmethod
    def _response(request: requests.PreparedRequest, reply: Reply) -> requests.Response:
        content = reply.content()
        headers = {"Content-Type": "application/json; charset=utf-8"} if reply.document is not None else {}
        response = requests.Response()
        response.status_code = reply.status
        response.headers = CaseInsensitiveDict({**headers, "Content-Length": str(len(content)), **reply.headers})
        response.encoding = get_encoding_from_headers(response.headers)
        try:
            response.reason = HTTPStatus(reply.status).phrase
        except ValueError:
            response.reason = ""
        response._content = content
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def assert_done(self) -> None:
        """Every scripted step was used, and nothing beyond the script was asked for."""
        assert self.overruns == 0, f"{self.overruns} request(s) beyond the script"
        assert not self._script, f"{len(self._script)} scripted step(s) never requested"


def unsigned_jwt(claims: Mapping[str, Any]) -> str:
    """A JWT-shaped token (alg none, empty signature): only the gateway reads it, to name its principal."""
    def part(document: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class StaticCredential:
    """A TokenCredential that hands out one fixed token (or raises `error`), recording the scopes asked for.

    Stands in for the managed identity in the in-process layer only; the integration layer runs the real one.
    """

    def __init__(self, *, tenant: str = TENANT_ID, app: str = APP_ID, error: Exception | None = None) -> None:
        self.token = unsigned_jwt({"aud": DEFENDER_URL, "iss": f"https://sts.windows.net/{tenant}/",
                                   "tid": tenant, "appid": app, "roles": ["Alert.Read.All", "Alert.ReadWrite.All"]})
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AzureAccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AzureAccessToken(self.token, int(time.time()) + 3600)


class FakeMonotonic(FakeClock):
    """time.monotonic that the test (or FakeSleep) moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__(now)


class FakeSleep:
    """time.sleep that costs no real time: records each wait and moves every given clock on by it."""

    def __init__(self, *clocks: FakeClock) -> None:
        self.clocks = clocks
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self.waits.append(seconds)
        self.pass_time(seconds)

    def pass_time(self, seconds: float) -> None:
        """Time goes by without a wait of the code under test (e.g. a request in flight)."""
        for clock in self.clocks:
            clock.advance(seconds)


class Rendezvous:
    """Makes threads meet: once armed with `count`, the next `count` callers of `meet` each wait (up to `timeout`
    seconds, a deadline, never a fixed sleep) until all of them have arrived. A store whose reads meet this way
    has that many instances decide on the same state, the race a real table's latency makes by itself."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._expected = 0
        self._arrived = 0
        self._timeout = 0.0

    def arm(self, count: int, timeout: float = 10.0) -> None:
        with self._condition:
            self._expected, self._arrived, self._timeout = count, 0, timeout

    def meet(self) -> None:
        with self._condition:
            if self._arrived >= self._expected:
                return
            self._arrived += 1
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._arrived >= self._expected, timeout=self._timeout)


class RecordingStore(MemoryStore):
    """The real MemoryStore, also recording every successful write and running `after_read` hooks once each.

    `after_read` actions run right after a read returns: another instance's write slipped in between. Reads also
    meet at `rendezvous` once it is armed (see Rendezvous).
    """

    def __init__(self, name: str = "memory") -> None:
        super().__init__(name)
        self.writes: list[tuple[str, str, LogState]] = []
        self.reads = 0
        self.after_read: list[Callable[[], object]] = []
        self.rendezvous = Rendezvous()

    def read(self, key: str, api: str, tally: Tally) -> Snapshot:
        try:
            snapshot = super().read(key, api, tally)
            self.reads += 1
            self.rendezvous.meet()
            return snapshot
        finally:
            while self.after_read:
                self.after_read.pop(0)()

    def write(self, key: str, api: str, state: LogState, etag: str | None, tally: Tally) -> str | None:
        written = super().write(key, api, state, etag, tally)
        if written is not None:
            self.writes.append((key, api, state))
        return written

    def blocks(self, api: str | None = None) -> list[int]:
        """The block ends (ms) of the writes that set or extended a block, in order."""
        ends: list[int] = []
        last: dict[tuple[str, str], int] = {}
        for key, written_api, state in self.writes:
            before = last.get((key, written_api), 0)
            last[(key, written_api)] = state.blocked_until_ms
            if state.blocked_until_ms > before and (api is None or written_api == api):
                ends.append(state.blocked_until_ms)
        return ends


def acquire_until_refused(limiters: list[RateLimiter], principal: str = "shared") -> list[Decision]:
    """One thread per limiter (an instance each) calls acquire at the same moment until its window refuses;
    every decision, in the order they were made."""
    decisions: list[Decision] = []
    lock = threading.Lock()
    start = threading.Barrier(len(limiters))

    def work(limiter: RateLimiter) -> None:
        start.wait(timeout=10)
        while True:
            decision = limiter.acquire(principal)
            with lock:
                decisions.append(decision)
            if decision.reason is Reason.RATE_LIMITED:
                return

    threads = [threading.Thread(target=work, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread never met a refusal"
    return decisions


class FakeTable:
    """The few TableClient methods FileHashMap uses, over a dict; `failure` makes every call raise it."""

    def __init__(self, *, exists: bool = True) -> None:
        self.entities: dict[tuple[str, str], dict[str, Any]] = {}
        self.exists = exists
        self.failure: Exception | None = None
        self.reads = 0

    @staticmethod
    def _missing() -> ResourceNotFoundError:
        error = ResourceNotFoundError("not found")
        error.status_code = 404
        return error

    def get_entity(self, partition_key: str, row_key: str) -> dict[str, Any]:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        if not self.exists or (partition_key, row_key) not in self.entities:
            raise self._missing()
        return dict(self.entities[(partition_key, row_key)])

    def upsert_entity(self, entity: dict[str, Any], **_: Any) -> None:
        if self.failure is not None:
            raise self.failure
        if not self.exists:
            raise self._missing()
        self.entities[(entity["PartitionKey"], entity["RowKey"])] = dict(entity)

    def create_table(self) -> None:
        self.exists = True
