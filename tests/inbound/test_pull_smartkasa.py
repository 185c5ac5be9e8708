"""SmartKasa pulls: closed shifts → receipts with items and payments, Z-reports, stock snapshots."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from inbound_helpers import tenant_settings
from kasa_env import KasaEnv

from sync.engine.pull import PullSummary, pull_async
from sync.sandbox.smartkasa import generators
from sync.sinks.sql import SqlSink
from sync.state.store import StateStore

KASA_STREAMS = ("shifts", "z_reports", "stock")


def run(
    store: StateStore,
    tenant: str,
    sink: Any,
    env: KasaEnv,
    shops: dict[str, int] | None = None,
    *,
    now: dt.datetime | None = None,
    late_days: float | None = None,
    per_page: int = 100,
) -> PullSummary:
    settings = tenant_settings(kasa_url="http://127.0.0.1:9", shops=shops)
    if late_days is not None:
        assert settings.smartkasa is not None
        kasa = settings.smartkasa.model_copy(update={"late_receipts_days": late_days})
        settings = settings.model_copy(update={"smartkasa": kasa})

    async def go() -> PullSummary:
        client = env.client(per_page=per_page)
        try:
            return await pull_async(
                store, tenant, settings, sink, kasa_client=client, streams=KASA_STREAMS, now=now
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def _receipts_of(sink: SqlSink, shift_id: str) -> Counter[str]:
    return Counter(r["remote_id"] for r in sink.rows("receipts") if r["shift_id"] == shift_id)


def test_closed_shifts_bring_receipts_items_payments_and_z_reports(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    env = KasaEnv()
    env.bind_products(store, tenant_id)
    closed = env.day(receipts_per_shift=7)
    open_shift = env.open_shift(receipts=3)
    shops = {"KYIV-1": int(env.shops[0])}
    summary = run(store, tenant_id, sql_sink, env, shops=shops)

    receipts = sql_sink.rows("receipts")
    assert {r["shift_id"] for r in receipts} == set(closed)  # the open shift waits until it closes
    assert len(receipts) == 14
    items, payments = sql_sink.rows("receipt_items"), sql_sink.rows("payments")
    receipt_ids = {r["remote_id"] for r in receipts}
    assert items and {i["receipt_id"] for i in items} == receipt_ids
    assert payments and {p["receipt_id"] for p in payments} == receipt_ids
    assert all(i["product_key"] and i["product_key"].startswith("ERP-") for i in items)
    for receipt in receipts:  # item amounts add up to the receipt total (decimals kept exact)
        total = sum((i["amount"] for i in items if i["receipt_id"] == receipt["remote_id"]), Decimal(0))
        assert total == receipt["total_amount"]
    assert {r["shop_key"] for r in receipts} == {"KYIV-1", None}
    assert {s["remote_id"] for s in sql_sink.rows("shifts")} == set(closed)
    assert {z["shift_id"] for z in sql_sink.rows("z_reports")} == set(closed)
    stock = sql_sink.rows("stock")  # stock of the configured shops only
    assert len(stock) == len(env.products) and {c["shop_key"] for c in stock} == {"KYIV-1"}
    assert store.get_cursor(tenant_id, "smartkasa", "shifts") is not None

    again = run(store, tenant_id, sql_sink, env, shops=shops)
    assert again.written == 0

    env.close(open_shift)
    third = run(store, tenant_id, sql_sink, env, shops=shops)
    assert {r["shift_id"] for r in sql_sink.rows("receipts")} == {*closed, open_shift}
    counts = Counter(r["remote_id"] for r in sql_sink.rows("receipts"))
    assert set(counts.values()) == {1} and len(counts) == 17
    assert third.written >= 3 + 1 + 1  # 3 receipts (+ items, payments), the shift, its z-report
    assert summary.requests["smartkasa"] > 0


def test_stock_snapshot_writes_only_changed_cards(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    env = KasaEnv()
    first = run(store, tenant_id, sql_sink, env)
    stock = next(s for s in first.streams if s.stream == "stock")
    assert stock.written == stock.fetched == len(env.products) * len(env.shops)
    changed = generators.stock_changes(env.store, env.t, env.rng, count=3)
    second = run(store, tenant_id, sql_sink, env)
    stock = next(s for s in second.streams if s.stream == "stock")
    really_changed = [c for c in changed if c["count"] != Decimal(50)]
    assert stock.written == len(really_changed)
    rows = {r["remote_id"]: r for r in sql_sink.rows("stock")}
    for card in changed:
        assert rows[str(card["id"])]["count"] == card["count"]


def test_shift_killed_midway_is_pulled_again_whole(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    env = KasaEnv()
    env.day(receipts_per_shift=30)

    class DieOnShift:
        def write_many(self, batches: Any) -> int:
            if "shifts" in batches:
                raise RuntimeError("killed before the shift commit")
            return sql_sink.write_many(batches)

        def close(self) -> None:
            pass

    failed = run(store, tenant_id, DieOnShift(), env)
    shifts = next(s for s in failed.streams if s.stream == "shifts")
    assert shifts.error is not None and "killed before the shift commit" in shifts.error
    assert all(s.error is None for s in failed.streams if s.stream != "shifts")  # the others went on
    assert store.get_cursor(tenant_id, "smartkasa", "shifts") is None
    assert sql_sink.rows("shifts") == []
    run(store, tenant_id, sql_sink, env)
    counts = Counter(r["remote_id"] for r in sql_sink.rows("receipts"))
    assert len(counts) == 60 and set(counts.values()) == {1}


def test_the_z_report_window_ends_at_or_after_now() -> None:
    """The upper bound goes to the next millisecond, never below ``now``: a z-report stamped
    in the same millisecond as the pull's start (CI saw one) lands in this pull."""
    import datetime as dt

    from sync.engine.pull import _kasa_time

    now = dt.datetime(2026, 1, 1, 12, 0, 0, 123700, tzinfo=dt.UTC)
    assert _kasa_time(now, end=True) == "2026-01-01T12:00:00.124+00:00"
    assert _kasa_time(now) == "2026-01-01T12:00:00.123+00:00"  # a lower bound keeps its floor
    assert _kasa_time(now.replace(microsecond=123000), end=True) == "2026-01-01T12:00:00.123+00:00"
    assert _kasa_time(now.replace(microsecond=999500), end=True) == "2026-01-01T12:00:01.000+00:00"


def test_a_shift_that_will_never_close_is_imported_with_its_receipts(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    """§6.1: ``state`` 2 keeps ``closed_at`` null for ever (the example opened 8 days earlier);
    so does a till that never closes its shift. Both used to leave their receipts behind."""
    env = KasaEnv()
    env.bind_products(store, tenant_id)
    expired = env.open_shift(receipts=4)
    generators.expire_shift(env.store, env.t, expired)
    forgotten = env.open_shift(receipts=3)
    env.t.tables["shifts"][forgotten]["opened_at"] = time.time() - 25 * 3600  # a fiscal day is 24 h
    live = env.open_shift(receipts=2)

    first = run(store, tenant_id, sql_sink, env)
    assert first.errors == []
    assert len(_receipts_of(sql_sink, expired)) == 4
    assert len(_receipts_of(sql_sink, forgotten)) == 3
    assert not _receipts_of(sql_sink, live)  # an open shift still waits until it closes
    shifts = {s["remote_id"]: s for s in sql_sink.rows("shifts")}
    assert shifts[expired]["state"] == 2 and shifts[expired]["closed_at"] is None
    assert live not in shifts
    assert run(store, tenant_id, sql_sink, env).written == 0  # imported once

    env.close(live)
    run(store, tenant_id, sql_sink, env)
    assert len(_receipts_of(sql_sink, live)) == 2
    counts = Counter(r["remote_id"] for r in sql_sink.rows("receipts"))
    assert set(counts.values()) == {1} and len(counts) == 9


def test_late_offline_receipts_reach_shifts_already_imported(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    """§6.6: offline receipts reach a shift after it closed. The shifts that ended in the last
    ``late_receipts_days`` are read again every ``late_receipts_check_minutes`` (60)."""
    env = KasaEnv()
    env.bind_products(store, tenant_id)
    recent, older = env.day(receipts_per_shift=3)
    env.t.tables["shifts"][recent]["closed_at"] = time.time() - 2 * 3600  # past the 10-minute overlap
    env.t.tables["shifts"][older]["closed_at"] = time.time() - 4 * 86400  # beyond the 3-day window
    env.close(env.open_shift(receipts=1))  # the newest close: the cursor sits at it
    run(store, tenant_id, sql_sink, env)
    assert len(_receipts_of(sql_sink, recent)) == len(_receipts_of(sql_sink, older)) == 3

    for shift in (recent, older):
        generators.sell(env.store, env.t, env.rng, shift, 2, offline=True)
    soon = run(store, tenant_id, sql_sink, env)
    assert soon.errors == [] and len(_receipts_of(sql_sink, recent)) == 3  # checked under an hour ago

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)
    checked = run(store, tenant_id, sql_sink, env, now=later)
    assert checked.errors == []
    landed = _receipts_of(sql_sink, recent)
    assert len(landed) == 5 and set(landed.values()) == {1}  # the two late ones, no duplicates
    late = [r for r in sql_sink.rows("receipts") if r["shift_id"] == recent]
    assert sum(1 for r in late if json.loads(r["payload"]).get("offline_id")) == 2
    assert len(_receipts_of(sql_sink, older)) == 3  # four days old: out of the window
    assert store.get_cursor(tenant_id, "smartkasa", "shifts:late_check") is not None

    # a window of 0 days turns the re-reading off
    generators.sell(env.store, env.t, env.rng, recent, 1, offline=True)
    off = run(store, tenant_id, sql_sink, env, now=later + dt.timedelta(hours=2), late_days=0)
    assert off.errors == [] and len(_receipts_of(sql_sink, recent)) == 5


def test_a_server_that_ignores_the_shift_filter_is_read_once_not_once_per_shift(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    """§6.2 does not say ``shift_id`` filters receipts. A server that ignores it answered every
    shift's query with the whole list: shifts × pages. One pass now serves every shift."""
    env = KasaEnv(receipts_per_page=5, receipt_filters="ignored")
    env.bind_products(store, tenant_id)
    shifts = env.day(receipts_per_shift=5) + env.day(receipts_per_shift=5)
    live = env.open_shift(receipts=2)  # not ended: its receipts are on the list but not taken

    summary = run(store, tenant_id, sql_sink, env, per_page=5)
    assert summary.errors == []
    receipts = Counter(r["remote_id"] for r in sql_sink.rows("receipts"))
    assert len(receipts) == 20 and set(receipts.values()) == {1}
    assert {r["shift_id"] for r in sql_sink.rows("receipts")} == set(shifts)
    assert {s["remote_id"] for s in sql_sink.rows("shifts")} == set(shifts)
    pages = env.requests.count("GET /api/v1/pos/receipts")
    assert pages == 5  # 22 receipts, 5 a page: one pass (was 4 shifts x 5 pages)

    env.close(live)
    env.requests.clear()
    again = run(store, tenant_id, sql_sink, env, per_page=5)
    assert again.errors == []
    assert len(_receipts_of(sql_sink, live)) == 2
    assert len(Counter(r["remote_id"] for r in sql_sink.rows("receipts"))) == 22
