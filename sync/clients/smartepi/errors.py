"""SmartEPI error bodies → ``sync.errors`` (smartepi.md §2.2, §2.5).

Two layers answer errors: the application with RFC 7807 problem+json
(``type: urn:smartepi:error:<token>``, ``title``, ``status``, ``detail``, an
``X-Request-Id`` header) and the API gateway with plain ``{"message": …}`` or AWS's
``{"Message": …}`` (no request id). We branch on the status code first and on the
``type`` token second, never on gateway text (revision B says that text may change).

409 splits by token: ``conflict`` → ``StaleVersion``, ``duplicate_*`` → ``Duplicate``,
``resource_in_use`` → ``InUse``. A 409 to a POST is ``Duplicate`` whatever its token
(``resource_in_use`` aside): a create sends no If-Match or ``_version``, so it cannot be a
stale version, and the tokens for a duplicate identification/email are undocumented (a server
may well answer ``conflict``). Tokens for duplicate identification/email are not
documented, so an unknown 409 token falls back to words in ``detail`` ("duplicate",
"already exists" / "in use", "referenced" / "version", "stale"), then to plain
``Conflict``. A 400 to a write that names a record field is ``FieldRejected`` (a
422-like record error, quarantined); any other 400 stays ``BadRequest``. The offending
field of a 422 (or 400) comes from a problem extension
(``field``, ``invalid-params``/``errors`` lists) or the tail of ``detail``
(``Unknown or cross-tenant reference: costCenterId``) or its head (``name: required``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from sync.clients.http import parse_body, redacted_body, status_error_class
from sync.clients.retry import parse_retry_after
from sync.errors import (
    Conflict,
    Duplicate,
    FieldRejected,
    InUse,
    RateLimited,
    StaleVersion,
    StatusError,
)

PLATFORM = "smartepi"
TYPE_PREFIX = "urn:smartepi:error:"
_FIELD_TAIL = re.compile(r":\s*([A-Za-z_][A-Za-z0-9_.\[\]]*)\s*\.?\s*$")
_FIELD_HEAD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*):\s")


@dataclass(frozen=True, slots=True)
class ParsedError:
    layer: str  # "application" (problem+json), "gateway" ({"message"}/{"Message"}) or "unknown"
    token: str | None
    message: str
    field: str | None


def _field_from(body: dict[str, Any], detail: str) -> str | None:
    if isinstance(body.get("field"), str):
        return str(body["field"])
    for key in ("invalid-params", "invalidParams", "errors"):
        items = body.get(key)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            for name_key in ("name", "field", "pointer"):
                if isinstance(items[0].get(name_key), str):
                    return str(items[0][name_key]).lstrip("/")
    # "Unknown or cross-tenant reference: costCenterId" names it last; "name: required" first.
    match = _FIELD_TAIL.search(detail) if "reference" in detail.lower() else None
    match = match or _FIELD_HEAD.match(detail) or _FIELD_TAIL.search(detail)
    return match.group(1) if match else None


def parse_error(body: Any) -> ParsedError:
    """Classify one error body; never raises, whatever the shape."""
    if isinstance(body, dict):
        if any(k in body for k in ("type", "title", "detail")):
            type_ = body.get("type")
            token = None
            if isinstance(type_, str) and type_:
                token = (
                    type_[len(TYPE_PREFIX) :] if type_.startswith(TYPE_PREFIX) else type_.rsplit(":", 1)[-1]
                )
            detail = str(body.get("detail") or "")
            title = str(body.get("title") or "")
            message = f"{title}: {detail}" if title and detail else (detail or title or "error")
            return ParsedError("application", token, message, _field_from(body, detail))
        for key in ("message", "Message"):
            if isinstance(body.get(key), str):
                return ParsedError("gateway", None, body[key], None)
    if isinstance(body, str) and body.strip():
        return ParsedError("unknown", None, body.strip()[:200], None)
    return ParsedError("unknown", None, "", None)


def _conflict_class(token: str | None, message: str) -> type[Conflict]:
    if token == "conflict":
        return StaleVersion
    if token and token.startswith("duplicate"):
        return Duplicate
    if token == "resource_in_use":
        return InUse
    text = message.lower()
    if "duplicate" in text or "already exists" in text or "already in use by" in text:
        return Duplicate
    if "in use" in text or "referenced" in text or "dependent" in text:
        return InUse
    if "version" in text or "stale" in text or "if-match" in text or "etag" in text:
        return StaleVersion
    return Conflict


# 400 fields that are the request's, not the record's: a bad cursor or limit, a missing
# ``_version`` (smartepi.md §2.5) are erpsync's own bug, never a row to quarantine.
_REQUEST_FIELDS = frozenset({"_version", "cursor", "limit", "if-match", "body"})


def _names_a_record_field(method: str, field: str | None) -> bool:
    """A 400 to a create/update that names a field of the record (``name: required``)."""
    if method.upper() not in ("POST", "PUT", "PATCH") or not field:
        return False
    return field.lower() not in _REQUEST_FIELDS


def map_error(method: str, url: str, response: httpx.Response) -> StatusError:
    """The typed error for one SmartEPI error response (body redacted)."""
    status = response.status_code
    body = redacted_body(parse_body(response))
    parsed = parse_error(body)
    cls: type[StatusError] = status_error_class(status)
    if status == 409:
        cls = _conflict_class(parsed.token, parsed.message)
        if method.upper() == "POST" and cls is not InUse:
            cls = Duplicate
    elif status == 400 and _names_a_record_field(method, parsed.field):
        cls = FieldRejected
    kw: dict[str, Any] = {}
    if cls is RateLimited:
        kw["retry_after"] = parse_retry_after(response.headers.get("retry-after"))
    return cls(
        parsed.message or response.reason_phrase or "error",
        status=status,
        request_id=response.headers.get("x-request-id"),
        body=body,
        code=parsed.token,
        field=parsed.field if status in (400, 409, 422) else None,
        platform=PLATFORM,
        method=method,
        url=url,
        **kw,
    )
