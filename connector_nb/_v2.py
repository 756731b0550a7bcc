"""Both wire protocols: flyteidl v1 (``flyteidl.service.AsyncAgentService``) and Flyte 2's flyteidl2.

The v2 messages are wire-compatible with v1's ``admin.agent_pb2``: every difference is additive or a rename on
the same field number (``Inputs`` as repeated ``NamedLiteral`` = a ``LiteralMap`` on the wire, log body ``lines``
= ``structured_lines``, no ``agent_error``/``is_sync``). So v2 is spoken with v1 messages on v2 method paths, with
no dependency on ``flyteidl2`` (and its native protovalidate). The one field v1 lacks, v2's
``Connection{task_type, secrets, configs}`` (field 5 of the create/get/delete requests), is built from a small
private descriptor and appended to / read from the serialized request.
"""

from __future__ import annotations

import contextvars
import functools
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .connector import AsyncConnector
from .secrets import mask_error
from .transports.local import LocalTransport

if TYPE_CHECKING:
    import grpc
    import grpc.aio

PROTOCOLS = ("auto", "v1", "v2")
V1_SERVICES = ("flyteidl.service.AsyncAgentService", "flyteidl.service.AgentMetadataService")
V2_SERVICES = ("flyteidl2.connector.AsyncConnectorService", "flyteidl2.connector.ConnectorMetadataService")
#: Our method name (v1's) -> (v2 name, request type, response type, server streaming, carries a Connection).
METHODS: dict[str, tuple[str, str, str, bool, bool]] = {
    "CreateTask": ("CreateTask", "CreateTaskRequest", "CreateTaskResponse", False, True),
    "GetTask": ("GetTask", "GetTaskRequest", "GetTaskResponse", False, True),
    "DeleteTask": ("DeleteTask", "DeleteTaskRequest", "DeleteTaskResponse", False, True),
    "GetTaskMetrics": ("GetTaskMetrics", "GetTaskMetricsRequest", "GetTaskMetricsResponse", False, False),
    "GetTaskLogs": ("GetTaskLogs", "GetTaskLogsRequest", "GetTaskLogsResponse", True, False),
    "ListAgents": ("ListConnectors", "ListAgentsRequest", "ListAgentsResponse", False, False),
    "GetAgent": ("GetConnector", "GetAgentRequest", "GetAgentResponse", False, False),
}
_METADATA_METHODS = ("ListAgents", "GetAgent")
#: (secrets, configs) of the v2 request being served, read by :class:`ConnectionTransport`.
CONNECTION: contextvars.ContextVar[tuple[dict[str, str], dict[str, str]]] = contextvars.ContextVar(
    "connector_nb_connection", default=({}, {})
)


def method_path(protocol: str, method: str) -> str:
    """The gRPC path of ``method`` (a v1 name) in ``protocol`` ('v1' or 'v2')."""
    services = V2_SERVICES if protocol == "v2" else V1_SERVICES
    name = METHODS[method][0] if protocol == "v2" else method
    return f"/{services[method in _METADATA_METHODS]}/{name}"


def message_types(method: str) -> tuple[Any, Any]:
    """(request class, response class) of ``method``, as v1 messages."""
    from flyteidl.admin import agent_pb2

    _, request, response, _, _ = METHODS[method]
    return getattr(agent_pb2, request), getattr(agent_pb2, response)


@functools.lru_cache(maxsize=1)
def _carrier() -> Any:
    """A message class with only field 5, v2's ``flyteidl2.core.Connection`` (private pool: no name clash)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="connector_nb/v2_connection.proto", package="connector_nb.v2",
                                              syntax="proto3")
    connection = file.message_type.add(name="Connection")
    _string_field(connection, "task_type", 1)
    for name, number, entry in (("secrets", 2, "SecretsEntry"), ("configs", 3, "ConfigsEntry")):
        nested = connection.nested_type.add(name=entry)
        nested.options.map_entry = True
        _string_field(nested, "key", 1)
        _string_field(nested, "value", 2)
        connection.field.add(name=name, number=number, type=11, label=3,
                              type_name=f".connector_nb.v2.Connection.{entry}")
    carrier = file.message_type.add(name="Carrier")
    carrier.field.add(name="connection", number=5, type=11, label=1, type_name=".connector_nb.v2.Connection")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("connector_nb.v2.Carrier"))


def _string_field(message: Any, name: str, number: int) -> None:
    message.field.add(name=name, number=number, type=9, label=1)  # TYPE_STRING, LABEL_OPTIONAL


def connection_bytes(secrets: Mapping[str, str], configs: Mapping[str, str], task_type: str = "") -> bytes:
    """Field 5 (``connection``) of a v2 create/get/delete request, to append to the serialized v1 request."""
    if not (secrets or configs):
        return b""
    carrier = _carrier()()
    carrier.connection.task_type = task_type
    carrier.connection.secrets.update(secrets)
    carrier.connection.configs.update(configs)
    return bytes(carrier.SerializeToString())


def read_connection(data: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """(secrets, configs) of a serialized v2 request's ``connection`` field ({} when absent)."""
    carrier = _carrier().FromString(data)
    return dict(carrier.connection.secrets), dict(carrier.connection.configs)


class ConnectionTransport(LocalTransport):
    """The server's LocalTransport: passes a v2 request's Connection to create/get/delete as keyword arguments.

    As Flyte 2's server does: secrets, then configs, as keywords (a connector takes them by name or ``**kwargs``).
    Secret values are masked in any error before it reaches a log line or the wire.
    """

    async def _call(self, connector: AsyncConnector[Any], name: str, **kwargs: Any) -> Any:
        secrets, configs = CONNECTION.get()
        if name not in ("create", "get", "delete") or not (secrets or configs):
            return await super()._call(connector, name, **kwargs)
        try:
            return await super()._call(connector, name, **{**secrets, **configs, **kwargs})
        except Exception as e:
            mask_error(e, {f"secret {key}": value for key, value in secrets.items()})  # in place
            raise


def add_v2_handlers(server: grpc.aio.Server, servicer: Any) -> None:
    """Serve ``servicer`` (written for v1) under the flyteidl2 service names as well."""
    import grpc

    handlers: dict[str, dict[str, Any]] = {name: {} for name in V2_SERVICES}
    for method, (v2_name, _, _, streaming, carries) in METHODS.items():
        request_type, response_type = message_types(method)
        behaviour = getattr(servicer, method)
        if carries:
            behaviour, deserialize = _with_connection(behaviour), functools.partial(_parse, request_type)
        else:
            deserialize = request_type.FromString
        make = grpc.unary_stream_rpc_method_handler if streaming else grpc.unary_unary_rpc_method_handler
        service = V2_SERVICES[method in _METADATA_METHODS]
        handlers[service][v2_name] = make(behaviour, request_deserializer=deserialize,
                                          response_serializer=response_type.SerializeToString)
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(name, table) for name, table in handlers.items())
    )


def _parse(request_type: Any, data: bytes) -> tuple[Any, tuple[dict[str, str], dict[str, str]]]:
    return request_type.FromString(data), read_connection(data)


def _with_connection(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """Unpack (request, connection) and expose the connection to the transport while the call runs."""

    async def handle(parsed: tuple[Any, tuple[dict[str, str], dict[str, str]]], context: Any) -> Any:
        request, connection = parsed
        token = CONNECTION.set(connection)
        try:
            return await behaviour(request, context)
        finally:
            CONNECTION.reset(token)

    return handle


__all__ = ["CONNECTION", "PROTOCOLS", "ConnectionTransport", "add_v2_handlers", "connection_bytes", "message_types",
           "method_path", "read_connection"]
