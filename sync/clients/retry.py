"""Retry policy as pure functions (design §5: "retry rules are plain functions tested with tables").

The request loop (``sync.clients.http``) asks ``decide`` after every failed attempt and
does exactly what it answers; nothing here sleeps or does I/O, so the whole policy is
table-tested without a clock.

Rules:

- A read, PUT, PATCH or DELETE (``idempotent=True``) retries on 429, 5xx and any
  transport failure.
- A POST (``idempotent=False``) is never resent after anything may have reached the
  server: a 5xx or a failure after sending (read timeout, reset, truncated body) is
  *ambiguous* and the caller raises ``AmbiguousWrite``. Two outcomes are safe to retry
  even for a POST: a connect failure (nothing was sent) and a 429 (the gateway rejected
  the request before the application saw it).
- Delays use full-jitter exponential backoff (``uniform(0, min(cap, base·2^(n-1)))``);
  a ``Retry-After`` (seconds or HTTP date) replaces the jittered delay, capped at
  ``max_retry_after``.
- The budget is both ``max_attempts`` (attempts in total, the first included) and
  ``max_total_delay`` (sum of all sleeps); a retry whose delay would overrun the budget
  is not made.
- A 429 *without* ``Retry-After`` gets a longer schedule: SmartEPI's burst throttle sends
  none and says "use your own exponential backoff" (smartepi.md §2.9), and its limits (rate,
  window) are undocumented, so a per-minute window must be outlasted. The delays grow from
  the same ``base_delay`` (the first retries are as quick as for any other failure), but up
  to ``throttle_max_delay`` each, for up to ``throttle_max_attempts`` attempts and
  ``throttle_max_total_delay`` seconds (about 2 minutes by default; each value is the larger
  of the throttle one and the general one). ``max_attempts=1`` still turns every retry off.
- 501 (Not Implemented) and 505 are permanent server answers and never retried.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

Failure = Literal["connect", "sent"]
"""A transport failure: ``connect`` = nothing reached the server; ``sent`` = it may have."""

_PERMANENT_5XX = frozenset({501, 505})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    max_total_delay: float = 60.0
    base_delay: float = 0.25
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    # 429 without Retry-After (see the module doc): 0.25, 0.5, 1, … 30 s ceilings, ≤ 120 s in all
    throttle_max_attempts: int = 10
    throttle_max_delay: float = 30.0
    throttle_max_total_delay: float = 120.0


@dataclass(frozen=True, slots=True)
class Decision:
    retry: bool
    delay: float = 0.0
    ambiguous: bool = False  # a non-idempotent write may have been applied: resolve by lookup
    reason: str = ""


NO_RETRY_POLICY = RetryPolicy(max_attempts=1, max_total_delay=0.0)


def classify_exception(exc: BaseException) -> Failure:
    """Whether a transport exception happened before anything was sent.

    Connect errors and pool timeouts never put a byte on the wire; every other
    transport error (read/write timeout, reset, protocol error, truncated body) may
    have delivered the request.
    """
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect"
    return "sent"


def http_date(value: str | None) -> dt.datetime | None:
    """An HTTP-date header (``Date``, ``Retry-After``) as aware UTC; None if absent or unreadable."""
    if not value or not value.strip():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def parse_retry_after(
    value: str | None, *, now: dt.datetime | None = None, cap: float = 60.0
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), capped.

    Returns ``None`` for a missing or unparsable value; a date in the past gives ``0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        when = http_date(text)
        if when is None:
            return None
        current = now or dt.datetime.now(dt.UTC)
        seconds = (when - current).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


def backoff_delay(
    attempt: int, policy: RetryPolicy, rng: Callable[[], float], *, max_delay: float | None = None
) -> float:
    """Full-jitter exponential backoff after failed attempt number ``attempt`` (1-based)."""
    cap = policy.max_delay if max_delay is None else max_delay
    ceiling = min(cap, policy.base_delay * (1 << min(max(attempt - 1, 0), 62)))
    return rng() * ceiling


def is_retryable_status(status: int) -> bool:
    return status == 429 or (500 <= status <= 599 and status not in _PERMANENT_5XX)


def decide(
    *,
    attempt: int,
    idempotent: bool,
    policy: RetryPolicy,
    spent: float = 0.0,
    status: int | None = None,
    failure: Failure | None = None,
    retry_after: float | None = None,
    rng: Callable[[], float] = lambda: 1.0,
) -> Decision:
    """What to do after failed attempt ``attempt`` (1-based) of one request.

    Exactly one of ``status`` (an HTTP error status) or ``failure`` (a transport
    failure) describes the outcome; ``spent`` is the delay already slept for this
    request; ``retry_after`` is the parsed header, if any.
    """
    if (status is None) == (failure is None):
        raise ValueError("give exactly one of status or failure")
    if status is not None:
        if not is_retryable_status(status):
            return Decision(False, reason=f"status {status} is not retryable")
        ambiguous = status != 429 and not idempotent
        if ambiguous:
            return Decision(False, ambiguous=True, reason=f"POST answered {status}: outcome unknown")
    else:
        ambiguous = failure == "sent" and not idempotent
        if ambiguous:
            return Decision(False, ambiguous=True, reason="POST failed after sending: outcome unknown")
    max_attempts, max_delay, budget = policy.max_attempts, policy.max_delay, policy.max_total_delay
    if status == 429 and retry_after is None and max_attempts > 1:  # an undocumented throttle
        max_attempts = max(max_attempts, policy.throttle_max_attempts)
        max_delay = max(max_delay, policy.throttle_max_delay)
        budget = max(budget, policy.throttle_max_total_delay)
    if attempt >= max_attempts:
        return Decision(False, reason=f"{attempt} attempts failed")
    if retry_after is not None:
        delay = min(retry_after, policy.max_retry_after)
    else:
        delay = backoff_delay(attempt, policy, rng, max_delay=max_delay)
    if spent + delay > budget:
        return Decision(False, reason=f"retry budget of {budget:g}s exhausted")
    return Decision(True, delay=delay, reason="retry")
