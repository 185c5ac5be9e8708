"""SmartKasa error bodies → the typed hierarchy of ``sync.errors``.

The platform answers errors in several shapes (contract §4), none of them indexed:

- A  ``{"errors": {"<field>": [{"error": "<code>"}]}}`` (``base`` = not a field);
- B  ``{"errors": {"products": [{"error": "invalid", "messages": "title: Не може бути пустим"}]}}``;
- B' ``{"errors": {"categories": [{"error": "invalid"}]}}``;
- C  ``{"errors": "<string>"}`` (type coercion; names the attribute as ``:total_amount``);
- D  ``{"message": "Unauthorized"}``;
- anything else (HTML, empty, lists…): classified by status alone, never a crash.

Choices where the contract is silent: an unknown id answered 404, or 422 with
``{"errors": {"id": [{"error": "invalid"}]}}``, is :class:`NotFound` (contract §8);
a 422 with code ``taken`` (the sandbox's duplicate-number rule) is :class:`Duplicate`;
any 400, 413 or 422 on a batch create is :class:`BatchRejected` so the caller splits the
chunk. Bodies are redacted (``sync.redact.redact``) before they are stored on the error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sync import errors as E
from sync.redact import redact, scrub

PLATFORM = "smartkasa"
_BATCH_KEYS = ("products", "categories", "receipts")
_COERCION_FIELD = re.compile(r"for :([A-Za-z_][A-Za-z0-9_]*)")
_MESSAGES_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*:\s*(.*)$", re.DOTALL)


SHOP_ID_HINT = (
    "this shop id is not a shop of the SmartKasa account: fix the shop configuration, not the ERP "
    "row. List the account's shops with `erpsync inspect smartkasa shops` and set "
    "smartkasa.shops (ERP shop code: shop id) in the tenant's config, then apply again"
)


@dataclass(frozen=True, slots=True)
class ParsedError:
    """What an error body says, independent of the status code."""

    message: str
    field: str | None = None
    code: str | None = None
    batch: bool = False  # shape B/B': a batch item failed, no index given


def _first_entry(entries: Any) -> tuple[str | None, str | None]:
    """(code, messages) of the first ``[{"error": ..., "messages": ...}]`` entry, tolerantly."""
    if isinstance(entries, list) and entries:
        entries = entries[0]
    if isinstance(entries, dict):
        code = entries.get("error")
        msg = entries.get("messages") or entries.get("message")
        if isinstance(msg, list):
            msg = "; ".join(str(m) for m in msg)
        return (str(code) if code is not None else None, str(msg) if msg is not None else None)
    if isinstance(entries, str):
        return entries, None
    return None, None


def parse_error_body(body: Any) -> ParsedError:
    """Read any SmartKasa error shape; unknown shapes give a generic message."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, str):  # shape C
            m = _COERCION_FIELD.search(errors)
            return ParsedError(scrub(errors)[:500], field=m.group(1) if m else None, code="invalid_type")
        if isinstance(errors, dict) and errors:
            key = next(iter(errors))
            code, messages = _first_entry(errors[key])
            if key in _BATCH_KEYS:  # shapes B and B'
                field = None
                text = f"{key}: {code or 'invalid'}"
                if messages:
                    m = _MESSAGES_FIELD.match(messages)
                    field = m.group(1) if m else None
                    text = f"{key}: {scrub(messages)}"
                return ParsedError(text, field=field, code=code, batch=True)
            parts = []
            for name, entries in errors.items():
                c, msg = _first_entry(entries)
                parts.append(f"{name}: {c or 'invalid'}" + (f" ({scrub(msg)})" if msg else ""))
            field = None if key == "base" else str(key)
            return ParsedError("; ".join(parts), field=field, code=code)
        message = body.get("message") or body.get("error")
        if isinstance(message, str):  # shape D (and RFC 7807-ish "error")
            return ParsedError(scrub(message)[:500])
    if isinstance(body, str) and body.strip():
        return ParsedError(scrub(body.strip())[:200])
    return ParsedError("no error details in the response body")


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None  # an HTTP-date: the shared loop's retry policy decides the wait


def map_status_error(
    status: int,
    body: Any,
    *,
    method: str | None = None,
    url: str | None = None,
    headers: Any = None,
    request_id: str | None = None,
    batch_create: bool = False,
) -> E.StatusError:
    """One error status + body → the matching ``sync.errors`` class (see module docstring)."""
    parsed = parse_error_body(body)
    kw: dict[str, Any] = {
        "status": status,
        "request_id": request_id,
        "body": redact(body),
        "code": parsed.code,
        "field": parsed.field,
        "platform": PLATFORM,
        "method": method,
        "url": scrub(url) if url else url,
    }
    message = parsed.message
    # A 400 to a batch create is split like 413/422: the contract declares 400 on almost every
    # operation (§4 shape E) and states no batch size limit (§5.4), so a server may answer 400
    # to a chunk that is too large, or to one bad item; halves tell which.
    if batch_create and status in (400, 413, 422):
        return E.BatchRejected(message, **kw)
    if status == 422:
        if parsed.field == "id" and parsed.code == "invalid":
            return E.NotFound(message, **kw)
        if parsed.code == "taken":
            return E.Duplicate(message, **kw)
        if parsed.batch:
            return E.BatchRejected(message, **kw)
        if parsed.field == "shop_id":  # a shop id the account does not have: configuration, not data
            return E.Unprocessable(message, hint=SHOP_ID_HINT, **kw)
        return E.Unprocessable(message, **kw)
    if status == 404:
        return E.NotFound(message, **kw)
    if status == 401:
        return E.Unauthorized(message, **kw)
    if status == 403:
        return E.Forbidden(message, **kw)
    if status == 405:
        return E.MethodNotAllowed(message, **kw)
    if status == 409:
        return E.Duplicate(message, **kw)
    if status == 429:
        return E.RateLimited(message, retry_after=_retry_after(headers), **kw)
    if status >= 500:
        return E.ServerError(message, **kw)
    return E.BadRequest(message, **kw)


class BatchChunkRejected(E.BatchRejected):
    """A batch create chunk failed validation; ``chunk`` holds its inputs (to split),
    ``done`` the ids already created for the inputs before it, in input order."""

    def __init__(
        self, source: E.BatchRejected, *, chunk: Sequence[Any], offset: int, done: list[str]
    ) -> None:
        super().__init__(
            source.message,
            status=source.status,
            request_id=source.request_id,
            body=source.body,
            code=source.code,
            field=source.field,
            platform=source.platform,
            method=source.method,
            url=source.url,
        )
        self.chunk = list(chunk)
        self.offset = offset
        self.done = done


class BatchAmbiguous(E.AmbiguousWrite):
    """A batch create may have been (partly) committed. ``chunk`` holds the inputs,
    ``ids`` the confirmed id per input (``None`` = unknown: look it up by natural key
    before any resend), ``done`` the ids created by the earlier chunks."""

    def __init__(
        self,
        message: str,
        *,
        chunk: Sequence[Any],
        offset: int,
        done: list[str],
        ids: list[str | None] | None = None,
        unmatched_ids: list[str] | None = None,
        cause: BaseException | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, cause=cause, platform=PLATFORM, method=method, url=url)
        self.chunk = list(chunk)
        self.offset = offset
        self.done = done
        self.ids: list[str | None] = ids if ids is not None else [None] * len(self.chunk)
        self.unmatched_ids = unmatched_ids or []
