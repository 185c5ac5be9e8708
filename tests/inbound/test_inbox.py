"""Inbox processing: ERP-key mapping, waiting on unbound references, quarantine, the relay."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from inbound_helpers import bind, event, tenant_settings

from sync.engine.inbound import inbox_insert, process_inbox, relay
from sync.errors import SinkError, utcnow
from sync.sinks.sql import SqlSink
from sync.state.store import StateStore


def add(store: StateStore, tenant: str, ev: dict) -> int:
    row_id = inbox_insert(store, tenant, "smartepi", ev["id"], ev["type"], ev)
    assert row_id is not None
    return row_id


def statuses(store: StateStore, tenant: str) -> dict[str, str]:
    from sqlalchemy import select

    from sync.state.models import InboundEvent

    with store.session() as s:
        rows = s.execute(select(InboundEvent).where(InboundEvent.tenant == tenant)).scalars()
        return {r.event_id: r.status for r in rows}


def test_events_map_to_erp_keys(store: StateStore, tenant_id: str, sql_sink: SqlSink) -> None:
    bind(store, tenant_id, "employees", "e-1", "EMP-001")
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    bind(store, tenant_id, "cost_centers", "cc-1", "CC-A")
    ids = [add(store, tenant_id, event("w-1", costCenterId="cc-1", sectorId="sec-unmapped"))]
    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink, ids)
    assert (summary.done, summary.written, summary.waiting) == (1, 1, 0)
    (row,) = sql_sink.rows("withdrawals")
    assert (row["employee_key"], row["product_key"], row["cost_center_key"]) == ("EMP-001", "SKU-9", "CC-A")
    # sectors are not synced at all (no bindings): the raw id is kept, nothing waits
    assert (row["sector_key"], row["sector_id"], row["status"]) == (None, "sec-unmapped", "SUCCESS")
    assert statuses(store, tenant_id) == {"evt_withdrawal_created_w-1": "done"}
    assert (
        process_inbox(store, tenant_id, tenant_settings(), sql_sink, ids).events == 0
    )  # not processed again


def test_unbound_reference_waits_in_quarantine_until_bound(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    bind(store, tenant_id, "cost_centers", "cc-1", "CC-A")
    ids = [
        add(store, tenant_id, event("w-1", employee="e-new")),
        add(store, tenant_id, event("w-2", costCenterId="cc-x")),
    ]
    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink, ids)
    assert (summary.done, summary.waiting) == (0, 2)
    assert sql_sink.rows("withdrawals") == []
    quarantined = {q.erp_key: q for q in store.quarantined(tenant_id, stage="inbound")}
    assert quarantined["w-1"].field == "employeeId" and quarantined["w-1"].value == "e-new"
    assert "e-new" in quarantined["w-1"].message and quarantined["w-1"].rule == "unbound_reference"
    assert quarantined["w-2"].field == "employeeId"  # e-1 is not bound either
    assert "costCenterId 'cc-x'" in quarantined["w-2"].message

    bind(store, tenant_id, "employees", "e-new", "EMP-NEW")
    bind(store, tenant_id, "employees", "e-1", "EMP-001")
    bind(store, tenant_id, "cost_centers", "cc-x", "CC-X")
    assert tenant_id not in dict(relay(store, 0))  # waiting rows back off before their next try
    pending = dict(relay(store, 0, now=utcnow() + dt.timedelta(seconds=31)))
    assert sorted(pending[tenant_id]) == sorted(ids)
    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink, pending[tenant_id])
    assert (summary.done, summary.released) == (2, 2)
    assert store.quarantined(tenant_id, stage="inbound") == []
    assert {r["remote_id"]: r["employee_key"] for r in sql_sink.rows("withdrawals")} == {
        "w-1": "EMP-NEW",
        "w-2": "EMP-001",
    }


def test_duplicate_event_ids_are_refused_by_the_inbox(store: StateStore, tenant_id: str) -> None:
    assert inbox_insert(store, tenant_id, "smartepi", "evt_1", "withdrawal.created", event("w-1")) is not None
    assert inbox_insert(store, tenant_id, "smartepi", "evt_1", "withdrawal.created", event("w-1")) is None


def test_same_record_in_two_events_lands_once(store: StateStore, tenant_id: str, sql_sink: SqlSink) -> None:
    bind(store, tenant_id, "employees", "e-1", "EMP-001")
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    first = event("w-1")
    second = {**event("w-1"), "id": "evt_other_delivery_id"}
    ids = [add(store, tenant_id, first), add(store, tenant_id, second)]
    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink, ids)
    assert summary.done == 2 and summary.written == 1
    assert len(sql_sink.rows("withdrawals")) == 1


def test_test_events_and_bad_payloads(store: StateStore, tenant_id: str, sql_sink: SqlSink) -> None:
    add(
        store,
        tenant_id,
        {"id": "evt_test", "type": "webhook.test", "createdAt": 1, "data": {"message": "test"}},
    )
    add(store, tenant_id, {"id": "evt_future", "type": "device.created", "data": {"id": "d-1"}})
    add(store, tenant_id, {"id": "evt_bad", "type": "withdrawal.created", "data": {"no": "id"}})
    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink)
    assert (summary.ignored, summary.failed, summary.done) == (2, 1, 0)
    assert statuses(store, tenant_id) == {"evt_test": "done", "evt_future": "done", "evt_bad": "failed"}
    assert tenant_id not in dict(relay(store, 0))


def test_sink_failure_leaves_events_pending_for_the_relay(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    bind(store, tenant_id, "employees", "e-1", "EMP-001")
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    ids = [add(store, tenant_id, event("w-1"))]

    class Broken:
        def write_many(self, batches: object) -> int:
            raise SinkError("ERP database is down")

    with pytest.raises(SinkError):
        process_inbox(store, tenant_id, tenant_settings(), Broken(), ids)  # type: ignore[arg-type]
    assert statuses(store, tenant_id) == {"evt_withdrawal_created_w-1": "pending"}
    assert dict(relay(store, 3600)).get(tenant_id) is None  # too recent for the relay
    time.sleep(0.01)
    assert dict(relay(store, 0)).get(tenant_id) is None  # backing off after the failure
    assert dict(relay(store, 0, now=utcnow() + dt.timedelta(seconds=31)))[tenant_id] == ids
    assert process_inbox(store, tenant_id, tenant_settings(), sql_sink, ids).done == 1
