"""A tiny Jupyter server extension that opens connector_nb's local log files from a notebook's log links.

A browser refuses ``file://`` links from a web page. The kernel side (:func:`log_url`) registers a log file
under an unguessable token in a folder of Jupyter's runtime directory, which the server and its kernels
share; the server side serves ``<base_url>connector-nb/logs/<token>`` to logged-in users, and only files
registered that way: a URL never names a path, so no other file can be read through it.

Enabled by ``etc/jupyter/jupyter_server_config.d/connector_nb.json`` (installed with the package), or by
``--ServerApp.jpserver_extensions='{"connector_nb.jupyter_server": true}'``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

#: The URL path (under the server's base URL) of a registered log file.
ROUTE = "connector-nb/logs/"
_TOKEN = re.compile(r"[0-9a-f]{32}")
#: Largest log served (the tail beyond it is what a user wants least; the Logs tab has every line).
MAX_BYTES = 8 * 1024 * 1024
_SALT = secrets.token_hex(16)


def registry_dir(runtime_dir: str | None = None) -> Path:
    """Where tokens are kept: ``connector-nb-logs`` in Jupyter's runtime directory."""
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    return Path(runtime_dir) / "connector-nb-logs"


def file_path(uri: str) -> str | None:
    """The local path of a ``file://`` URI; None for any other URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return unquote(parsed.path)


def log_url(uri: str, runtime_dir: str | None = None) -> str | None:
    """The server-relative URL of a local log file (registered now); None if it is not an existing file."""
    path = file_path(uri)
    if path is None or not os.path.isfile(path):
        return None
    token = hashlib.sha256(f"{_SALT}:{path}".encode()).hexdigest()[:32]
    folder = registry_dir(runtime_dir)
    entry = folder / token
    if not entry.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry.write_text(os.path.realpath(path))
    return ROUTE + token


def registered_file(token: str, runtime_dir: str | None = None) -> Path | None:
    """The file a token was registered for; None for a malformed or unknown token or a vanished file."""
    if not _TOKEN.fullmatch(token):
        return None
    entry = registry_dir(runtime_dir) / token
    try:
        path = Path(entry.read_text())
    except OSError:
        return None
    return path if path.is_file() else None


def _handler_class() -> Any:
    from jupyter_server.base.handlers import JupyterHandler
    from tornado import web

    class LogFileHandler(JupyterHandler):
        """Serves one registered log file as plain text."""

        @web.authenticated
        def get(self, token: str) -> None:
            path = registered_file(token, self.settings.get("connector_nb_runtime_dir"))
            if path is None:
                raise web.HTTPError(404, "no such connector_nb log")
            with path.open("rb") as f:
                size = path.stat().st_size
                f.seek(max(0, size - MAX_BYTES))
                body = f.read(MAX_BYTES)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Cache-Control", "no-store")
            self.finish(body)

    return LogFileHandler


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "connector_nb.jupyter_server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.utils import url_path_join

    web_app = serverapp.web_app
    web_app.settings["connector_nb_runtime_dir"] = serverapp.runtime_dir
    pattern = url_path_join(web_app.settings["base_url"], ROUTE + r"([0-9a-f]+)")
    web_app.add_handlers(".*$", [(pattern, _handler_class())])


__all__ = ["ROUTE", "file_path", "log_url", "registered_file", "registry_dir"]
