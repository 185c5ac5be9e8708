"""Task retry rules as plain functions (no worker needed)."""

from __future__ import annotations

import pytest

from sync import errors
from sync.tasks import busy_delay, busy_limit, is_retryable, retry_delay


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (errors.ServerError("boom", status=503), True),
        (errors.RateLimited("slow down", status=429), True),
        (errors.AmbiguousWrite("timeout after send"), True),
        (errors.LockLost("taken over"), True),
        (errors.SourceError("erp down"), True),
        (errors.ConfigError("bad"), False),
        (errors.Unprocessable("bad row", status=422), False),
        (errors.AuthFailed("no", status=401), False),
        (ValueError("bug"), False),
    ],
)
def test_only_transient_and_ambiguous_errors_are_retried(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


def test_backoff_grows_is_jittered_and_capped() -> None:
    assert [retry_delay(n, rng=lambda: 1.0) for n in range(5)] == [2, 4, 8, 16, 32]
    assert [retry_delay(n, rng=lambda: 0.0) for n in range(3)] == [1, 2, 4]  # never less than half
    assert retry_delay(30, rng=lambda: 1.0) == 300


def test_busy_polls_outlast_the_longest_run_and_stay_finite() -> None:
    assert busy_delay(10, 60, rng=lambda: 1.0) == 30  # at most every half lease
    limit = busy_limit(1800, 60)
    waited = sum(busy_delay(n, 60, rng=lambda: 0.0) for n in range(limit))
    assert waited >= 1800 + 60 and limit < 200
