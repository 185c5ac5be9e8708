"""Redaction: secrets never reach logs, reports, exceptions or recorded requests.

Two complementary mechanisms:

- by *name*: any mapping key that looks secret (``password``, ``api_key``, ``token``,
  ``authorization``, ``secret``, ``refresh``, ``access``, ``csrf``, ``pin_code``…) has its
  value replaced by ``"***"`` (``redact``);
- by *value*: every secret erpsync loads is registered (``register_secret``), and
  ``scrub`` replaces any occurrence of a registered value inside free text. A logging
  filter applies ``scrub`` to every record, so even a secret echoed back inside an
  error body or a URL is masked.
"""

from __future__ import annotations

import logging
import re
import threading
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
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.match(key)


def register_secret(value: str | None) -> None:
    """Remember a secret value so ``scrub`` masks it wherever it appears (min. 4 chars)."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def scrub(text: str) -> str:
    """Mask every registered secret value inside ``text``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


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
