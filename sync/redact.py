"""Redaction: secrets never reach logs, reports, exceptions or recorded requests.

Two complementary mechanisms:

- by *name*: any mapping key that looks secret (``password``, ``api_key``, ``token``,
  ``authorization``, ``secret``, ``refresh``, ``access``, ``csrf``, ``pin_code``…) has its
  value replaced by ``"***"`` (``redact``);
- by *value*: every secret erpsync loads is registered (``register_secret``), and
  ``scrub`` replaces any occurrence of a registered value inside free text. A logging
  filter applies ``scrub`` to every record, so even a secret echoed back inside an
  error body or a URL is masked.

Rotating secrets (SmartKasa session tokens, renewed every day for as long as a worker
lives) are registered under a *slot*: a slot keeps only its last few values, so the set
stays bounded and a token replaced twice stops being searched for. Registering only marks
the pattern stale; it is rebuilt once, on the next ``scrub`` (a rotation costs O(1), not a
recompile of every secret ever seen).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

MASK = "***"

_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|auth|access|refresh|csrf|pin_?code|cookie|signature"
    r"|x-api-key|x-refresh-token|passport|(?:^|_)inn(?:$|_))",
    re.IGNORECASE,
)
# Keys that contain a secret-looking word but are not secrets.
_NOT_SECRET = re.compile(
    r"^(access_?groups?|access_?group_?ids|accessGroupIds|access_expires_at|refresh_expires_at)$"
)

_lock = threading.Lock()
_secrets: set[str] = set()  # configuration secrets: few, for the life of the process
_slots: dict[str, list[str]] = {}  # rotating secrets: slot -> its latest values, oldest first
_forgotten: deque[str] = deque()  # slots whose owner is gone, dropped at the next rebuild
_pattern: re.Pattern[str] | None = None
_stale = False
SLOT_KEEP = 2  # values kept per slot: the current one and the one it replaced


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.match(key)


def register_secret(value: str | None, *, slot: str | None = None) -> None:
    """Remember a secret value so ``scrub`` masks it wherever it appears (min. 4 chars).

    With ``slot``, the value replaces older values of that slot beyond ``SLOT_KEEP``."""
    global _stale
    if not value or len(value) < 4:
        return
    with _lock:
        if slot is None:
            if value in _secrets:
                return
            _secrets.add(value)
        else:
            recent = _slots.setdefault(slot, [])
            if value in recent:
                return
            recent.append(value)
            del recent[:-SLOT_KEEP]
        _stale = True


def forget_slots(*slots: str) -> None:
    """Drop rotating secrets whose owner is gone (a closed session).

    Called from ``weakref.finalize``, i.e. from garbage collection, which may run while this
    thread holds ``_lock`` (an allocation inside ``register_secret``): so it takes no lock and
    only queues the slots; the next register or scrub drops them under the lock."""
    global _stale
    _forgotten.extend(slots)
    _stale = True


def _drop_forgotten() -> None:
    """Drop queued slots (caller holds ``_lock``)."""
    while _forgotten:
        _slots.pop(_forgotten.popleft(), None)


def registered_count() -> int:
    """How many values ``scrub`` searches for (bounded: see the module docstring)."""
    with _lock:
        _drop_forgotten()
        return len(_secrets | {v for values in _slots.values() for v in values})


def _current() -> re.Pattern[str] | None:
    global _pattern, _stale
    if _stale:
        with _lock:
            if _stale:
                _drop_forgotten()
                values = _secrets | {v for recent in _slots.values() for v in recent}
                ordered = sorted(values, key=len, reverse=True)
                _pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
                _stale = False
    return _pattern


def scrub(text: str) -> str:
    """Mask every registered secret value inside ``text``."""
    if not text:
        return text
    pattern = _current()
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def mask_value_in(message: str, value: Any) -> str:
    """``message`` without a sensitive ``value``: its text and every quoted part are masked.

    Rule messages quote what they could not read (``not a number: '123.456.789-09'``), in
    the raw or a normalized form, so both the value and any quoted literal go."""
    for text in sorted({str(value), repr(value)} if value is not None else (), key=len, reverse=True):
        if len(text) >= 2:
            message = message.replace(text, MASK)
    return _QUOTED.sub(MASK, message)


def redact(value: Any) -> Any:
    """Deep copy of JSON-like data with secret-named keys masked and secret values scrubbed."""
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and is_secret_key(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (MASK if is_secret_key(k) else scrub(v)) for k, v in headers.items()}


class RedactingFilter(logging.Filter):
    """Logging filter that scrubs registered secrets from every formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            return True
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to the root handlers (idempotent)."""
    target = logger or logging.getLogger()
    for handler in target.handlers or []:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
