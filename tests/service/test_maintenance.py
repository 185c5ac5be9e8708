"""Issue #14 items 9 and 12: what a dead worker leaves behind, and history retention.

- a run whose worker died (kill -9) must not stay ``running`` forever;
- a key whose sync task died must not have its events absorbed by the throttle for an hour;
- history (inbox, markers, runs, run items) is purged past its retention, never what
  exactly-once needs (unapplied or failed inbox rows, running runs).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import service_config
from sqlalchemy import func, select, update

from sync import celery_app, tasks
from sync.errors import utcnow
from sync.settings import Settings
from sync.state.models import InboundEvent, InboundRecord, Run, RunItem
from sync.state.store import StateStore

pytestmark = pytest.mark.services
DAY = dt.timedelta(days=1)


@pytest.fixture
def service_settings(
    redis_url: str, state_url: str, namespace: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """This process configured as a worker would be: settings, namespace, a fresh runtime."""
    data = service_config(redis_url, state_url, ["acme"])
    data["retention"] = {"keep_runs": 10, "runs_days": 1}
    settings = Settings(**data)
    monkeypatch.setenv("ERPSYNC_NAMESPACE", namespace)
    celery_app.configure(settings)
    tasks.configure_runtime()
    yield settings
    tasks.configure_runtime()


def _set(store: StateStore, model: Any, ident: int, **values: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(model).where(model.id == ident).values(**values))


def test_runs_of_a_dead_worker_are_marked_failed_by_maintenance(
    service_settings: Settings, tenant_id: str
) -> None:
    store = tasks.runtime().store
    limit = service_settings.celery.task_time_limit
    dead = store.start_run(tenant_id, "reconcile")  # its worker was killed: never finished
    dead_event = store.start_run(tenant_id, "sync_keys")
    live = store.start_run(tenant_id, "reconcile")  # started just now: may still be going
    cli = store.start_run(tenant_id, "apply")  # the CLI has no time limit: left alone
    long_ago = utcnow() - dt.timedelta(seconds=limit + 120)
    for run_id in (dead, dead_event, cli):
        _set(store, Run, run_id, started_at=long_ago)
    out = tasks.maintenance()
    assert out["stale_runs"] >= 2
    status = {r.id: r for r in store.runs(tenant_id, limit=10)}
    assert status[dead].status == status[dead_event].status == "failed"
    assert "worker stopped" in (status[dead].error or "") and status[dead].finished_at is not None
    assert status[live].status == "running" and status[cli].status == "running"


def test_a_dead_sync_tasks_throttle_mark_lapses_with_the_task_not_in_an_hour(
    service_settings: Settings,
) -> None:
    rt = tasks.runtime()
    entity, key = "employees", f"K{uuid.uuid4().hex[:6]}"
    first = rt.throttle.admit("acme", entity, [key])
    task_id = first.primary_task_id
    assert first.send and task_id is not None
    rt.throttle.begin("acme", entity, [key], task_id)  # the sync started ... and its worker died
    assert not rt.throttle.admit("acme", entity, [key]).send  # absorbed while the task may live
    limit = service_settings.celery.task_time_limit
    grace = tasks.throttle_ttl(service_settings.celery) - limit + 1  # 6 s here
    deadline = time.monotonic() + limit + grace
    while time.monotonic() < deadline:
        if rt.throttle.admit("acme", entity, [key]).send:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"events for {key} still absorbed {limit + grace:g} s after its sync task started")
    assert time.monotonic() - (deadline - limit - grace) >= limit  # not before the task could have ended


def _count(store: StateStore, model: Any, **where: Any) -> int:
    stmt = select(func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def test_retention_purges_old_history_and_keeps_what_exactly_once_needs(
    service_settings: Settings, tenant_id: str
) -> None:
    store = tasks.runtime().store
    now = utcnow()
    # Inbox rows: only an applied one past events_days (30) may go.
    ids = {}
    for name, status in [
        ("old-done", "done"),
        ("new-done", "done"),
        ("old-pending", "pending"),
        ("old-waiting", "waiting"),
        ("old-failed", "failed"),
        ("old-dead", "dead"),
    ]:
        assert store.inbox_add(tenant_id, "smartepi", name, "t", {"n": name})
        with store.engine.connect() as conn:
            ids[name] = conn.execute(
                select(InboundEvent.id).where(InboundEvent.tenant == tenant_id, InboundEvent.event_id == name)
            ).scalar_one()
        old = name.startswith("old")
        _set(
            store,
            InboundEvent,
            ids[name],
            status=status,
            received_at=now - (400 if old else 1) * DAY,
            processed_at=(now - (40 if old else 1) * DAY) if status == "done" else None,
        )
    # Markers: older than inbound_records_days (180) go.
    with store.session() as s:
        store.mark_inbound(s, tenant_id, "smartkasa", "receipts", [("r-old", "h"), ("r-new", "h")])
        s.commit()
    with store.engine.begin() as conn:
        conn.execute(
            update(InboundRecord)
            .where(InboundRecord.tenant == tenant_id, InboundRecord.remote_id == "r-old")
            .values(delivered_at=now - 200 * DAY)
        )
    # Runs: one still running (the oldest id), 15 finished 2 days ago (keep the newest 10),
    # the newest of them finished 100 days ago as far as its items go.
    running = store.start_run(tenant_id, "reconcile")
    _set(store, Run, running, started_at=now - dt.timedelta(seconds=30))
    runs = []
    for _ in range(15):
        run_id = store.start_run(tenant_id, "reconcile")
        store.finish_run(run_id, status="ok", counts={}, requests={})
        _set(store, Run, run_id, finished_at=now - 2 * DAY)
        runs.append(run_id)
    store.add_run_items(
        [
            RunItem(
                run_id=r,
                platform="smartepi",
                entity="employees",
                erp_key=f"E{r}",
                action="create",
                outcome="ok",
            )
            for r in runs
        ]
    )
    _set(store, Run, runs[-1], finished_at=now - 100 * DAY)  # newest run, but its items are old

    out = tasks.maintenance()

    left = {e.event_id for e in store.inbox_pending(tenant_id, limit=100)}
    with store.engine.connect() as conn:
        events = set(
            conn.execute(select(InboundEvent.event_id).where(InboundEvent.tenant == tenant_id)).scalars()
        )
        markers = set(
            conn.execute(select(InboundRecord.remote_id).where(InboundRecord.tenant == tenant_id)).scalars()
        )
        kept_runs = set(conn.execute(select(Run.id).where(Run.tenant == tenant_id)).scalars())
        items = set(conn.execute(select(RunItem.run_id).where(RunItem.run_id.in_(runs))).scalars())
    assert events == {"new-done", "old-pending", "old-waiting", "old-failed", "old-dead"}
    assert {"old-pending", "old-waiting"} <= left
    assert markers == {"r-new"}
    assert kept_runs == set(runs[-10:]) | {running}  # the newest 10 and the running one
    assert items == set(runs[-10:-1])  # the newest run's items were past run_items_days
    assert out["inbound_events"] >= 1 and out["inbound_records"] >= 1 and out["runs"] >= 5
    assert _count(store, Run, tenant=tenant_id, status="running") == 1


def test_settings_refuse_markers_that_die_before_events(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from sync.settings import RetentionSettings

    with pytest.raises(ValidationError, match="inbound_records_days must be >= events_days"):
        RetentionSettings(events_days=60, inbound_records_days=30)
    with pytest.raises(ValidationError):
        RetentionSettings(events_days=1)  # shorter than a sender's retry schedule
