"""Issue #14 item 6: one malformed inbound record never stops the tenant's inbound pipeline.

Each bad value of the issue (a 300-character device id, ``1e15``, ``1e400``, ``"abc"``, a
lone ``\\udcff`` escape, ``"1,000"``) arrives next to good records, in the webhook inbox and
in pulls from both platforms: the good ones land, the bad ones are held as ``failed`` with a
reason naming the record, the field and the rule, and every stream's cursor moves.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from epi_env import API_KEY as EPI_KEY
from epi_env import EpiEnv
from hostile import (
    BAD_NUMBERS,
    LONG_TEXT,
    RAW_TOKENS,
    HostileTransport,
    Mutator,
    set_field,
    set_item_field,
)
from inbound_helpers import bind, event, tenant_settings
from kasa_env import API_KEY as KASA_KEY
from kasa_env import KasaEnv
from pydantic import SecretStr
from sqlalchemy import select

from sync.clients.smartepi.client import SmartEPIClient
from sync.clients.smartkasa.client import SmartKasaClient
from sync.clients.smartkasa.config import SmartKasaSettings
from sync.engine.inbound import inbox_insert, process_inbox, relay
from sync.engine.pull import PullSummary, pull_async
from sync.sinks.sql import SqlSink
from sync.state.models import InboundEvent
from sync.state.store import StateStore


def wire(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` as the webhook receiver parses it off the wire (raw ``1e400``, ``\\udcff``)."""
    text = json.dumps(payload)
    for marker, raw in RAW_TOKENS.items():
        text = text.replace(json.dumps(marker), raw)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def inbox(store: StateStore, tenant: str) -> dict[str, InboundEvent]:
    with store.session() as s:
        rows = s.execute(select(InboundEvent).where(InboundEvent.tenant == tenant)).scalars()  # type: ignore[arg-type]
        return {r.event_id: r for r in rows}


# record id → (the field that is bad, the rule it breaks); the long device id fits a TEXT column
EPI_BAD = {
    "w-1e15": ("quantity", "invalid_number"),
    "w-1e400": ("quantity", "invalid_number"),
    "w-abc": ("quantity", "invalid_number"),
    "w-thousands": ("quantity", "invalid_number"),
    "w-surrogate": ("deviceId", "invalid_text"),
}


def test_bad_inbox_rows_fail_alone_and_the_rest_land(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    bind(store, tenant_id, "employees", "e-1", "EMP-001")
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    events = [
        event("w-ok1"),
        event("w-long", deviceId=LONG_TEXT),
        event("w-surrogate", deviceId="@surrogate"),
    ]
    events += [event(f"w-{name}", quantity=value) for name, value in BAD_NUMBERS.items()]
    events.append(event("w-ok2", quantity="12,5"))  # a decimal comma is not ambiguous
    ids = []
    for ev in map(wire, events):
        row_id = inbox_insert(store, tenant_id, "smartepi", ev["id"], ev["type"], ev)
        assert row_id is not None
        ids.append(row_id)

    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink, ids)

    assert (summary.done, summary.failed, summary.waiting) == (3, 5, 0)
    rows = {r["remote_id"]: r for r in sql_sink.rows("withdrawals")}
    assert set(rows) == {"w-ok1", "w-ok2", "w-long"}
    assert rows["w-long"]["device_id"] == LONG_TEXT and rows["w-ok2"]["quantity"] == Decimal("12.5")
    status = {k.removeprefix("evt_withdrawal_created_"): v.status for k, v in inbox(store, tenant_id).items()}
    assert status == {"w-ok1": "done", "w-ok2": "done", "w-long": "done"} | {k: "failed" for k in EPI_BAD}
    held = {q.erp_key: q for q in store.quarantined(tenant_id, stage="inbound")}
    assert set(held) == set(EPI_BAD)
    for remote_id, (field, rule) in EPI_BAD.items():
        q = held[remote_id]
        assert (q.field, q.rule) == (field, rule)
        assert remote_id in q.message and field in q.message and rule in q.message
    assert "1,000" in held["w-thousands"].message and "thousands" in held["w-thousands"].message
    assert "inf" in held["w-1e400"].message and "out of range" in held["w-1e15"].message
    assert held["w-surrogate"].value == "\\udcff"  # stored escaped: the store holds only valid text
    reasons = {ev.event_id: ev.error for ev in store.inbox_problems(tenant_id)}
    assert all(reasons[f"evt_withdrawal_created_{k}"] for k in EPI_BAD)
    # failed rows are not retried by themselves (a bad record does not heal), nor relayed
    assert process_inbox(store, tenant_id, tenant_settings(), sql_sink).events == 0
    assert tenant_id not in dict(relay(store, 0))


# --- pulls -----------------------------------------------------------------------------


def epi_client(env: EpiEnv, targets: dict[str, Mutator], broken: tuple[str, ...] = ()) -> SmartEPIClient:
    return SmartEPIClient(
        "http://smartepi.test/v1",
        EPI_KEY,
        account="bad-records",
        transport=HostileTransport(env.app, targets, broken_paths=broken),
    )


def kasa_client(env: KasaEnv, targets: dict[str, Mutator], broken: tuple[str, ...] = ()) -> SmartKasaClient:
    settings = SmartKasaSettings(
        base_url="http://smartkasa.test",
        api_key=SecretStr(KASA_KEY),
        phone_number=SecretStr("380960000006"),
        password=SecretStr("123456789"),
        per_page=100,
    )
    transport = HostileTransport(env.app, targets, broken_paths=broken)
    return SmartKasaClient(settings, account="bad-records", transport=transport)


def pull_both(
    store: StateStore, tenant: str, sink: Any, epi: SmartEPIClient, kasa: SmartKasaClient
) -> PullSummary:
    settings = tenant_settings(kasa_url="http://127.0.0.1:9")

    async def go() -> PullSummary:
        try:
            return await pull_async(store, tenant, settings, sink, epi_client=epi, kasa_client=kasa)
        finally:
            await epi.aclose()
            await kasa.aclose()

    return asyncio.run(go())


def epi_targets(env: EpiEnv) -> tuple[list[str], dict[str, Mutator], dict[str, tuple[str, str]]]:
    """Withdrawals of the sandbox; six of them made bad on the wire (the long one still fits)."""
    ids = env.generate("withdrawals", 30, seed=3)
    bad = dict(zip(ids[:4], BAD_NUMBERS.values(), strict=False))
    targets: dict[str, Mutator] = {rid: set_field("quantity", value) for rid, value in bad.items()}
    targets[ids[4]] = set_field("deviceId", "@surrogate")
    targets[ids[5]] = set_field("deviceId", LONG_TEXT)
    expect = {rid: ("quantity", "invalid_number") for rid in ids[:4]} | {ids[4]: ("deviceId", "invalid_text")}
    return ids, targets, expect


def kasa_targets(env: KasaEnv) -> tuple[list[str], dict[str, Mutator], dict[str, tuple[str, str]]]:
    shifts = env.day(receipts_per_shift=7)
    receipts = sorted(env.t.tables["receipts"])
    bad = dict(zip(receipts[:4], BAD_NUMBERS.values(), strict=False))
    targets: dict[str, Mutator] = {rid: set_item_field("quantity", value) for rid, value in bad.items()}
    targets[receipts[4]] = set_field("cashier_name", "@surrogate")
    targets[receipts[5]] = set_field("cashier_name", LONG_TEXT)
    expect = {rid: ("items[0].quantity", "invalid_number") for rid in receipts[:4]}
    expect[receipts[4]] = ("cashier_name", "invalid_text")
    targets[shifts[0]] = set_field("cash_balance", "abc")  # a bad shift: its receipts still land
    expect[shifts[0]] = ("cash_balance", "invalid_number")
    return receipts, targets, expect


def test_pull_holds_bad_records_of_both_platforms_and_every_cursor_moves(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    epi_env, kasa_env = EpiEnv(), KasaEnv()
    epi_env.bind_all(store, tenant_id)
    withdrawals, epi_bad, epi_expect = epi_targets(epi_env)
    receipts, kasa_bad, kasa_expect = kasa_targets(kasa_env)

    summary = pull_both(
        store, tenant_id, sql_sink, epi_client(epi_env, epi_bad), kasa_client(kasa_env, kasa_bad)
    )

    assert summary.errors == []
    by_stream = {s.stream: s for s in summary.streams}
    assert by_stream["withdrawals"].failed == 5 and by_stream["shifts"].failed == 6
    landed = {r["remote_id"]: r for r in sql_sink.rows("withdrawals")}
    assert set(landed) == set(withdrawals) - set(epi_expect)
    assert landed[withdrawals[5]]["device_id"] == LONG_TEXT
    sales = {r["remote_id"]: r for r in sql_sink.rows("receipts")}
    assert set(sales) == set(receipts) - set(kasa_expect)  # SmartKasa sales proceed
    assert sales[receipts[5]]["cashier_name"] == LONG_TEXT
    assert not {i["receipt_id"] for i in sql_sink.rows("receipt_items")} & set(kasa_expect)
    assert len(sql_sink.rows("shifts")) == 1 and sql_sink.rows("z_reports") and sql_sink.rows("stock")
    for platform, stream in [
        ("smartepi", s) for s in ("withdrawals", "returns", "exchanges", "training_records")
    ] + [("smartkasa", s) for s in ("shifts", "z_reports", "stock")]:
        assert store.get_cursor(tenant_id, platform, stream) is not None, stream

    held = {(q.platform, q.erp_key): q for q in store.quarantined(tenant_id, stage="inbound")}
    expected = {("smartepi", k): v for k, v in epi_expect.items()} | {
        ("smartkasa", k): v for k, v in kasa_expect.items()
    }
    assert set(held) == set(expected)
    for key, (field, rule) in expected.items():
        assert (held[key].field, held[key].rule) == (field, rule)
        assert key[1] in held[key].message and field in held[key].message and rule in held[key].message
    problems = store.inbox_problems(tenant_id)
    assert len(problems) == 11 and {p.status for p in problems} == {"failed"}

    again = pull_both(
        store, tenant_id, sql_sink, epi_client(epi_env, epi_bad), kasa_client(kasa_env, kasa_bad)
    )
    assert again.errors == [] and again.written == 0
    assert len(store.inbox_problems(tenant_id)) == 11  # held once, not once per run


def test_a_failing_stream_stops_alone(store: StateStore, tenant_id: str, sql_sink: SqlSink) -> None:
    epi_env, kasa_env = EpiEnv(), KasaEnv()
    epi_env.bind_all(store, tenant_id)
    withdrawals = epi_env.generate("withdrawals", 12, seed=4)
    epi_env.generate("returns", 5, seed=5)
    kasa_env.day(receipts_per_shift=3)
    epi = epi_client(epi_env, {}, broken=("/returns",))

    summary = pull_both(store, tenant_id, sql_sink, epi, kasa_client(kasa_env, {}))

    failed = [s for s in summary.streams if s.error]
    assert [(s.platform, s.stream) for s in failed] == [("smartepi", "returns")]
    assert "data array" in (failed[0].error or "")
    assert store.get_cursor(tenant_id, "smartepi", "returns") is None  # resumes from where it was
    assert store.get_cursor(tenant_id, "smartepi", "withdrawals") is not None
    assert store.get_cursor(tenant_id, "smartkasa", "shifts") is not None
    assert {r["remote_id"] for r in sql_sink.rows("withdrawals")} == set(withdrawals)
    assert len(sql_sink.rows("receipts")) == 6 and sql_sink.rows("returns") == []
    assert summary.errors == [f"smartepi/returns: {failed[0].error}"]


def test_a_row_the_erp_refuses_is_bisected_out(store: StateStore, tenant_id: str) -> None:
    """An ERP-owned table whose column is narrower than a value: only that row fails."""
    from sqlalchemy import CheckConstraint, Column, Integer, MetaData, Table, Text, UniqueConstraint

    name = f"erp_wd_{tenant_id}"
    md = MetaData()
    table = Table(
        name,
        md,
        Column("id", Integer, primary_key=True),
        Column("tenant", Text, nullable=False),
        Column("platform", Text, nullable=False),
        Column("remote_id", Text, nullable=False),
        Column("content_hash", Text, nullable=False),
        Column("device_id", Text, CheckConstraint("length(device_id) <= 64")),
        Column("quantity", Text),
        UniqueConstraint("tenant", "platform", "remote_id"),
    )
    md.create_all(store.engine)
    try:
        sink = SqlSink(store.url, tenant=tenant_id, store=store, tables={"withdrawals": name})
        sink.ensure_tables()
        calls: list[int] = []
        write_many = sink.write_many

        def counting(batches: Any) -> int:
            calls.append(sum(len(rows) for rows in batches.values()))
            return write_many(batches)

        sink.write_many = counting  # type: ignore[method-assign]
        bind(store, tenant_id, "employees", "e-1", "EMP-001")
        bind(store, tenant_id, "products", "p-1", "SKU-9")
        evs = [event(f"w-{i}", deviceId=f"dev-{i}") for i in range(15)]
        evs.insert(9, event("w-wide", deviceId=LONG_TEXT))
        ids = [inbox_insert(store, tenant_id, "smartepi", e["id"], e["type"], e) for e in evs]

        summary = process_inbox(store, tenant_id, tenant_settings(), sink, [i for i in ids if i])

        assert (summary.done, summary.failed, summary.written) == (15, 1, 15)
        with store.engine.connect() as conn:
            got = {r.remote_id for r in conn.execute(select(table.c.remote_id))}
        assert got == {f"w-{i}" for i in range(15)}
        assert calls[0] == 16 and len(calls) <= 1 + 2 * 4  # bisected: about 2 log2(16) writes, not 16
        (held,) = store.inbox_problems(tenant_id)
        assert held.event_id == "evt_withdrawal_created_w-wide" and held.status == "failed"
        assert "w-wide" in (held.error or "") and "refused" in (held.error or "")
    finally:
        md.drop_all(store.engine)


def test_an_unreachable_sink_is_not_blamed_on_rows(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    """The ERP being down is not bisected: rows stay pending (with a backoff), none fails."""
    from sync.errors import SinkError

    bind(store, tenant_id, "employees", "e-1", "EMP-001")
    bind(store, tenant_id, "products", "p-1", "SKU-9")
    ids = [
        inbox_insert(store, tenant_id, "smartepi", f"evt-{i}", "withdrawal.created", event(f"w-{i}"))
        for i in range(4)
    ]
    calls: list[int] = []

    class Down:
        def write_many(self, batches: Any) -> int:
            calls.append(1)
            raise SinkError("connection refused")

    with pytest.raises(SinkError):  # re-raised for the task to retry
        process_inbox(store, tenant_id, tenant_settings(), Down(), [i for i in ids if i])  # type: ignore[arg-type]
    assert calls == [1]
    rows = inbox(store, tenant_id)
    assert {r.status for r in rows.values()} == {"pending"}
    assert all(r.next_attempt_at is not None and r.attempts == 1 for r in rows.values())


def test_bad_values_are_checked_per_field() -> None:
    """The parse rules themselves, and what each mapper reports."""
    from sync.core.normalize import parse_decimal
    from sync.engine.inbound import map_receipt, map_smartepi
    from sync.engine.inbound_fields import RecordError

    for bad in ("abc", "1,000", "1,234.5", "NaN", "Infinity", "1 000", float("nan"), float("inf")):
        with pytest.raises(ValueError):
            parse_decimal(bad)
    with pytest.raises(ValueError, match="out of range"):
        parse_decimal("1e400")
    assert parse_decimal("12,5") == parse_decimal("12.50") and parse_decimal(" 7 ") == 7
    assert parse_decimal("1e15") is not None  # wide enough for the core; the sink column is not:
    with pytest.raises(RecordError) as err:
        map_smartepi("withdrawals", {"id": "w", "quantity": 1e15}, {})
    assert (err.value.field, err.value.rule) == ("quantity", "invalid_number")
    with pytest.raises(RecordError) as err:
        map_smartepi("withdrawals", {"id": "x" * 201}, {})
    assert (err.value.field, err.value.rule) == ("id", "too_long")
    with pytest.raises(RecordError) as err:
        map_smartepi("withdrawals", {"id": "w", "extra": {"note": "\udcff"}}, {})
    assert (err.value.field, err.value.rule) == ("extra.note", "invalid_text")
    with pytest.raises(RecordError) as err:
        map_receipt({"id": "r", "state": 2**40}, {}, {})
    assert (err.value.field, err.value.rule) == ("state", "out_of_range")


def test_unparseable_webhook_payloads_are_held_not_crashed_on(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    ev = wire({"id": "evt_x", "type": "withdrawal.created", "data": {"id": "w-x", "quantity": "@1e400"}})
    row_id = inbox_insert(store, tenant_id, "smartepi", ev["id"], ev["type"], ev)  # PostgreSQL JSON too
    assert row_id is not None
    summary = process_inbox(store, tenant_id, tenant_settings(), sql_sink, [row_id])
    assert summary.failed == 1
    assert inbox(store, tenant_id)["evt_x"].status == "failed"


def test_sink_tables_of_version_1_get_text_columns(store: StateStore, tenant_id: str) -> None:
    """Tables created before free text became TEXT are widened when the sink opens."""
    from sqlalchemy import inspect, text

    prefix = f"{tenant_id}_"
    first = SqlSink(store.url, tenant=tenant_id, store=store, prefix=prefix)
    first.ensure_tables()
    table = f"{prefix}withdrawals"
    with store.engine.begin() as conn:  # back to what version 1 created
        if conn.dialect.name == "postgresql":
            conn.execute(text(f'ALTER TABLE "{table}" ALTER COLUMN device_id TYPE VARCHAR(255)'))
        conn.execute(text(f'UPDATE "{prefix}sink_schema" SET version = 1'))
    try:
        sink = SqlSink(store.url, tenant=tenant_id, store=store, prefix=prefix)
        sink.ensure_tables()
        kind = {c["name"]: c["type"] for c in inspect(store.engine).get_columns(table)}["device_id"]
        assert getattr(kind, "length", None) is None  # TEXT
        bind(store, tenant_id, "employees", "e-1", "EMP-001")
        bind(store, tenant_id, "products", "p-1", "SKU-9")
        ev = event("w-long", deviceId=LONG_TEXT)
        row_id = inbox_insert(store, tenant_id, "smartepi", ev["id"], ev["type"], ev)
        assert process_inbox(store, tenant_id, tenant_settings(), sink, [row_id or 0]).written == 1
        assert sink.rows("withdrawals")[0]["device_id"] == LONG_TEXT
    finally:
        with store.engine.begin() as conn:
            for name in inspect(conn).get_table_names():
                if name.startswith(prefix):
                    conn.execute(text(f'DROP TABLE "{name}"'))
