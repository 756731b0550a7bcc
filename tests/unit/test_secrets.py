"""Secrets masked by name and by value; declared secrets resolved from the environment or a .env file."""

from __future__ import annotations

import json
import os

import ipywidgets
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from connector_nb import ConnectorRegistry, Session
from connector_nb import secrets as sec
from connector_nb.errors import ConnectorNbError, SecretNotFoundError
from connector_nb.examples import CONNECTORS
from connector_nb.secrets import MASK, mask, mask_error, mask_obj, redact, remember, resolve, secret_values
from connector_nb.testing import FakeConnector, fast_policy, wait_until
from connector_nb.ui.launch_panel import LaunchPanel
from connector_nb.ui.run_view import RunView


@pytest.fixture(autouse=True)
def fresh_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTOR_NB_HOME", str(tmp_path / "state"))
    sec.forget_all()
    yield
    sec.forget_all()


@pytest.fixture
def dummy_comm():
    setup_test_comm()
    yield
    teardown_test_comm()


# ----------------------------------------------------------------------------------------------- masking


def test_remembered_values_are_masked_anywhere_in_text() -> None:
    remember("hunter2-secret", "ab", None, "")  # too short or empty values are ignored
    assert mask("said hunter2-secret twice: hunter2-secret") == f"said {MASK} twice: {MASK}"
    assert mask("ab cd") == "ab cd"


def test_url_credentials_and_secret_named_pairs_are_masked() -> None:
    assert mask("conn=postgres://u:S3CR3T@h/db") == f"conn=postgres://u:{MASK}@h/db"
    assert mask("later the bare S3CR3T leaks") == f"later the bare {MASK} leaks"  # the URL password is remembered
    assert mask("API_KEY=abc123 rest") == f"API_KEY={MASK} rest"
    assert mask('{"token": "xyz1", "n": 1}') == f'{{"token": "{MASK}", "n": 1}}'
    assert mask("{'password': 'p w'}") == f"{{'password': '{MASK}'}}"
    assert mask("Authorization: Bearer abcdef") == f"Authorization: Bearer {MASK}"
    assert mask("https://h/x?api_key=zz9&y=1") == f"https://h/x?api_key={MASK}&y=1"
    assert mask("grpc://localhost:50051 and log token must be an offset") == (
        "grpc://localhost:50051 and log token must be an offset")


def test_mask_obj_and_redact_mask_by_name_and_value() -> None:
    remember("known-value")
    value = {"a": ["postgres://u:pw1@h", "x known-value y"], "db_password": "zzz9", "n": {"secret": {"x": "deep1"}},
             "count": 3}
    masked = mask_obj(value)
    assert masked == {"a": [f"postgres://u:{MASK}@h", f"x {MASK} y"], "db_password": MASK, "n": {"secret": MASK},
                      "count": 3}
    assert redact(value) == masked
    assert mask("zzz9 and deep1") == f"{MASK} and {MASK}"  # secret-named values are remembered on the way


def test_secret_values_remember_and_mask_error_masks_by_value() -> None:
    assert secret_values({"api_key": "k-123456", "n": 1}) == ["k-123456"]
    error = ValueError("bad k-123456 at postgres://me:pw-42@h")
    error.__cause__ = RuntimeError("cause mentions k-123456")
    mask_error(error, {})
    assert str(error) == f"bad {MASK} at postgres://me:{MASK}@h" and MASK in str(error.__cause__)


# ----------------------------------------------------------------------------------------- declared secrets


def test_resolve_reads_environment_exact_then_upper_case(monkeypatch) -> None:
    monkeypatch.setenv("api_key", "exact-value")
    monkeypatch.setenv("DB_TOKEN", "upper-value")
    assert resolve(["api_key", "db_token"], env_file=None) == {"api_key": "exact-value", "db_token": "upper-value"}
    assert mask("exact-value upper-value") == f"{MASK} {MASK}"


def test_resolve_reads_dotenv_file_and_notices_changes(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SERVICE_PASSWORD", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text('SERVICE_PASSWORD="from-dotenv"\n# comment\nOTHER=1\n')
    assert resolve(["service_password"], env_file=env_file) == {"service_password": "from-dotenv"}
    env_file.write_text('SERVICE_PASSWORD="changed-value-longer"\n')
    assert resolve(["service_password"], env_file=env_file) == {"service_password": "changed-value-longer"}
    monkeypatch.setenv("SERVICE_PASSWORD", "env-wins")
    assert resolve(["service_password"], env_file=env_file) == {"service_password": "env-wins"}


def test_missing_secret_names_the_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MISSING_TOKEN", raising=False)
    monkeypatch.delenv("missing_token", raising=False)
    with pytest.raises(SecretNotFoundError, match="secret 'missing_token' is not set.*MISSING_TOKEN") as info:
        resolve(["missing_token"], env_file=tmp_path / "nope.env")
    assert isinstance(info.value, ConnectorNbError)
    with pytest.raises(TypeError, match="secret names"):
        resolve("api_key")


def test_declared_reads_the_connector_class_attribute() -> None:
    class WithSecrets(FakeConnector):
        secrets = ("api_key",)

    assert sec.declared(WithSecrets()) == ("api_key",)
    assert sec.declared(FakeConnector()) == ()

    class Bad(FakeConnector):
        secrets = "api_key"

    with pytest.raises(TypeError, match="must be a tuple of names"):
        sec.declared(Bad())


# -------------------------------------------------------------------------------------------- widgets


def _manager_state_text() -> str:
    return json.dumps(ipywidgets.Widget.get_manager_state(drop_defaults=False), default=str)


def test_launch_panel_clears_password_fields_and_keeps_secrets_out_of_widget_state(dummy_comm, tmp_path) -> None:
    fake = FakeConnector(script=["SUCCEEDED"], input_types={"api_token": str, "name": str})
    fake.input_defaults = {"api_token": "default-token-value"}  # type: ignore[misc]
    with Session(registry=ConnectorRegistry([fake]), output_dir=str(tmp_path), poll=fast_policy()) as session:
        panel = LaunchPanel(session)
        panel.connector.value = ("fake", 0)
        fields = {f.name: f.widget for f in panel.fields}
        assert type(fields["api_token"]).__name__ == "Password"
        assert "default-token-value" not in _manager_state_text()  # a default never enters widget state
        fields["api_token"].value = "typed-secret-9"
        # typed but not launched: taken into the kernel at once, never left in state a saved notebook keeps
        assert fields["api_token"].value == "" and "typed-secret-9" not in _manager_state_text()
        assert "set" in fields["api_token"].placeholder
        fields["name"].value = "visible"
        panel.launch_button.click()
        wait_until(lambda: len(session.runs) == 1, what="launch")
        run = session.runs[0]
        assert run.inputs["api_token"] == "typed-secret-9"  # the connector got the value
        assert fields["api_token"].value == "" and fields["name"].value == "visible"
        wait_until(lambda: panel.run_views, what="run view")
        state = _manager_state_text()
        assert "typed-secret-9" not in state and "default-token-value" not in state
        fields["name"].value = "again"
        panel.launch_button.click()  # empty password field: the default is used, still never in state
        wait_until(lambda: len(session.runs) == 2, what="second launch")
        assert session.runs[1].inputs["api_token"] == "default-token-value"
        assert "default-token-value" not in _manager_state_text()


# ------------------------------------------------------------------------------- every route, every place


def test_one_secret_per_route_appears_nowhere(dummy_comm, tmp_path, monkeypatch) -> None:
    """Secret-named input, declared secret from env, URL credential, custom field, text echoed in logs."""
    named, declared, url_pw, custom_tok = "named-S1-value", "declared-S2-value", "urlpw-S3-value", "custom-S4-value"
    monkeypatch.setenv("DEMO_TOKEN", declared)
    assert resolve(["demo_token"], env_file=None) == {"demo_token": declared}
    registry = ConnectorRegistry([cls() for cls in CONNECTORS])
    with Session(registry=registry, output_dir=str(tmp_path), poll=fast_policy()) as session:
        runs = [
            session.launch("shell", command='echo "key=$API_KEY"; echo plain $API_KEY', env={"API_KEY": named}),
            session.launch("shell", command=f"echo using {declared}; echo postgres://me:{url_pw}@db/x"),
            session.launch("shell", command=f"echo bye {named} >&2; exit 4"),
            session.launch("sleep", {"seconds": 0.05}, custom={"token": custom_tok}),
        ]
        for run in runs:
            run.wait(timeout=30)
        assert [r.phase for r in runs] == ["SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED"]
        views = [RunView(run) for run in runs]
        for run, view in zip(runs[:3], views):
            view.tabs.selected_index = 0  # the Logs tab is made, and fetched, on first open
            wait_until(lambda v=view, r=run: r.logs().lines and MASK in v.page(0).value, what="logs in the view")
        logs = [run.logs() for run in runs]
        assert logs[0].lines == [f"key={MASK}", f"plain {MASK}"]  # the echo really happened, masked
        places = {
            "repr": [repr(r) for r in runs],
            "html": [r._repr_html_() for r in runs],
            "logs": [str(log.lines) for log in logs],
            "messages": [r.message for r in runs],
            "errors": [str(r.error) for r in runs],
            "widget state": [_manager_state_text()],
        }
        for secret in (named, declared, url_pw, custom_tok):
            leaks = {where: [t for t in texts if secret in t] for where, texts in places.items()}
            assert not any(leaks.values()), (secret, leaks)
        assert sum(len(texts) for texts in places.values()) >= 20
        assert os.environ.get("API_KEY") != named  # the job's env never came from (or went into) ours


def test_mask_obj_keeps_sequence_types_including_namedtuples() -> None:
    from collections import namedtuple

    Pair = namedtuple("Pair", "user url")
    masked = mask_obj({"p": Pair("me", "https://me:pw-777@h"), "t": ("a", "b"), "deep": [[[["x"]]]]})
    assert masked["p"] == Pair("me", f"https://me:{MASK}@h") and type(masked["p"]) is Pair
    assert masked["t"] == ("a", "b") and masked["deep"] == [[[["x"]]]]
    deep: list = []
    current = deep
    for _ in range(200):
        current.append([])
        current = current[0]
    assert "[" in repr(mask_obj(deep))  # deeper than the walk goes: cut off with a mask, never a RecursionError


def test_numbers_under_secret_looking_names_are_masked_by_name_only() -> None:
    assert redact({"max_tokens": 1000, "api_key": "sk-abc"}) == {"max_tokens": MASK, "api_key": MASK}
    assert secret_values({"max_tokens": 1000}) == ["1000"]
    assert mask("fetched 1000 rows with sk-abc") == f"fetched 1000 rows with {MASK}"
