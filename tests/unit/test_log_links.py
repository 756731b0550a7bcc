"""Local log links open through connector_nb's Jupyter server extension, which serves registered files only."""

from __future__ import annotations

from types import SimpleNamespace

from connector_nb import jupyter_server as ext
from connector_nb.ui import reprs


def test_a_registered_log_file_is_found_by_its_token_only(tmp_path):
    runtime = tmp_path / "runtime"
    log = tmp_path / "job one.log"
    log.write_text("line 1\n")
    url = ext.log_url(log.as_uri(), str(runtime))
    assert url is not None and url.startswith(ext.ROUTE)
    token = url.removeprefix(ext.ROUTE)
    assert ext.registered_file(token, str(runtime)) == log.resolve()
    assert str(tmp_path) not in url  # a URL never names a path
    assert ext.log_url(log.as_uri(), str(runtime)) == url  # the same file keeps its token


def test_unknown_malformed_and_unregistered_tokens_are_refused(tmp_path):
    runtime = str(tmp_path / "runtime")
    secret = tmp_path / "secret.txt"
    secret.write_text("not a log")
    for token in ("0" * 32, "../../etc/passwd", str(secret), "", "ABCDEF" * 6):
        assert ext.registered_file(token, runtime) is None
    assert ext.log_url((tmp_path / "missing.log").as_uri(), runtime) is None
    assert ext.log_url("https://example.org/log", runtime) is None
    assert ext.log_url("file://otherhost/tmp/x.log", runtime) is None


def test_a_log_whose_file_vanished_is_not_served(tmp_path):
    runtime = str(tmp_path / "runtime")
    log = tmp_path / "gone.log"
    log.write_text("x")
    url = ext.log_url(log.as_uri(), runtime)
    assert url is not None
    log.unlink()
    assert ext.registered_file(url.removeprefix(ext.ROUTE), runtime) is None


def test_links_html_opens_served_files_and_names_the_rest(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("x")
    links = [SimpleNamespace(name="sleep log", uri=log.as_uri()),
             SimpleNamespace(name="dashboard", uri="https://example.org/run/1")]
    served = reprs.links_html(links, lambda uri: ext.log_url(uri, str(tmp_path / "rt")))
    assert "class='cnb-file-log' href='/connector-nb/logs/" in served and str(tmp_path) not in served
    assert "href='https://example.org/run/1' target='_blank' rel='noopener'" in served
    plain = reprs.links_html(links)  # a saved notebook: no dead file:// link, no machine path
    assert "<a class='cnb-file-log'" not in plain and "file://" not in plain and "sleep log" in plain
