"""One typed exception hierarchy for erpsync.

Every error carries a ``kind`` that decides what the engine does with it (design §5,
after meltano/dlt):

- ``transient``: retry later (network, 429, 5xx); the run goes on;
- ``terminal``: stop this tenant's run and alert (bad config, auth, a contract breach);
- ``record``: quarantine this one row and go on (422, duplicate, not found);
- ``ambiguous``: a write may or may not have happened; resolve by lookup before resending.

Messages never contain secrets: client errors carry a redacted body only, and every
message ends with what to do next (``hint``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal

ErrorKind = Literal["transient", "terminal", "record", "ambiguous"]


class ErpsyncError(Exception):
    """Base of every error erpsync raises on purpose."""

    kind: ClassVar[ErrorKind] = "terminal"
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


# --- configuration, mapping, state -------------------------------------------------


class ConfigError(ErpsyncError):
    """The configuration file or environment is invalid; nothing was started."""

    default_hint = "fix the configuration and run `erpsync config check FILE`"
    # Each problem on its own ("key.path: what is wrong"), when the error lists several.
    problems: tuple[str, ...] = ()


class MappingError(ErpsyncError):
    """A mapping file is invalid (messages are ``file:line: path: problem``)."""

    default_hint = "fix the mapping file; `erpsync config check` validates mappings too"


class StateError(ErpsyncError):
    """The state store is unreachable or not migrated."""

    default_hint = "run `erpsync db upgrade` and check `state_url`"


class SourceError(ErpsyncError):
    """The ERP source could not be read."""

    kind = "transient"
    default_hint = "check the ERP source settings and that the ERP is reachable"


class SinkError(ErpsyncError):
    """The ERP sink could not be written."""

    kind = "transient"
    default_hint = "check the ERP sink settings; nothing was marked as delivered"


class PlanError(ErpsyncError):
    """A plan cannot be produced or applied as asked."""


class StalePlan(PlanError):
    """A saved plan no longer matches the ERP, the state store or the platforms."""

    default_hint = "run `erpsync plan` again and review the new plan"


class SafetyValveTripped(PlanError):
    """A plan would delete/deactivate too much, or was computed from an empty source."""

    default_hint = "check the ERP source; if the plan is intended, re-run with --force"


class LockLost(ErpsyncError):
    """Another worker holds (or took over) the tenant lease; our writes were fenced off."""

    kind = "transient"
    default_hint = "another reconcile is running for this tenant; it will be retried"


# --- platform clients -------------------------------------------------------------


class ClientError(ErpsyncError):
    """Any failure talking to a platform."""

    platform: str = ""

    def __init__(
        self,
        message: str,
        *,
        platform: str = "",
        method: str | None = None,
        url: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.platform = platform
        self.method = method
        self.url = url
        super().__init__(message, hint=hint)


class ContractViolation(ClientError):
    """We were about to send a request the contract forbids, or the platform answered
    something the contract rules out (e.g. a repeated pagination cursor)."""

    default_hint = "this is a bug or a platform change; report it with the request id"


class TransportError(ClientError):
    """No HTTP response: connect failure, timeout before sending, DNS…"""

    kind = "transient"
    default_hint = "check the platform's base_url in the configuration and that this machine can reach it"


class ConnectFailed(TransportError):
    pass


class RequestTimeout(TransportError):
    pass


class ResponseTooLarge(ClientError):
    """An answer bigger than the platform's ``max_response_bytes``: not read, not retried."""

    default_hint = (
        "raise max_response_bytes in the tenant's platform settings if such answers are expected,"
        " or ask for smaller pages"
    )


class AmbiguousWrite(ClientError):
    """A non-idempotent write (POST) may have been committed: timeout after sending,
    reset, 5xx, truncated body. Never resend blindly: look the record up first."""

    kind = "ambiguous"
    default_hint = "resolve by natural-key lookup before any resend"

    def __init__(
        self, message: str, *, cause: BaseException | None = None, request_id: str | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.cause = cause
        self.request_id = request_id


class StatusError(ClientError):
    """The platform answered with an error status."""

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        body: Any = None,
        code: str | None = None,
        field: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.request_id = request_id
        self.body = body  # already redacted
        self.code = code  # e.g. RFC 7807 type token, SmartKasa error code
        self.field = field  # offending field when the platform names one

    def __str__(self) -> str:
        parts = [f"{self.platform or 'platform'} {self.status}"]
        if self.method and self.url:
            parts.append(f"{self.method} {self.url}")
        parts.append(self.message)
        if self.field:
            parts.append(f"field={self.field}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        text = ": ".join(parts)
        return f"{text} ({self.hint})" if self.hint else text


class BadRequest(StatusError):
    default_hint = "the request was malformed; this is a bug or a contract change"


class AuthFailed(StatusError):
    """401/403 that a session refresh did not cure."""

    default_hint = "check the API key, its IP allow-list and the credentials"


class Unauthorized(AuthFailed):
    pass


class Forbidden(AuthFailed):
    pass


class NotFound(StatusError):
    kind = "record"
    default_hint = "the record is gone remotely; the next full reconcile recreates or unbinds it"


class MethodNotAllowed(StatusError):
    default_hint = "this resource is read-only or has no such operation"


class Conflict(StatusError):
    kind = "record"


class StaleVersion(Conflict):
    default_hint = "re-read the record, re-apply the change and retry"


class Duplicate(Conflict):
    default_hint = "a record with this natural key exists; adopt it by lookup"


class InUse(Conflict):
    default_hint = "other records still reference this one; re-point or remove them first"


class Unprocessable(StatusError):
    """422: validation or a bad reference; names the field when the platform does."""

    kind = "record"
    default_hint = "fix the ERP row (see field and message); it is retried when it changes"


class FieldRejected(Unprocessable):
    """400 to a write that names one of the record's fields (SmartEPI §2.5: "invalid field").

    The value, not the request, is wrong: quarantined like a 422, so the run goes on and the
    row is retried when it changes, instead of failing again on every run."""


class BatchRejected(Unprocessable):
    """A batch create failed validation without saying which item: split and retry."""


class RateLimited(StatusError):
    kind = "transient"
    default_hint = "the platform quota was exceeded; backing off"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(StatusError):
    kind = "transient"
    default_hint = "the platform failed; retried with backoff (report the request id if it persists)"


def utcnow() -> dt.datetime:
    """Timezone-aware now; one place so tests can reason about it."""
    return dt.datetime.now(dt.UTC)
