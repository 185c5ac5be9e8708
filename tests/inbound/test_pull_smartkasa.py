"""SmartKasa pulls: closed shifts → receipts with items and payments, Z-reports, stock snapshots."""

from __future__ import annotations

import asyncio
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
    store: StateStore, tenant: str, sink: Any, env: KasaEnv, shops: dict[str, int] | None = None
) -> PullSummary:
    settings = tenant_settings(kasa_url="http://127.0.0.1:9", shops=shops)

    async def go() -> PullSummary:
        client = env.client()
        try:
            return await pull_async(store, tenant, settings, sink, kasa_client=client, streams=KASA_STREAMS)
        finally:
            await client.aclose()

    return asyncio.run(go())


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
