"""The few messages of the Functions host <-> language worker protocol that `azure-functions-runtime` reads and builds.

The library is the worker's core without the gRPC transport: the proxy worker (azure-functions-python-worker) hands
each handler a request whose `.request.<kind>_request` is the protocol message and whose `.properties["protos"]` is
the module of generated message classes, and the handler answers with messages built from that module. The local
host speaks no gRPC, so it passes this module as `protos`: plain classes with the field names, enum values and
`WhichOneof` of azure-functions-language-worker-protobuf's `FunctionRpc.proto` (`TypedData`, `RpcHttp`,
`ParameterBinding`, `InvocationRequest`/`InvocationResponse`, `RpcFunctionMetadata`, `BindingInfo`,
`StatusResult`, `RpcException`, ...), only the fields the library touches (read in its sources: handle_event.py,
loader.py, functions.py, bindings/meta.py, bindings/datumdef.py, bindings/context.py, utils/helpers.py,
utils/tracing.py). What was found: indexing needs WorkerInitRequest (capabilities, function_app_directory),
BindingInfo's enums, RpcFunctionMetadata, RpcRetryOptions and the responses; an invocation needs
InvocationRequest (input_data, trigger_metadata, trace_context, retry_context) and builds TypedData/RpcHttp; no
message is ever serialised, so proto3 defaults are all the host needs beside the fields.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar


class _OneOf:
    """`WhichOneof(group)`: the name of the group's field that is set, or None (protobuf's message method)."""

    ONEOF: ClassVar[dict[str, tuple[str, ...]]] = {}

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802 (protobuf's name)
        return next((name for name in self.ONEOF[group] if getattr(self, name) is not None), None)


@dataclass
class TypedData(_OneOf):
    ONEOF: ClassVar[dict[str, tuple[str, ...]]] = {"data": (
        "string", "json", "bytes", "stream", "http", "int", "double", "collection_bytes", "collection_string",
        "collection_double", "collection_sint64", "model_binding_data", "collection_model_binding_data")}
    string: str | None = None
    json: str | None = None
    bytes: builtins.bytes | None = None
    stream: builtins.bytes | None = None
    http: RpcHttp | None = None
    int: builtins.int | None = None
    double: float | None = None
    collection_bytes: Any = None
    collection_string: Any = None
    collection_double: Any = None
    collection_sint64: Any = None
    model_binding_data: Any = None
    collection_model_binding_data: Any = None


@dataclass
class RpcHttpCookie:
    class SameSite:
        # enum SameSite { None = 0; Lax = 1; Strict = 2; ExplicitNone = 3; }
        Lax: ClassVar[int] = 1
        Strict: ClassVar[int] = 2
        ExplicitNone: ClassVar[int] = 3

    name: str = ""
    value: str = ""
    domain: Any = None
    path: Any = None
    expires: Any = None
    secure: Any = None
    http_only: Any = None
    same_site: int = 0
    max_age: Any = None


setattr(RpcHttpCookie.SameSite, "None", 0)  # a keyword as an attribute name, as protobuf has it


@dataclass
class _Nullable:
    value: Any = None


class NullableString(_Nullable):
    pass


class NullableBool(_Nullable):
    pass


class NullableDouble(_Nullable):
    pass


class NullableTimestamp(_Nullable):
    pass


@dataclass
class RpcHttp:
    method: str = ""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: TypedData | None = None
    params: dict[str, str] = field(default_factory=dict)  # the route's parameters
    status_code: str = ""
    query: dict[str, str] = field(default_factory=dict)
    enable_content_negotiation: bool = False
    cookies: list[RpcHttpCookie] | None = None


@dataclass
class ParameterBinding(_OneOf):
    ONEOF: ClassVar[dict[str, tuple[str, ...]]] = {"rpc_data": ("data", "rpc_shared_memory")}
    name: str = ""
    data: TypedData | None = None
    rpc_shared_memory: Any = None


@dataclass
class BindingInfo:
    # enum DataType { undefined = 0; string = 1; binary = 2; stream = 3; }
    # enum Direction { in = 0; out = 1; inout = 2; }
    undefined: ClassVar[int] = 0
    string: ClassVar[int] = 1
    binary: ClassVar[int] = 2
    stream: ClassVar[int] = 3
    out: ClassVar[int] = 1
    inout: ClassVar[int] = 2
    type: str = ""
    direction: Any = 0
    data_type: Any = 0


setattr(BindingInfo, "in", 0)  # a keyword as an attribute name, as protobuf has it


@dataclass
class RpcRetryOptions:
    max_retry_count: int = 0
    retry_strategy: Any = None
    delay_interval: timedelta | None = None
    minimum_interval: timedelta | None = None
    maximum_interval: timedelta | None = None


@dataclass
class RpcFunctionMetadata:
    name: str = ""
    function_id: str = ""
    directory: str = ""
    script_file: str = ""
    entry_point: str = ""
    bindings: dict[str, BindingInfo] = field(default_factory=dict)
    raw_bindings: list[str] = field(default_factory=list)  # each binding as the host reads it: JSON
    retry_options: RpcRetryOptions | None = None
    properties: dict[str, str] = field(default_factory=dict)
    managed_dependency_enabled: bool = False
    is_proxy: bool = False
    language: str = ""


@dataclass
class RpcException:
    message: str = ""
    stack_trace: str = ""
    source: str = ""


@dataclass
class StatusResult:
    # enum Status { Failure = 0; Success = 1; Cancelled = 2; }
    Failure: ClassVar[int] = 0
    Success: ClassVar[int] = 1
    Cancelled: ClassVar[int] = 2
    status: int = 0
    exception: RpcException | None = None


@dataclass
class WorkerMetadata:
    runtime_name: str = ""
    runtime_version: str = ""
    worker_version: str = ""
    worker_bitness: str = ""
    custom_properties: dict[str, str] = field(default_factory=dict)


@dataclass
class WorkerInitRequest:
    function_app_directory: str = ""
    capabilities: dict[str, str] = field(default_factory=dict)
    host_version: str = ""


@dataclass
class WorkerInitResponse:
    capabilities: dict[str, str] = field(default_factory=dict)
    worker_metadata: WorkerMetadata | None = None
    result: StatusResult | None = None


@dataclass
class FunctionMetadataResponse:
    function_metadata_results: list[RpcFunctionMetadata] | None = None
    result: StatusResult | None = None
    use_default_metadata_indexing: bool = False


@dataclass
class RpcTraceContext:
    trace_parent: str = ""
    trace_state: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class RetryContext:
    retry_count: int = 0
    max_retry_count: int = 0
    exception: RpcException | None = None


@dataclass
class InvocationRequest:
    invocation_id: str = ""
    function_id: str = ""
    input_data: list[ParameterBinding] = field(default_factory=list)
    trigger_metadata: dict[str, TypedData] = field(default_factory=dict)
    trace_context: RpcTraceContext = field(default_factory=RpcTraceContext)
    retry_context: RetryContext = field(default_factory=RetryContext)


@dataclass
class InvocationResponse:
    invocation_id: str = ""
    output_data: list[ParameterBinding] = field(default_factory=list)
    return_value: TypedData | None = None
    result: StatusResult | None = None


@dataclass
class StreamingMessage:
    """The envelope: one of its `<kind>_request` fields set."""

    worker_init_request: WorkerInitRequest | None = None
    invocation_request: InvocationRequest | None = None


@dataclass
class Envelope:
    """What the proxy worker hands a library handler: the message, and `properties` (`host`, `protos`)."""

    request: StreamingMessage
    properties: dict[str, Any] = field(default_factory=dict)
