"""The pure alert evaluator: each condition at its threshold, and the transitions."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sync.alerts.conditions import Firing, Known, RunFacts, TenantFacts, evaluate, transitions
from sync.alerts.settings import AlertThresholds

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
T = AlertThresholds(rejected_rows=5, stale_intervals=3, webhook_failures=4, backlog_minutes=10)


def facts(**kw: object) -> TenantFacts:
    base = TenantFacts(
        tenant="acme",
        now=NOW,
        watch_since=NOW - dt.timedelta(seconds=10),
        reconcile_interval_seconds=300,
        last_reconcile_ok=NOW - dt.timedelta(seconds=60),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def keys(f: TenantFacts, t: AlertThresholds = T) -> list[str]:
    return [x.key for x in evaluate(f, t)]


def test_a_healthy_tenant_fires_nothing() -> None:
    ok = {"reconcile": RunFacts(7, "reconcile", "ok"), "pull": RunFacts(8, "pull", "partial")}
    assert keys(facts(last_runs=ok, quarantined=5, webhook_failures=3)) == []


def test_failed_run_per_kind_with_its_run_and_reason() -> None:
    runs = {
        "reconcile": RunFacts(7, "reconcile", "failed", "SmartEPI answered 503"),
        "pull": RunFacts(8, "pull", "ok"),
        "sync_keys": RunFacts(9, "sync_keys", "failed", None),
    }
    fired = evaluate(facts(last_runs=runs), T)
    assert [f.key for f in fired] == ["failed_run:reconcile", "failed_run:sync_keys"]
    assert fired[0].run_id == 7 and "run 7 failed" in fired[0].title
    assert "SmartEPI answered 503" in fired[0].detail and "erpsync runs show 7" in fired[0].detail
    assert keys(facts(last_runs=runs), T.model_copy(update={"failed_run": False})) == []


def test_rejected_rows_above_the_threshold_only() -> None:
    assert keys(facts(quarantined=5)) == []
    assert keys(facts(quarantined=6)) == ["rejected_rows"]


def test_stale_reconcile_after_n_intervals() -> None:
    limit = 3 * 300
    assert keys(facts(last_reconcile_ok=NOW - dt.timedelta(seconds=limit))) == []
    assert keys(facts(last_reconcile_ok=NOW - dt.timedelta(seconds=limit + 1))) == ["stale_reconcile"]
    # never a successful reconcile: counted from when alerts started watching
    assert keys(facts(last_reconcile_ok=None, watch_since=NOW - dt.timedelta(seconds=limit))) == []
    never = evaluate(facts(last_reconcile_ok=None, watch_since=NOW - dt.timedelta(hours=2)), T)
    assert [f.key for f in never] == ["stale_reconcile"] and "none since" in never[0].detail


def test_webhook_failures_in_a_row_at_the_threshold() -> None:
    assert keys(facts(webhook_failures=3)) == []
    assert keys(facts(webhook_failures=4)) == ["webhook_failures"]


def test_inbox_backlog_older_than_n_minutes() -> None:
    assert keys(facts(oldest_pending=NOW - dt.timedelta(minutes=10))) == []
    assert keys(facts(oldest_pending=NOW - dt.timedelta(minutes=10, seconds=1))) == ["inbox_backlog"]


def test_transitions_open_resolve_refire() -> None:
    firing = [Firing("a", "A", ""), Firing("b", "B", ""), Firing("c", "C", "")]
    known = [
        Known(1, "b", "firing", True),  # still firing: nothing to do
        Known(2, "c", "resolved", True),  # fires again before its resolved message went
        Known(3, "d", "firing", True),  # cleared
        Known(4, "e", "resolved", True),  # cleared, resolved message pending: not resolved twice
    ]
    todo = transitions(firing, known)
    assert [f.key for f in todo.open] == ["a"]
    assert todo.resolve == [3] and todo.refire == [2]
