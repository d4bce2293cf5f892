"""Every metric and span the gateway emits, named once: the instruments are made from this list, the workbook and
the alert rules (infra/) query these names, and the tests check both against it.

Names are what Application Insights shows in `customMetrics.name`; attributes land in `customDimensions`. No
attribute ever holds a token, a key, a body or a file hash: only API names, outcomes, statuses and kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str
    description: str
    #: The attribute names each measurement carries (their values are small enumerations).
    attributes: tuple[str, ...]


#: Attribute names, defined once.
API = "api"
OUTCOME = "outcome"
STATUS = "status"
DECISION = "decision"
WINDOW = "window"
RESULT = "result"
SOURCE = "source"
QUEUE = "queue"
ERROR = "kind"
#: Which upstream limit a 429 named: `calls` (a window's calls) or `cpu` (Graph's hunting CPU quota).
LIMIT = "limit"

DEFENDER_REQUESTS = MetricSpec("mdegw.defender.requests", Kind.COUNTER, "{request}",
                               "Requests sent to Defender (and to Graph: api=hunting), by API, outcome and HTTP status "
                               "(0: no answer).", (API, OUTCOME, STATUS))
DEFENDER_DURATION = MetricSpec("mdegw.defender.duration", Kind.HISTOGRAM, "s",
                               "Time of one request to Defender (or Graph), from sending to its classified answer.",
                               (API, OUTCOME))
UPSTREAM_THROTTLED = MetricSpec("mdegw.defender.throttled", Kind.COUNTER, "{response}",
                                "Defender's (and Graph's) 429 answers by the limit they name: `calls`, the figure the "
                                "gateway exists to keep at 0, or `cpu` (hunting: the tenant's CPU quota, which no "
                                "call budget prevents).", (API, LIMIT))
HUNTING_CPU_BLOCKS = MetricSpec("mdegw.hunting.cpu_blocks", Kind.COUNTER, "{block}",
                                "Blocks of every instance's hunting calls after Graph's CPU 429, until the time it "
                                "named (else Retry-After, else the next 15-minute boundary).", (API,))
RATE_LIMIT_DECISIONS = MetricSpec("mdegw.ratelimit.decisions", Kind.COUNTER, "{decision}",
                                  "Slots asked of the shared budget: admitted, or refused and why.", (API, DECISION))
RATE_LIMIT_REMAINING = MetricSpec("mdegw.ratelimit.remaining", Kind.GAUGE, "{call}",
                                  "Calls left in each window of each API's budget, as this instance last saw it.",
                                  (API, WINDOW))
RATE_LIMIT_LIMIT = MetricSpec("mdegw.ratelimit.limit", Kind.GAUGE, "{call}",
                              "The limit of each window of each API's budget (the gauge `remaining` is out of).",
                              (API, WINDOW))
CACHE_LOOKUPS = MetricSpec("mdegw.lookups.cache", Kind.COUNTER, "{lookup}",
                           "File-alerts lookups answered from the shared answers (hit) or not (miss).", (RESULT,))
SHA256_RESOLUTIONS = MetricSpec("mdegw.lookups.sha256", Kind.COUNTER, "{resolution}",
                                "SHA-256 lookups: resolved from the shared map, or by a file-information call.",
                                (SOURCE, RESULT))
OPERATIONS_CREATED = MetricSpec("mdegw.operations.created", Kind.COUNTER, "{operation}",
                                "Asynchronous operations stored, by API and where they came from (http, queue).",
                                (API, SOURCE))
OPERATIONS_FINISHED = MetricSpec("mdegw.operations.finished", Kind.COUNTER, "{operation}",
                                 "Asynchronous operations given their final answer, by API and status.", (API, STATUS))
OPERATION_DURATION = MetricSpec("mdegw.operations.duration", Kind.HISTOGRAM, "s",
                                "Time from an operation's request to its final answer.", (API,))
QUEUE_DEPTH = MetricSpec("mdegw.queue.depth", Kind.GAUGE, "{message}",
                         "Messages in each queue: `requests`, `waiting-<api>`, and each one's `-poison`.", (QUEUE,))
OLDEST_PENDING_AGE = MetricSpec("mdegw.operations.oldest_pending_age", Kind.GAUGE, "s",
                                "Age of the oldest operation still waiting for its answer (0: none).", ())
POISONED = MetricSpec("mdegw.queue.poisoned", Kind.COUNTER, "{message}",
                      "Requests put on the poison queue, by reason (the alert fires on a new one, not on what waits).",
                      (ERROR,))
ERRORS = MetricSpec("mdegw.errors", Kind.COUNTER, "{error}",
                    "Failures of what the gateway stands on: storage (rate limits, operations, queues) and identity.",
                    (ERROR,))

METRICS: tuple[MetricSpec, ...] = (
    DEFENDER_REQUESTS, DEFENDER_DURATION, UPSTREAM_THROTTLED, HUNTING_CPU_BLOCKS, RATE_LIMIT_DECISIONS,
    RATE_LIMIT_REMAINING, RATE_LIMIT_LIMIT, CACHE_LOOKUPS, SHA256_RESOLUTIONS, OPERATIONS_CREATED, OPERATIONS_FINISHED,
    OPERATION_DURATION, QUEUE_DEPTH, OLDEST_PENDING_AGE, POISONED, ERRORS,
)


class ErrorKind(StrEnum):
    """What `mdegw.errors` counts."""

    RATE_LIMIT_STORAGE = "rate-limit-storage"
    OPERATIONS_STORAGE = "operations-storage"
    QUEUE_STORAGE = "queue-storage"
    IDENTITY = "identity"
    #: A customer tenant gave no token (not consented, say): that tenant's matter, not the gateway's.
    TENANT_IDENTITY = "tenant-identity"


class SpanName(StrEnum):
    """The spans: one per HTTP request (`request`) or queued message (`queued`); under it one per gateway call
    with its retries (`call`), and a child per slot taken (`ratelimit`) and per request sent to Defender."""

    REQUEST = "mdegw.request"
    CALL = "mdegw.call"
    QUEUED = "mdegw.queued"
    RATE_LIMIT = "mdegw.ratelimit"
    DEFENDER = "mdegw.defender.request"


#: Span attributes (besides the metric attributes above).
CORRELATION_ID = "mdegw.correlation_id"
OPERATION_ID = "mdegw.operation_id"

#: The W3C trace context field a queued request message carries (the HTTP call's span that queued it).
TRACEPARENT = "traceparent"
