"""Tryton JSON-RPC errors → ``sync.errors`` (field guide §3.1, trytond.protocols).

Tryton answers a failed *call* with HTTP 200 and ``{"id": …, "error": [...]}``:

- ``["UserError", [message, description, domain]]``: validation (a bad CPF check digit,
  an EAN, a domain violation, a read-only field, access rules) → :class:`TrytonUserError`,
  a *record* error: the row is quarantined with Tryton's own message and the run goes on;
- ``["UserWarning", [name, message, description]]`` → :class:`TrytonWarning` (record);
  Tryton drops private context keys (``_skip_warnings``) sent over RPC: a warning is
  confirmed by creating a ``res.user.warning`` with its ``name``, as Tryton's client does;
- ``["ConcurrencyException", message]`` → :class:`TrytonConcurrencyError`, a
  :class:`~sync.errors.StaleVersion`: the record changed since it was read; re-read and
  re-plan, never overwrite;
- ``["LoginException", [name, message, type]]`` → :class:`TrytonLoginError` (terminal);
- anything else (``["'bad_field'", "<traceback>"]``, a server exception) →
  :class:`TrytonBug`, with the method and the JSON-RPC request id to report.

HTTP statuses (the transport layer): 401 = no or expired session or a wrong password
(the client logs in again once; a login answered 401 is :class:`TrytonAuthFailed`);
403 = the method is not exposed over RPC (:class:`TrytonForbidden`); 429 = login rate
limit (backed off); 503 = the database was busy and the transaction was rolled back
(:class:`TrytonBusy`, nothing was applied; on SQLite a 503 can be deterministic for a
too-large batch, see ``batch_too_large``).

Nothing here includes the password or the session key: the client registers both with
``sync.redact`` and bodies are redacted before they are kept.
"""

from __future__ import annotations

from typing import Any

import httpx

from sync.clients.http import parse_body, redacted_body
from sync.clients.retry import parse_retry_after
from sync.errors import (
    ContractViolation,
    Forbidden,
    RateLimited,
    ServerError,
    StaleVersion,
    StatusError,
    Unauthorized,
    Unprocessable,
)
from sync.redact import scrub

PLATFORM = "tryton"

_BATCH_TOO_LARGE = (
    "parser stack overflow",
    "maximum recursion depth",
    "expression tree is too large",
    "too many sql variables",
)


class TrytonUserError(Unprocessable):
    """Tryton refused the call with a UserError: the row is quarantined with ``message``.

    ``tryton_message`` and ``description`` are Tryton's own texts; ``domain`` the domain
    information Tryton attaches to domain violations (may be None)."""

    kind = "record"
    default_hint = "fix the record in Tryton (Tryton's message says what); it is retried when it changes"

    def __init__(
        self,
        message: str,
        *,
        description: str = "",
        domain: Any = None,
        rpc_method: str | None = None,
        **kw: Any,
    ) -> None:
        text = f"{message} {description}".strip() if description and description not in message else message
        kw.setdefault("status", 200)
        kw.setdefault("platform", PLATFORM)
        super().__init__(text, **kw)
        self.tryton_message = message
        self.description = description
        self.domain = domain
        self.rpc_method = rpc_method

    def __str__(self) -> str:
        return _text("tryton", self.rpc_method, self.message, self.request_id, self.hint)


class TrytonWarning(TrytonUserError):
    """A UserWarning: Tryton asks a human to confirm (``name`` identifies the warning)."""

    default_hint = (
        "a person confirms it in Tryton (a res.user.warning record named as the warning), then retry"
    )

    def __init__(self, message: str, *, name: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.name = name


class TrytonConcurrencyError(StaleVersion):
    """The record changed in Tryton since it was read (``_timestamp`` check failed)."""

    default_hint = "re-read the record from Tryton and plan again; nothing was overwritten"

    def __init__(self, message: str, *, rpc_method: str | None = None, **kw: Any) -> None:
        kw.setdefault("status", 200)
        kw.setdefault("platform", PLATFORM)
        super().__init__(message, **kw)
        self.rpc_method = rpc_method

    def __str__(self) -> str:
        return _text("tryton", self.rpc_method, self.message, self.request_id, self.hint)


class TrytonBug(ContractViolation):
    """Tryton failed in a way no data fix cures (a bad field name, a server exception).

    ``detail`` is the first line Tryton sent (redacted); the traceback is not kept."""

    default_hint = "this is a bug or a Tryton change: report it with the method and request id"

    def __init__(
        self, message: str, *, rpc_method: str | None = None, request_id: str | None = None, **kw: Any
    ) -> None:
        kw.setdefault("platform", PLATFORM)
        super().__init__(message, **kw)
        self.rpc_method = rpc_method
        self.request_id = request_id

    @property
    def batch_too_large(self) -> bool:
        return _mentions_batch_limit(self.message)

    def __str__(self) -> str:
        return _text("tryton", self.rpc_method, self.message, self.request_id, self.hint)


class TrytonLoginError(TrytonBug):
    """Login needs another parameter (a second factor…) erpsync cannot give."""

    kind = "terminal"
    default_hint = "use a Tryton user that logs in with a password only (one integration user per company)"


class TrytonAuthFailed(Unauthorized):
    """Tryton refused the user and password (401 on login)."""

    default_hint = "check erp.user and erp.password of the tenant, and that the user is active in Tryton"


class TrytonForbidden(Forbidden):
    """403: the method is not callable over RPC (or not for this user)."""

    default_hint = "the method is not exposed over JSON-RPC; this is a bug in erpsync's Tryton calls"


class TrytonBusy(ServerError):
    """503: the database was busy and Tryton rolled the transaction back (nothing applied).

    ``batch_too_large``: on SQLite the 503 is deterministic for too many rows in one call
    (§7.4): split the batch instead of retrying it."""

    default_hint = "the Tryton database was busy; retried later (a batch this large should be split)"
    applied = False

    @property
    def batch_too_large(self) -> bool:
        return _mentions_batch_limit(self.message) or _mentions_batch_limit(str(self.body or ""))


def batch_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` says the call carried too many rows for the server (split and resend)."""
    return bool(getattr(exc, "batch_too_large", False))


def _mentions_batch_limit(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _BATCH_TOO_LARGE)


def _text(platform: str, method: str | None, message: str, request_id: str | None, hint: str) -> str:
    parts = [platform]
    if method:
        parts.append(method)
    parts.append(message)
    if request_id:
        parts.append(f"request_id={request_id}")
    text = ": ".join(parts)
    return f"{text} ({hint})" if hint else text


def _first_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and value:
        return _first_text(value[0])
    return "" if value is None else str(value)


def map_rpc_error(error: Any, *, rpc_method: str, request_id: str | None) -> Exception:
    """The exception for the ``error`` member of a JSON-RPC answer (never raises itself)."""
    common: dict[str, Any] = {"rpc_method": rpc_method, "request_id": request_id}
    if isinstance(error, list | tuple) and error:
        tag = error[0]
        args = error[1] if len(error) > 1 else None
        if tag == "UserError":
            parts = list(args) if isinstance(args, list | tuple) else [args]
            message = scrub(_first_text(parts[0] if parts else "")) or "Tryton refused the record"
            description = scrub(_first_text(parts[1])) if len(parts) > 1 and parts[1] else ""
            domain = parts[2] if len(parts) > 2 else None
            return TrytonUserError(message, description=description, domain=domain, **common)
        if tag == "UserWarning":
            parts = list(args) if isinstance(args, list | tuple) else [args]
            name = _first_text(parts[0]) if parts else ""
            message = scrub(_first_text(parts[1] if len(parts) > 1 else "")) or "Tryton warning"
            description = scrub(_first_text(parts[2])) if len(parts) > 2 and parts[2] else ""
            return TrytonWarning(message, name=name, description=description, **common)
        if tag == "ConcurrencyException":
            message = scrub(_first_text(args)) or "Records were modified in the meanwhile"
            return TrytonConcurrencyError(message, **common)
        if tag == "LoginException":
            parts = list(args) if isinstance(args, list | tuple) else [args]
            message = scrub(_first_text(parts[1] if len(parts) > 1 else parts[0] if parts else ""))
            return TrytonLoginError(f"login needs more than a password: {message}", **common)
        message = scrub(_first_text(tag))[:500] or "server error"
        return TrytonBug(f"Tryton failed: {message}", **common)
    return TrytonBug(f"Tryton failed: {scrub(_first_text(error))[:500] or 'unreadable error'}", **common)


def map_http_error(method: str, url: str, response: httpx.Response, *, login: bool = False) -> StatusError:
    """HTTP error statuses of Tryton's RPC endpoint → ``sync.errors``."""
    status = response.status_code
    body = redacted_body(parse_body(response))
    text = _body_text(body)
    kw: dict[str, Any] = {"status": status, "body": body, "platform": PLATFORM, "method": method, "url": url}
    if status == 401:
        if login:
            return TrytonAuthFailed("Tryton refused the user or password", **kw)
        return TrytonAuthFailed("the Tryton session was refused after a new login", **kw)
    if status == 403:
        return TrytonForbidden(text or "method not exposed over RPC", **kw)
    if status == 429:
        return RateLimited(
            "Tryton rate-limited the login (too many attempts)",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            hint="wait, then check the Tryton password: repeated failed logins are throttled",
            **kw,
        )
    if status == 503:
        return TrytonBusy(text or "database busy", **kw)
    if status >= 500:
        return ServerError(text or response.reason_phrase or "server error", **kw)
    from sync.clients.http import status_error_class

    return status_error_class(status)(text or response.reason_phrase or "error", **kw)


def _body_text(body: Any) -> str:
    """A short readable text from an error body (werkzeug sends HTML pages)."""
    if isinstance(body, dict):
        for key in ("message", "description", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])[:300]
        return ""
    if not isinstance(body, str):
        return ""
    import re

    paragraphs = re.findall(r"<p>(.*?)</p>", body, flags=re.S)
    text = " ".join(p.strip() for p in paragraphs) if paragraphs else re.sub(r"<[^>]+>", " ", body)
    return " ".join(text.split())[:300]
