"""Retry policy tables: what happens after each failed attempt, per method and outcome."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from sync.clients.retry import (
    RetryPolicy,
    backoff_delay,
    classify_exception,
    decide,
    parse_retry_after,
)

POLICY = RetryPolicy(
    max_attempts=4, max_total_delay=10.0, base_delay=0.5, max_delay=4.0, max_retry_after=30.0
)

# (idempotent, status, failure) -> (retry, ambiguous)
TABLE = [
    # reads, PUT, PATCH, DELETE
    (True, 429, None, True, False),
    (True, 500, None, True, False),
    (True, 502, None, True, False),
    (True, 503, None, True, False),
    (True, 504, None, True, False),
    (True, 501, None, False, False),
    (True, 400, None, False, False),
    (True, 401, None, False, False),
    (True, 404, None, False, False),
    (True, 409, None, False, False),
    (True, 422, None, False, False),
    (True, None, "connect", True, False),
    (True, None, "sent", True, False),
    # POST
    (False, 429, None, True, False),
    (False, 500, None, False, True),
    (False, 503, None, False, True),
    (False, 501, None, False, False),
    (False, 409, None, False, False),
    (False, 422, None, False, False),
    (False, None, "connect", True, False),
    (False, None, "sent", False, True),
]


@pytest.mark.parametrize(("idempotent", "status", "failure", "retry", "ambiguous"), TABLE)
def test_decision_table(idempotent, status, failure, retry, ambiguous):
    d = decide(attempt=1, idempotent=idempotent, policy=POLICY, status=status, failure=failure)
    assert (d.retry, d.ambiguous) == (retry, ambiguous)
    if retry:
        assert 0 <= d.delay <= POLICY.base_delay


def test_exactly_one_outcome_is_required():
    with pytest.raises(ValueError):
        decide(attempt=1, idempotent=True, policy=POLICY)
    with pytest.raises(ValueError):
        decide(attempt=1, idempotent=True, policy=POLICY, status=500, failure="sent")


@pytest.mark.parametrize(
    ("attempt", "spent", "retry_after", "retry", "delay"),
    [
        (1, 0.0, None, True, 0.5),  # rng=1 -> the ceiling
        (2, 0.0, None, True, 1.0),
        (3, 0.0, None, True, 2.0),
        (4, 0.0, None, False, 0.0),  # max_attempts reached
        (3, 8.5, None, False, 0.0),  # 8.5 + 2.0 > 10: budget exhausted
        (1, 0.0, 7.0, True, 7.0),  # Retry-After replaces backoff
        (1, 5.0, 7.0, False, 0.0),  # ...but still within the budget
    ],
)
def test_budget_and_retry_after(attempt, spent, retry_after, retry, delay):
    d = decide(
        attempt=attempt,
        idempotent=True,
        policy=POLICY,
        spent=spent,
        status=503,
        retry_after=retry_after,
        rng=lambda: 1.0,
    )
    assert d.retry is retry
    assert d.delay == pytest.approx(delay)


def test_retry_after_capped_by_policy():
    d = decide(
        attempt=1,
        idempotent=True,
        policy=RetryPolicy(max_retry_after=3, max_total_delay=100),
        status=429,
        retry_after=50,
    )
    assert d.retry and d.delay == 3


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 30])
def test_full_jitter_stays_within_exponential_ceiling(attempt):
    ceiling = min(POLICY.max_delay, POLICY.base_delay * 2 ** (attempt - 1))
    assert backoff_delay(attempt, POLICY, lambda: 0.0) == 0.0
    assert backoff_delay(attempt, POLICY, lambda: 0.999) == pytest.approx(0.999 * ceiling)


NOW = dt.datetime(2025, 1, 31, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("5", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("3600", 60.0),  # capped
        ("Fri, 31 Jan 2025 12:00:10 GMT", 10.0),
        ("Fri, 31 Jan 2025 11:59:00 GMT", 0.0),  # in the past
        ("Fri, 31 Jan 2025 13:00:00 GMT", 60.0),  # capped
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=NOW, cap=60.0) == expected


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), "connect"),
        (httpx.ConnectTimeout("slow"), "connect"),
        (httpx.PoolTimeout("pool"), "connect"),
        (httpx.ReadTimeout("read"), "sent"),
        (httpx.WriteTimeout("write"), "sent"),
        (httpx.ReadError("reset"), "sent"),
        (httpx.WriteError("broken pipe"), "sent"),
        (httpx.RemoteProtocolError("truncated"), "sent"),
    ],
)
def test_classify_exception(exc, kind):
    assert classify_exception(exc) == kind


def test_a_429_without_retry_after_gets_the_longer_throttle_schedule():
    """Audit finding 4: SmartEPI's burst throttle sends no Retry-After (contract §2.9); the
    default policy outlasts a per-minute window instead of giving up after about 4 s."""
    policy = RetryPolicy()
    spent, attempt, delays = 0.0, 0, []
    while True:
        attempt += 1
        d = decide(attempt=attempt, idempotent=True, policy=policy, spent=spent, status=429)
        if not d.retry:
            break
        delays.append(d.delay)
        spent += d.delay
    assert delays[:4] == [0.25, 0.5, 1.0, 2.0]  # as quick as before at first
    assert attempt == policy.throttle_max_attempts and 60 <= spent <= policy.throttle_max_total_delay
    assert max(delays) == policy.throttle_max_delay
    # other failures keep the general schedule, and a Retry-After keeps its own rule
    assert not decide(attempt=5, idempotent=True, policy=policy, status=503).retry
    assert not decide(attempt=5, idempotent=True, policy=policy, status=429, retry_after=1.0).retry
    assert decide(attempt=5, idempotent=True, policy=policy, status=429).retry
    # max_attempts=1 still means "never retry"
    assert not decide(attempt=1, idempotent=True, policy=RetryPolicy(max_attempts=1), status=429).retry
