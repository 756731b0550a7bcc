"""Serve a ConnectorRegistry as a Flyte connector service over gRPC (like ``pyflyte serve connector``).

Each RPC is translated into a call on a :class:`LocalTransport`, so connectors behave exactly as in an
in-process session; results and errors are translated to gRPC. The server runs on its own asyncio loop
(in a background thread with ``block=False``), so a notebook kernel stays responsive while it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
import types
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable

from ._tls import read_pem
from .errors import (
    ConnectorCallError,
    ConnectorNbError,
    InputError,
    MetadataError,
    NotSupportedError,
    UnknownTaskTypeError,
)
from .transports.base import TaskCategory

if TYPE_CHECKING:
    import grpc
    import grpc.aio
    from flyteidl.admin import agent_pb2

    from .registry import ConnectorRegistry
    from .transports.local import LocalTransport

log = logging.getLogger(__name__)
# grpc is imported lazily below; keep its core from printing INFO lines into the notebook (user's value wins).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _category(request: Any) -> TaskCategory:
    """The task category of a request, as propeller fills it (falls back to the deprecated task_type)."""
    if request.HasField("task_category") and request.task_category.name:
        return TaskCategory(request.task_category.name, request.task_category.version)
    return TaskCategory(request.task_type, 0)


def _connector_detail(error: ConnectorCallError) -> str:
    """'ExcType: message' of a connector failure, without our 'connector for ... failed in ...' prefix."""
    if error.original is not None:
        return f"{type(error.original).__name__}: {error.original}"
    return str(error).partition(f"failed in {error.method}(): ")[2] or str(error)


def _status(error: BaseException) -> tuple[grpc.StatusCode, str]:
    import grpc

    if isinstance(error, UnknownTaskTypeError):
        return grpc.StatusCode.NOT_FOUND, str(error)
    if isinstance(error, (MetadataError, InputError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, NotSupportedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(error)
    if isinstance(error, ConnectorCallError):
        return grpc.StatusCode.INTERNAL, _connector_detail(error)
    return grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"


async def _abort(context: grpc.aio.ServicerContext, method: str, error: BaseException) -> None:
    code, details = _status(error)
    log.info("%s -> %s: %s", method, code.name, details)
    await context.abort(code, details)


def _masked(error: BaseException, inputs: Any) -> BaseException:
    """The error with secret-named input values masked, before it reaches a log line or the wire."""
    from .literals import to_python_dict
    from .secrets import mask_error

    try:
        values = to_python_dict(inputs)
    except Exception:  # inputs that do not even convert carry nothing we could mask by name
        return error
    return mask_error(error, values)


class _AgentServicer:
    """``AsyncAgentService`` and ``AgentMetadataService``, backed by a LocalTransport."""

    def __init__(self, transport: LocalTransport) -> None:
        from flyteidl.admin import agent_pb2

        self._t = transport
        self._pb = agent_pb2

    async def CreateTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = request.task_execution_metadata if request.HasField("task_execution_metadata") else None
        try:
            meta = await self._t.create(request.template, request.inputs, request.output_prefix, metadata)
        except Exception as e:
            await _abort(context, "CreateTask", _masked(e, request.inputs))
        return self._pb.CreateTaskResponse(resource_meta=meta)

    async def GetTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        category = _category(request)
        try:
            resource = await self._t.get(category, request.resource_meta, request.output_prefix)
            pb = self._resource_pb(category, resource)
        except Exception as e:
            await _abort(context, "GetTask", e)
        return self._pb.GetTaskResponse(resource=pb)

    def _resource_pb(self, category: TaskCategory, resource: Any) -> agent_pb2.Resource:
        output_types = self._t.connector(category).output_types if resource.outputs is not None else None
        try:
            return resource.to_flyte_idl(output_types)
        except Exception as e:  # outputs the connector returned do not convert: its fault, not the caller's
            raise ConnectorCallError("get", category.name, e) from e

    async def DeleteTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            await self._t.delete(_category(request), request.resource_meta)
        except Exception as e:
            await _abort(context, "DeleteTask", e)
        return self._pb.DeleteTaskResponse()

    async def GetTaskMetrics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from datetime import timezone

        def when(field: str) -> Any:
            return getattr(request, field).ToDatetime(tzinfo=timezone.utc) if request.HasField(field) else None

        step = request.step.ToTimedelta() if request.HasField("step") else None
        try:
            return await self._t.get_metrics(
                _category(request), request.resource_meta, list(request.queries), when("start_time"),
                when("end_time"), step,
            )
        except Exception as e:
            await _abort(context, "GetTaskMetrics", e)

    async def GetTaskLogs(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # A real server stream: async-generator connectors' header and bodies go out as they are made.
        try:
            async for response in self._t.get_logs(
                _category(request), request.resource_meta, request.lines, request.token
            ):
                yield response
        except Exception as e:
            await _abort(context, "GetTaskLogs", e)

    async def ListAgents(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._pb.ListAgentsResponse(agents=self._agents())

    async def GetAgent(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        import grpc

        for agent in self._agents():
            if agent.name == request.name:
                return self._pb.GetAgentResponse(agent=agent)
        names = ", ".join(repr(a.name) for a in self._agents()) or "none"
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no connector named {request.name!r}; registered: {names}")

    def _agents(self) -> list[agent_pb2.Agent]:
        """One Agent per connector name, listing every category it handles (as flytekit does)."""
        agents: dict[str, agent_pb2.Agent] = {}
        for c in self._t.registry.list_connectors():
            agent = agents.setdefault(c.name, self._pb.Agent(name=c.name, is_sync=False))
            agent.supported_task_types.append(c.task_type_name)
            agent.supported_task_categories.add(name=c.task_type_name, version=int(c.task_type_version))
        return list(agents.values())


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def _start(
    registry: ConnectorRegistry, host: str, port: int, certificate: Any, private_key: Any, max_workers: int,
    options: Iterable[tuple[str, Any]], interceptors: Iterable[Any],
) -> tuple[grpc.aio.Server, int, LocalTransport]:
    import grpc
    import grpc.aio
    from flyteidl.service import agent_pb2, agent_pb2_grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from ._v2 import V2_SERVICES, ConnectionTransport, add_v2_handlers

    # One servicer under both flyteidl v1 and flyteidl2 names; v2's Connection reaches connectors as kwargs.
    transport = ConnectionTransport(registry, max_workers=max_workers)
    servicer = _AgentServicer(transport)
    # so_reuseport off: binding a port that is in use must fail, not silently share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options], interceptors=list(interceptors) or None)
    agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(servicer, server)
    agent_pb2_grpc.add_AgentMetadataServiceServicer_to_server(servicer, server)
    add_v2_handlers(server, servicer)
    health_servicer = health.aio.HealthServicer()
    services = [s.full_name for s in agent_pb2.DESCRIPTOR.services_by_name.values()] + list(V2_SERVICES)
    for name in ("", health.SERVICE_NAME, *services):  # "" is the whole server
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = _host_port(host, port)
    try:
        if certificate is not None or private_key is not None:
            if certificate is None or private_key is None:
                raise ValueError("TLS needs both certificate and private_key")
            pair = (read_pem(private_key, "private_key"), read_pem(certificate, "certificate"))
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as e:
        bound, cause = 0, e
    else:
        cause = None
    if not bound:
        raise OSError(f"could not listen on {address} (port in use or host not local?): {cause or 'bind failed'}")
    await server.start()
    return server, bound, transport


class ServerHandle:
    """A running connector service: ``.port``, ``.target``, ``.stop()``; a context manager."""

    def __init__(self, host: str, tls: bool, connectors: list[str]) -> None:
        self.host, self.tls, self.connectors = host, tls, connectors
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._transport: LocalTransport | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def target(self) -> str:
        """Address to give ``Session(...)``, e.g. ``grpc://127.0.0.1:8000``."""
        return f"{'grpcs' if self.tls else 'grpc'}://{_host_port(self.host, self.port)}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped.is_set()

    def _run(self, start: Any, ready: threading.Event, failure: list[BaseException]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server, self.port, self._transport = self._loop.run_until_complete(start)
        except BaseException as e:
            failure.append(e)
            return
        finally:
            ready.set()
        try:
            # run_forever, not wait_for_termination: the loop must outlive server.stop() (see _shutdown).
            self._loop.run_forever()
        finally:
            self._stopped.set()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _shutdown(self, grace: float | None) -> None:
        try:
            await self._server.stop(grace)  # type: ignore[union-attr]
            await self._transport.aclose()  # type: ignore[union-attr]
        finally:
            asyncio.get_running_loop().call_soon(self._loop.stop)

    def _launch(self, start: Any) -> None:
        ready, failure = threading.Event(), []
        self._thread = threading.Thread(
            target=self._run, args=(start, ready, failure), name="connector-nb-server", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._loop.close()
            raise failure[0]

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; in-flight calls get ``grace`` seconds to finish (None: cancelled at once)."""
        if self._server is None or self._stopped.is_set() or self._loop.is_closed():
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop)
        except RuntimeError:  # the loop closed meanwhile: already stopped
            return
        if self._thread is not threading.current_thread():
            future.result(timeout=(grace or 0) + 30)
            self._thread.join(timeout=10)  # type: ignore[union-attr]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops; True if it did. Interruptible (short waits in a loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.wait(0.25):
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self.running else "stopped"
        return f"<ServerHandle {self.target} {state}: {', '.join(self.connectors) or 'no connectors'}>"

    def _repr_html_(self) -> str:
        state = "serving" if self.running else "stopped"
        rows = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in self.connectors) or "<li>none</li>"
        return (f"<div><b>connector service</b> <code>{html.escape(self.target)}</code> ({state})"
                f"<ul>{rows}</ul></div>")


def import_modules(registry: ConnectorRegistry, modules: Iterable[str]) -> list[str]:
    """Import each module (a dotted name or a ``.py`` path) and register its connectors."""
    if os.getcwd() not in sys.path:  # like pyflyte: modules next to where the command runs
        sys.path.append(os.getcwd())
    registered = []
    for name in modules:
        module = _import(name)
        registered += [f"{c.task_type_name} (v{c.task_type_version})" for c in registry.register_module(module)]
    return registered


def _import(name: str) -> types.ModuleType:
    if not name.endswith(".py"):
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import connector module file {name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def serve(
    registry: ConnectorRegistry | None = None,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    modules: Iterable[str] = (),
    certificate: str | bytes | None = None,
    private_key: str | bytes | None = None,
    max_workers: int = 32,
    block: bool = True,
    options: Iterable[tuple[str, Any]] = (),
    interceptors: Iterable[Any] = (),
) -> ServerHandle:
    """Serve ``registry``'s connectors (the default registry when None) over gRPC.

    ``port=0`` picks a free port (see ``handle.port``). ``modules`` are imported and their connectors
    registered, like ``pyflyte serve connector --modules``. ``async def`` connector methods are awaited
    on the server's loop (no thread hop); ``max_workers`` threads run ``def`` ones. With ``block=False``
    the server runs in a background thread and the handle is returned at once; otherwise this returns
    after Ctrl-C/SIGTERM. ``options`` are extra grpc server options; ``interceptors`` are
    ``grpc.aio.ServerInterceptor`` objects (e.g. for auth).
    """
    from .registry import ConnectorRegistry

    registry = registry if registry is not None else ConnectorRegistry.default()
    import_modules(registry, modules)
    handle = ServerHandle(host, certificate is not None, registry.describe())
    handle._launch(_start(registry, host, int(port), certificate, private_key, max_workers, tuple(options),
                           tuple(interceptors)))
    if block:
        try:
            handle.wait()
        except KeyboardInterrupt:
            pass
        finally:
            handle.stop(grace=1.0)
    return handle


# -- CLI: ``connector-nb serve`` -------------------------------------------------------------------


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand (its ``func`` default is :func:`run_serve`)."""
    parser = subparsers.add_parser(
        "serve", help="serve connectors over gRPC as a Flyte connector service",
        description="Serve the registered connectors (plus --modules) as a Flyte connector service.",
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--modules", nargs="*", default=[], metavar="MODULE",
                        help="modules (or .py files) whose connectors to register")
    parser.add_argument("--certificate", help="PEM certificate file, to serve TLS")
    parser.add_argument("--private-key", help="PEM private key file, to serve TLS")
    parser.add_argument("--max-workers", type=int, default=32, help="threads for blocking connector methods")
    parser.set_defaults(func=run_serve)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGINT/SIGTERM; prints the listening address."""

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # handled by serve(): stop gracefully

    previous = signal.signal(signal.SIGTERM, terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        handle = serve(
            port=args.port, host=args.host, modules=args.modules or (), certificate=args.certificate,
            private_key=args.private_key, max_workers=args.max_workers, block=False,
        )
        print(f"connector service listening on {handle.target}", flush=True)
        print(f"connectors: {', '.join(handle.connectors) or 'none'}", flush=True)
        try:
            handle.wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
        finally:
            handle.stop(grace=1.0)
    except (OSError, ValueError, ImportError, ConnectorNbError) as e:
        print(f"connector-nb serve: error: {e}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


__all__ = ["ServerHandle", "add_serve_parser", "run_serve", "serve"]
