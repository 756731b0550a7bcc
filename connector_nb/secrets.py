"""Secrets: masked by name and by value, and resolved from the environment or a ``.env`` file.

Every secret value that passes through here (a secret-named input, a declared secret, a URL password) is
remembered for the life of the process, and ``mask`` replaces it wherever it shows up later: a repr, a widget,
a log line, an error or the journal.

Declaring secrets: a connector lists the secrets it needs as a class attribute, ``secrets = ("api_key",)``.
``resolve(names)`` finds each one in the environment (the exact name, then its UPPER-CASE form, e.g.
``API_KEY``) or else in a ``.env`` file (read with python-dotenv), and they reach the connector's methods as
keyword arguments (``def create(self, ..., api_key: str, **kwargs)``), as Flyte 2 passes ``Connection.secrets``.
A missing secret is a ``SecretNotFoundError`` naming the variable to set.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import SecretNotFoundError

MASK = "••••"
# Over-masking a harmless name costs little; leaking one secret costs a lot.
_SECRET_NAME = re.compile(
    r"passw|pwd|secret|token|credential|auth|api_?key|private_?key|(^|[_-])key([_-]|$)", re.IGNORECASE
)
_MAYBE_SECRET_NAME = re.compile(r"passw|pwd|secret|token|credential|auth|key", re.IGNORECASE)
#: Shorter values are never masked by value: replacing every "ab" would mangle text, not protect anything.
MIN_SECRET_LEN = 3
#: Deepest structure ``mask_obj`` walks; anything deeper is replaced, never shown unmasked.
_MAX_DEPTH = 64

# ``scheme://user:password@host``: the password is group "pw".
_URL_CREDENTIAL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#]*:)(?P<pw>[^\s@/?#]+)(?=@)")
# ``name=value``, ``name: value``, ``"name": "value"`` and ``'name': 'value'``; masked when name looks secret.
_PAIR = re.compile(
    r"""(?P<kq>["']?)(?P<key>[A-Za-z_][\w.\-]*)(?P=kq)(?P<sep>\s*(?:=|:(?!//))\s*)"""
    r"""(?:(?P<vq>["'])(?P<qval>(?:\\.|(?!(?P=vq)).)*)(?P=vq)"""
    r"""|(?P<scheme>(?:Bearer|Basic|Token)\s+)?(?P<val>[^\s"',;&{}\[\]()]+))"""
)

_lock = threading.Lock()
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_generation = 0  # bumped whenever the registry changes, so callers can cache "nothing to mask here"
_dotenv_cache: dict[str, tuple[tuple[int, int], dict[str, str | None]]] = {}


def is_secret_name(name: str) -> bool:
    """Whether a field name looks like it holds a secret (password, token, api_key, ...)."""
    return bool(_SECRET_NAME.search(name))


# ----------------------------------------------------------------------------------- the value registry


def remember(*values: Any) -> None:
    """Add secret values to the process-wide registry that ``mask`` replaces (short or empty ones are ignored)."""
    global _known_pattern, _generation
    new = {str(v) for v in values if v is not None and len(str(v)) >= MIN_SECRET_LEN} - _known
    if not new:
        return
    with _lock:
        _known.update(new)
        _known_pattern = None  # rebuilt on next use
        _generation += 1


def forget_all() -> None:
    """Empty the registry (for tests)."""
    global _known_pattern, _generation
    with _lock:
        _known.clear()
        _known_pattern = None
        _generation += 1


def generation() -> int:
    """A number that changes whenever the registry does: text found clean stays clean until it changes."""
    return _generation


def _pattern() -> re.Pattern[str] | None:
    global _known_pattern
    with _lock:
        if _known_pattern is None and _known:
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(_known, key=len, reverse=True)
            _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))
        return _known_pattern


def _mask_url(match: re.Match[str]) -> str:
    if match["pw"] != MASK:
        remember(match["pw"])
    return match["head"] + MASK


def _mask_pair(match: re.Match[str]) -> str:
    if not is_secret_name(match["key"]) or (match["val"] or match["qval"] or "") in ("", MASK):
        return match[0]
    # Not remembered: a pair's value may be a common word ("none"), which would then be masked everywhere.
    head = f"{match['kq']}{match['key']}{match['kq']}{match['sep']}"
    if match["vq"]:
        return f"{head}{match['vq']}{MASK}{match['vq']}"
    return f"{head}{match['scheme'] or ''}{MASK}"


def mask(text: str) -> str:
    """``text`` with every remembered secret value, URL password and secret-named ``key=value`` masked."""
    if not isinstance(text, str) or not text:
        return text
    if "://" in text:
        text = _URL_CREDENTIAL.sub(_mask_url, text)
    if _MAYBE_SECRET_NAME.search(text):  # cheap pre-check: most log lines name no secret at all
        text = _PAIR.sub(_mask_pair, text)
    pattern = _pattern()
    return pattern.sub(MASK, text) if pattern is not None else text


def mask_obj(obj: Any, _depth: int = 0) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, strings at any depth) with secrets masked by name and value."""
    if _depth > _MAX_DEPTH:
        return MASK
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if is_secret_name(str(key)) and value not in (None, ""):
                _remember_value(value)
                out[key] = MASK
            else:
                out[key] = mask_obj(value, _depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return _same_kind(obj, [mask_obj(v, _depth + 1) for v in obj])
    return obj


def _same_kind(original: list[Any] | tuple[Any, ...], items: list[Any]) -> Any:
    """``items`` as the same sequence type as ``original`` (a namedtuple takes them as arguments)."""
    try:
        if hasattr(original, "_fields"):
            return type(original)(*items)
        return type(original)(items)
    except TypeError:  # a subclass with its own constructor: a plain list/tuple still shows the masked values
        return tuple(items) if isinstance(original, tuple) else items


def _remember_value(value: Any) -> None:
    if isinstance(value, Mapping):
        for v in value.values():
            _remember_value(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _remember_value(v)
    elif isinstance(value, str):  # numbers are not remembered: ``max_tokens=1000`` must not mask every 1000
        remember(value)


# ------------------------------------------------------------------------------- masking by name (inputs)


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with secret-named values (at any depth) replaced by a mask, those values remembered, and every
    string masked by value (remembered secrets, URL passwords), for reprs, widgets and the journal."""
    masked: dict[str, Any] = mask_obj(values)
    return masked


def secret_values(values: Mapping[str, Any]) -> list[str]:
    """The string forms of secret-named values (at any depth), longest first; they are also remembered."""
    found: list[str] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            found += secret_values(value)
        elif is_secret_name(str(key)) and value not in (None, ""):
            found.append(str(value))
    remember(*(v for v in found if not v.lstrip("-").replace(".", "", 1).isdigit()))  # as in _remember_value
    return sorted(set(found), key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text``, then apply ``mask``."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LEN:
            text = text.replace(secret, MASK)
    return mask(text)


def mask_error(error: BaseException, values: Mapping[str, Any]) -> BaseException:
    """Mask secret input values, remembered secrets and URL passwords in an exception and its causes, in place."""
    secrets = secret_values(values)
    seen: BaseException | None = error
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        seen.args = tuple(mask_text(a, secrets) if isinstance(a, str) else a for a in seen.args)
        seen = seen.__cause__ or seen.__context__
    return error


# ----------------------------------------------------------------------------------- declared secrets


def _dotenv(env_file: str | os.PathLike[str] | None) -> dict[str, str | None]:
    """The ``.env`` file's values via python-dotenv, cached until the file changes ({} when there is none)."""
    if env_file is None:
        return {}
    path = Path(env_file).expanduser().resolve()
    try:
        stat = path.stat()
    except OSError:
        return {}
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _dotenv_cache.get(str(path))
    if cached is not None and cached[0] == key:
        return cached[1]
    from dotenv import dotenv_values

    values = dict(dotenv_values(path))
    _dotenv_cache[str(path)] = (key, values)
    return values


def resolve(names: Iterable[str], env_file: str | os.PathLike[str] | None = ".env") -> dict[str, str]:
    """Declared secrets by name, from environment variables (exact name, then UPPER-CASE) or ``env_file``.

    The values are remembered, so ``mask`` hides them everywhere; a missing one is a SecretNotFoundError
    naming the variables that were tried.
    """
    if isinstance(names, str):
        raise TypeError(f"secret names must be a list or tuple of names, got the string {names!r}")
    names = list(names)
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"secret names must be non-empty strings, got {names!r}")
    found: dict[str, str] = {}
    file_values: dict[str, str | None] | None = None
    for name in names:
        value = os.environ.get(name) or os.environ.get(name.upper())
        if value is None:
            file_values = _dotenv(env_file) if file_values is None else file_values
            value = file_values.get(name) or file_values.get(name.upper())
        if not value:
            where = f" or in {env_file}" if env_file is not None else ""
            raise SecretNotFoundError(
                f"secret {name!r} is not set: define the environment variable {name.upper()} "
                f"(or {name}){where}"
            )
        found[name] = value
    remember(*found.values())
    return found


def declared(connector: Any) -> tuple[str, ...]:
    """A connector's declared secret names (its ``secrets`` class attribute), checked."""
    names = getattr(connector, "secrets", ())
    if isinstance(names, str) or not isinstance(names, (tuple, list)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{type(connector).__name__}.secrets must be a tuple of names, got {names!r}")
    return tuple(names)


__all__ = [
    "MASK", "declared", "forget_all", "is_secret_name", "mask", "mask_error", "mask_obj", "mask_text", "redact",
    "remember", "resolve", "secret_values",
]
