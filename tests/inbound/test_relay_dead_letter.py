"""Issue #14 item 7 and the dead-letter half of item 6: the relay never starves, attempts are
capped, exhausted rows go ``dead`` and ``erpsync retry-failed --inbound`` replays them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from inbound_helpers import bind, event, tenant_settings
from sqlalchemy import insert, select, update
from typer.testing import CliRunner

from sync.cli import app
from sync.engine import inbound
from sync.engine.inbound import inbox_insert, process_inbox, relay
from sync.errors import SinkError, utcnow
from sync.sinks.sql import SqlSink
from sync.state.models import InboundEvent
from sync.state.store import StateStore


def _status(store: StateStore, tenant: str) -> dict[str, InboundEvent]:
    with store.session() as s:
        rows = s.execute(select(InboundEvent).where(InboundEvent.tenant == tenant)).scalars()  # type: ignore[arg-type]
        return {r.event_id: r for r in rows}


def test_5000_waiting_rows_never_starve_a_lost_pending_row(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    # 5,000 events for an employee the ERP never had, parked long ago ...
    long_ago = utcnow() - dt.timedelta(hours=2)
    rows = [
        {
            "tenant": tenant_id,
            "platform": "smartepi",
            "event_id": f"evt_withdrawal_created_ghost-{i}",
            "type": "withdrawal.created",
            "payload": event(f"ghost-{i}", employee="e-ghost"),
            "status": "waiting",
            "attempts": 1,
            "received_at": long_ago,
        }
        for i in range(5000)
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(InboundEvent.__table__), rows)  # type: ignore[attr-defined]
    # ... and then one event whose enqueue was lost (Redis down): it sits pending
    bind(store, tenant_id, "employees", "e-1", "EMP-001")
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    lost = inbox_insert(store, tenant_id, "smartepi", "evt_lost", "withdrawal.created", event("w-lost"))
    assert lost is not None
    later = utcnow() + dt.timedelta(minutes=2)

    # the relay is global: on a shared PostgreSQL other tenants' rows may take a few places
    relayed = dict(relay(store, 60, limit=5000, now=later))[tenant_id]
    assert relayed[0] == lost and len(relayed) >= 4900  # pending first, then waiting ones
    assert process_inbox(store, tenant_id, tenant_settings(), sql_sink, [lost]).done == 1
    assert [r["remote_id"] for r in sql_sink.rows("withdrawals")] == ["w-lost"]

    # a waiting row that was tried again backs off: the relay skips it until its time
    ghosts = relayed[1:101]
    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink, ghosts, now=later)
    assert summary.waiting == 100
    again = set(dict(relay(store, 60, limit=20_000, now=later))[tenant_id])
    assert again.isdisjoint(ghosts) and len(again) == 4900
    after_backoff = later + inbound.backoff(1) + dt.timedelta(seconds=1)
    assert set(ghosts) <= set(dict(relay(store, 60, limit=20_000, now=after_backoff))[tenant_id])
    row = _status(store, tenant_id)["evt_withdrawal_created_ghost-0"]
    assert row.attempts == 2 and row.next_attempt_at is not None
    assert row.next_attempt_at > later + inbound.backoff(0)  # exponential: the 2nd wait is longer


def test_waiting_rows_out_of_attempts_go_dead_and_retry_failed_replays_them(
    tmp_path: Path, tenant_id: str
) -> None:
    state_url = f"sqlite:///{tmp_path}/state.db"
    erp_url = f"sqlite:///{tmp_path}/erp.db"
    store = StateStore(state_url)
    config = {
        "state_url": state_url,
        "tenants": {
            tenant_id: {
                "erp": {"kind": "sql", "url": erp_url},
                "mappings": ["none.yaml"],
                "smartepi": {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk_dead_letter_key"},
                "sink": {"kind": "sql", "url": erp_url},
            }
        },
    }
    path = tmp_path / "erpsync.yaml"
    path.write_text(yaml.safe_dump(config))
    sink = SqlSink(erp_url, tenant=tenant_id, store=store)
    sink.ensure_tables()
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    bind(store, tenant_id, "employees", "e-1", "EMP-001")

    waiting = inbox_insert(
        store, tenant_id, "smartepi", "evt_w", "withdrawal.created", event("w-new", employee="e-9")
    )
    outage = inbox_insert(store, tenant_id, "smartepi", "evt_o", "withdrawal.created", event("w-outage"))
    bad = inbox_insert(
        store, tenant_id, "smartepi", "evt_b", "withdrawal.created", event("w-bad", quantity="1,000")
    )
    assert waiting and outage and bad
    with store.engine.begin() as conn:  # both have been tried all but once already
        conn.execute(
            update(InboundEvent.__table__)  # type: ignore[attr-defined]
            .where(InboundEvent.__table__.c.id == waiting)  # type: ignore[attr-defined]
            .values(attempts=inbound.WAITING_MAX_ATTEMPTS - 1)
        )
        conn.execute(
            update(InboundEvent.__table__)  # type: ignore[attr-defined]
            .where(InboundEvent.__table__.c.id == outage)  # type: ignore[attr-defined]
            .values(attempts=inbound.MAX_ATTEMPTS - 1)
        )

    class Down:
        def write_many(self, batches: Any) -> int:
            raise SinkError("ERP database unreachable")

    with pytest.raises(SinkError):  # re-raised for the task to retry
        process_inbox(store, tenant_id, tenant_settings(), Down(), [waiting, outage, bad])  # type: ignore[arg-type]
    rows = _status(store, tenant_id)
    assert {k: r.status for k, r in rows.items()} == {"evt_w": "dead", "evt_o": "dead", "evt_b": "failed"}
    assert "gave up waiting" in (rows["evt_w"].error or "") and "retry-failed" in (rows["evt_w"].error or "")
    assert "gave up after" in (rows["evt_o"].error or "") and "unreachable" in (rows["evt_o"].error or "")
    far = utcnow() + dt.timedelta(days=30)
    assert tenant_id not in dict(relay(store, 0, now=far))  # dead and failed rows are never relayed

    runner = CliRunner()
    status = runner.invoke(app, ["status", "--config", str(path), "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)["inbound"]
    assert shown["counts"] == {"dead": 2, "failed": 1}
    reasons = {h["event_id"]: h["reason"] for h in shown["held"]}
    assert (
        "w-bad" in reasons["evt_b"]
        and "quantity" in reasons["evt_b"]
        and "invalid_number" in reasons["evt_b"]
    )
    text = runner.invoke(app, ["status", "--config", str(path)])
    assert "inbound: dead 2, failed 1" in text.output and "retry-failed" in text.output

    # the employee reaches the platform; the ERP is back: replay
    bind(store, tenant_id, "employees", "e-9", "EMP-009")
    replay = runner.invoke(app, ["retry-failed", "--config", str(path), "--inbound"])
    assert replay.exit_code == 1, replay.output  # the malformed record is still malformed
    assert "replayed 3 record(s): 2 done, 1 failed again" in replay.output
    assert "w-bad" in replay.output
    landed = {r["remote_id"]: r for r in sink.rows("withdrawals")}
    assert set(landed) == {"w-new", "w-outage"} and landed["w-new"]["employee_key"] == "EMP-009"
    rows = _status(store, tenant_id)
    assert {k: r.status for k, r in rows.items()} == {"evt_w": "done", "evt_o": "done", "evt_b": "failed"}
    assert {q.erp_key for q in store.quarantined(tenant_id, stage="inbound")} == {
        "w-bad"
    }  # released the rest
