"""Logs of a run: text plus a structured form, collected across continuation tokens."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transports.base import TaskCategory, Transport

#: Bound on pages followed, so a connector that always returns a token cannot loop forever.
MAX_PAGES = 1000


class Logs(str):
    """The log text (a ``str``), with ``lines``, ``structured`` (per-line dicts) and the last ``token``."""

    lines: list[str]
    structured: list[dict[str, Any]]
    token: str

    def __new__(cls, lines: list[str], structured: list[dict[str, Any]] | None = None, token: str = "") -> Logs:
        self = super().__new__(cls, "\n".join(lines))
        self.lines = list(lines)
        self.structured = structured or [{"line": i, "text": text} for i, text in enumerate(lines)]
        self.token = token
        return self

    def tail(self, n: int = 20) -> Logs:
        """The last ``n`` lines."""
        return Logs(self.lines[-n:], self.structured[-n:], self.token)

    def __repr__(self) -> str:
        return f"<Logs {len(self.lines)} lines>\n" + "\n".join(self.lines[-20:])

    def _repr_html_(self) -> str:
        body = html.escape(str(self)) or "<i>no log lines</i>"
        return (f"<details open><summary>Logs ({len(self.lines)} lines)</summary>"
                f"<pre style='max-height:24em;overflow:auto'>{body}</pre></details>")


async def collect_logs(transport: Transport, category: TaskCategory, resource_meta: bytes, lines: int = 0) -> Logs:
    """Read every page: each call streams an optional header (next token) and bodies of lines."""
    from google.protobuf import json_format

    from .secrets import mask, mask_obj

    texts: list[str] = []
    structured: list[dict[str, Any]] = []
    token, seen = "", set()
    for _ in range(MAX_PAGES):
        next_token = ""
        async for response in transport.get_logs(category, resource_meta, lines, token):
            if response.HasField("header"):
                next_token = response.header.token
            elif response.HasField("body"):
                # Flyte 2 connectors fill only structured lines (flyteidl2's ``lines``): their messages are the text.
                found = response.body.results or [s.message for s in response.body.structured_lines]
                texts.extend(mask(line) for line in found)  # secret values never reach a log view
                structured.extend(mask_obj(json_format.MessageToDict(s)) for s in response.body.structured_lines)
        if not next_token or next_token == token or next_token in seen:
            return Logs(texts, structured or None, next_token or token)
        seen.add(token)
        token = next_token
    return Logs(texts, structured or None, token)
