"""Serving is safe by default: only what it is given, never shell unless allowed, a token off loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_nb import ConnectorRegistry, Session
from connector_nb.errors import ServeRefusedError
from connector_nb.examples import CONNECTORS
from connector_nb.server import serve
from connector_nb.testing import FakeConnector

TOKEN = "s3cr3t-token-value"


def _served(handle) -> set[str]:
    with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
        agents = agent_pb2_grpc.AgentMetadataServiceStub(channel).ListAgents(agent_pb2.ListAgentsRequest(), timeout=10)
    return {t for a in agents.agents for t in a.supported_task_types}


def _get(handle, task_type: str, metadata=()) -> grpc.RpcError | agent_pb2.GetTaskResponse:
    request = agent_pb2.GetTaskRequest(task_category=agent_pb2.TaskCategory(name=task_type), resource_meta=b"{}")
    with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
        try:
            return agent_pb2_grpc.AsyncAgentServiceStub(channel).GetTask(request, timeout=10, metadata=metadata)
        except grpc.RpcError as e:
            return e


def test_default_serve_has_no_examples_and_never_shell():
    with serve(port=0, block=False) as bare:
        assert not {"sleep", "shell", "sqlite_query"} & _served(bare)
    with serve(port=0, block=False, examples=True) as examples:
        assert {"sleep", "sqlite_query"} <= _served(examples) and "shell" not in _served(examples)
        refused = _get(examples, "shell")
        assert refused.code() is grpc.StatusCode.NOT_FOUND
        assert "'shell'" in refused.details() and "shell (v0)" not in refused.details()
    with serve(port=0, block=False, examples=True, allow_shell=True) as allowed:
        assert "shell" in _served(allowed)


def test_a_given_registry_and_session_serve_hide_shell_too(tmp_path):
    with serve(ConnectorRegistry(CONNECTORS), port=0, block=False) as handle:
        assert _served(handle) == {"sleep", "sqlite_query"}
        assert "shell" not in repr(handle)
    with Session(registry=ConnectorRegistry(CONNECTORS), output_dir=str(tmp_path)) as local:
        handle = local.serve(port=0)
        try:
            assert "shell" not in _served(handle)
            assert _get(handle, "shell").code() is grpc.StatusCode.NOT_FOUND
        finally:
            handle.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_non_loopback_without_tls_and_token_refuses_before_binding(host, tmp_path):
    with pytest.raises(ServeRefusedError, match="TLS .* and an auth token"):
        serve(ConnectorRegistry(), host=host, port=0, block=False)
    with pytest.raises(ServeRefusedError, match="without an auth token") as info:
        serve(ConnectorRegistry(), host=host, port=0, block=False, certificate="c.pem", private_key="k.pem")
    assert "TLS" not in str(info.value).split("without")[1]
    with pytest.raises(ServeRefusedError, match="without TLS") as info:
        serve(ConnectorRegistry(), host=host, port=0, block=False, auth_token=TOKEN)
    assert TOKEN not in str(info.value)


def test_session_serve_follows_the_same_rules(tmp_path):
    with Session(registry=ConnectorRegistry([FakeConnector("nb")]), output_dir=str(tmp_path)) as local:
        with pytest.raises(ServeRefusedError):
            local.serve(host="0.0.0.0")


@pytest.mark.parametrize("token", ["", " padded ", "two\nlines", "n\u00e9", 42])
def test_bad_tokens_are_refused_without_echoing_them(token):
    with pytest.raises(ValueError, match="auth_token: expected a non-empty printable ASCII string") as info:
        serve(ConnectorRegistry(), port=0, block=False, auth_token=token)
    assert str(token).strip() not in str(info.value) or str(token).strip() == ""


def test_token_is_checked_by_the_server_and_health_stays_open():
    with serve(ConnectorRegistry([FakeConnector("fake")]), port=0, block=False, auth_token=TOKEN) as handle:
        for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),),
                         (("authorization", f"Bearer {TOKEN}x"),)]:
            refused = _get(handle, "fake", metadata)
            assert isinstance(refused, grpc.RpcError) and refused.code() is grpc.StatusCode.UNAUTHENTICATED
            assert TOKEN not in refused.details()
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as info:  # the stream too
                list(agent_pb2_grpc.AsyncAgentServiceStub(channel).GetTaskLogs(
                    agent_pb2.GetTaskLogsRequest(task_category=agent_pb2.TaskCategory(name="fake")), timeout=10))
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        # the right token: a real error from the connector path (malformed meta), not UNAUTHENTICATED
        answered = _get(handle, "fake", (("authorization", f"Bearer {TOKEN}"),))
        assert answered.code() is grpc.StatusCode.INVALID_ARGUMENT
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
            created = stub.CreateTask(agent_pb2.CreateTaskRequest(template=FakeConnector("fake").task_template()),
                                      timeout=10, metadata=(("authorization", f"Bearer {TOKEN}"),))
            got = stub.GetTask(agent_pb2.GetTaskRequest(task_category=agent_pb2.TaskCategory(name="fake"),
                                                        resource_meta=created.resource_meta),
                               timeout=10, metadata=(("authorization", f"Bearer {TOKEN}"),))
            assert got.resource.phase != 0


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_nb.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_cli_serve_refusals_are_one_line_with_exit_code_2():
    out = _cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "refusing to serve on non-loopback host '0.0.0.0'" in out.stderr and out.stdout == ""
    out = _cli("serve", "--port", "0", "--auth-token-env", "CONNECTOR_NB_NO_SUCH_VAR")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "connector-nb serve: error: --auth-token-env: environment variable 'CONNECTOR_NB_NO_SUCH_VAR' is not set "
        "or empty"]
    out = _cli("serve", "--port", "0", "--modules", "connector_nb_no_such_module")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "ModuleNotFoundError" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("flags", "expected"), [
    ((), set()), (("--examples",), {"sleep", "sqlite_query"}),
    (("--examples", "--allow-shell"), {"sleep", "sqlite_query", "shell"}),
])
def test_cli_serve_serves_what_it_is_given(flags, expected):
    proc = subprocess.Popen([sys.executable, "-m", "connector_nb.cli", "serve", "--port", "0", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend([proc.stdout.readline(), proc.stdout.readline()]))
    reader.start()
    reader.join(60)
    try:
        assert lines and lines[0].startswith("connector service listening on grpc://127.0.0.1:"), proc.stderr
        served = {item.split(" (")[0] for item in lines[1].removeprefix("connectors: ").strip().split(", ")} - {"none"}
        assert served & {"sleep", "sqlite_query", "shell"} == expected
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_no_tls_or_token(host):
    from connector_nb.server import check_exposure

    check_exposure(host, tls=False, auth_token=None)  # no error
    with pytest.raises(ServeRefusedError):
        check_exposure("10.0.0.1", tls=True, auth_token=None)


def test_limits_are_validated():
    from connector_nb.server import ServeLimits

    for bad in (0, -1, True, "5"):
        with pytest.raises(ValueError, match="ServeLimits.call_timeout must be a positive number"):
            ServeLimits(call_timeout=bad)


def test_tls_and_token_together(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    registry = ConnectorRegistry([FakeConnector("fake")])
    with serve(registry, port=0, block=False, certificate=str(cert), private_key=str(key), auth_token=TOKEN) as h:
        assert h.target.startswith("grpcs://") and TOKEN not in repr(h) and TOKEN not in h._repr_html_()
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{h.port}", credentials) as channel:
            stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            agents = stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10,
                                     metadata=(("authorization", f"Bearer {TOKEN}"),))
            assert [a.name for a in agents.agents] == ["Fake connector"]
