"""ERP sinks: idempotent upserts by remote id, versions, own and existing tables, JSONL exactly-once."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from inbound_helpers import tenant_settings
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, UniqueConstraint, create_engine, select

from sync.errors import ConfigError
from sync.sinks import open_sink
from sync.sinks.base import InboundRow
from sync.sinks.jsonl import JsonlSink
from sync.sinks.sql import SCHEMA_VERSION, SqlSink
from sync.state.store import StateStore


def row(remote_id: str, quantity: str = "2", **fields: object) -> InboundRow:
    cols = {"employee_key": "E1", "employee_id": "e-1", "quantity": Decimal(quantity), **fields}
    return InboundRow.make("smartepi", remote_id, cols, {"id": remote_id, "quantity": quantity})


def test_sql_upsert_is_idempotent_and_keeps_decimals(
    sql_sink: SqlSink, store: StateStore, tenant_id: str
) -> None:
    assert sql_sink.write("withdrawals", [row("w-1", "1.125"), row("w-2")]) == 2
    assert sql_sink.write("withdrawals", [row("w-1", "1.125"), row("w-2")]) == 0  # replay: markers skip
    rows = sql_sink.rows("withdrawals")
    assert [r["remote_id"] for r in rows] == ["w-1", "w-2"]
    assert rows[0]["quantity"] == Decimal("1.125")
    assert rows[0]["employee_key"] == "E1"
    assert json.loads(rows[0]["payload"]) == {"id": "w-1", "quantity": "1.125"}
    assert store.inbound_seen(tenant_id, "smartepi", "withdrawals", ["w-1", "w-2", "w-3"]) == {"w-1", "w-2"}


def test_sql_changed_content_updates_in_place(sql_sink: SqlSink) -> None:
    sql_sink.write("withdrawals", [row("w-1", "1")])
    assert sql_sink.write("withdrawals", [row("w-1", "3")]) == 1
    rows = sql_sink.rows("withdrawals")
    assert len(rows) == 1 and rows[0]["quantity"] == Decimal(3)


def test_sql_upsert_without_markers_still_lands_once(
    sql_sink: SqlSink, store: StateStore, tenant_id: str
) -> None:
    """A crash after the ERP commit but before the markers: the replay upserts the same row."""
    sql_sink.write("withdrawals", [row("w-1")])
    store.purge_tenant(tenant_id)  # markers gone, ERP rows still there
    assert sql_sink.write("withdrawals", [row("w-1"), row("w-1")]) == 1  # in-batch duplicate too
    assert len(sql_sink.rows("withdrawals")) == 1


def test_sql_write_many_spans_streams_and_tenants_are_separate(store: StateStore, tenant_id: str) -> None:
    a = SqlSink(store.url, tenant=tenant_id, store=store)
    b = SqlSink(store.url, tenant=tenant_id + "b", store=store)
    receipt = InboundRow.make(
        "smartkasa", "r-1", {"total_amount": Decimal("10.5"), "state": 2}, {"id": "r-1"}
    )
    item = InboundRow.make(
        "smartkasa", "i-1", {"receipt_id": "r-1", "amount": Decimal("10.5")}, {"id": "i-1"}
    )
    assert a.write_many({"receipts": [receipt], "receipt_items": [item]}) == 2
    assert b.write_many({"receipts": [receipt]}) == 1
    assert [r["remote_id"] for r in a.rows("receipt_items")] == ["i-1"]
    assert len(a.rows("receipts")) == 1 and len(b.rows("receipts")) == 1


def test_ensure_tables_is_versioned_and_idempotent(store: StateStore, tenant_id: str) -> None:
    sink = SqlSink(store.url, tenant=tenant_id, store=store, prefix="vt_")
    assert sink.ensure_tables() == SCHEMA_VERSION
    assert SqlSink(store.url, tenant=tenant_id, store=store, prefix="vt_").ensure_tables() == SCHEMA_VERSION
    with sink.engine.connect() as conn:
        version = conn.execute(select(sink._version.c.version)).scalar_one()
    assert version == SCHEMA_VERSION


def test_existing_tables_named_in_config(tmp_path: Path, store: StateStore, tenant_id: str) -> None:
    url = f"sqlite:///{tmp_path}/erp.db"
    md = MetaData()
    Table(
        "erp_ppe_issues",
        md,
        Column("pk", Integer, primary_key=True),
        Column("tenant", String(64)),
        Column("platform", String(16)),
        Column("remote_id", String(255)),
        Column("employee_key", String(64)),
        Column("content_hash", String(64)),
        Column("note", Text),  # an ERP column we do not know: left alone
        UniqueConstraint("tenant", "platform", "remote_id"),
    )
    md.create_all(create_engine(url))
    sink = SqlSink(url, tenant=tenant_id, store=store, tables={"withdrawals": "erp_ppe_issues"})
    sink.ensure_tables()
    assert sink.write("withdrawals", [row("w-1"), row("w-2")]) == 2
    assert sink.write("withdrawals", [row("w-1", "5")]) == 1
    got = sink.rows("withdrawals")
    assert [(r["remote_id"], r["employee_key"], r["note"]) for r in got] == [
        ("w-1", "E1", None),
        ("w-2", "E1", None),
    ]


def test_existing_table_without_unique_key_is_a_config_error(
    tmp_path: Path, store: StateStore, tenant_id: str
) -> None:
    url = f"sqlite:///{tmp_path}/erp.db"
    md = MetaData()
    Table(
        "loose",
        md,
        Column("tenant", String(64)),
        Column("platform", String(16)),
        Column("remote_id", String(255)),
        Column("content_hash", String(64)),
    )
    md.create_all(create_engine(url))
    with pytest.raises(ConfigError, match="unique constraint"):
        SqlSink(url, tenant=tenant_id, store=store, tables={"withdrawals": "loose"}).ensure_tables()
    with pytest.raises(ConfigError, match="does not exist"):
        SqlSink(url, tenant=tenant_id, store=store, tables={"returns": "missing"}).ensure_tables()


def test_jsonl_appends_each_version_once(tmp_path: Path, store: StateStore, tenant_id: str) -> None:
    sink = JsonlSink(tmp_path / "out", tenant=tenant_id, store=store)
    assert sink.write("withdrawals", [row("w-1"), row("w-2"), row("w-1")]) == 2
    assert sink.write("withdrawals", [row("w-2"), row("w-1")]) == 0
    assert sink.write("withdrawals", [row("w-2", "7")]) == 1  # a new version is a new line
    lines = (tmp_path / "out" / "withdrawals.jsonl").read_text().splitlines()
    assert [json.loads(line)["remote_id"] for line in lines] == ["w-1", "w-2", "w-2"]
    assert json.loads(lines[2])["quantity"] == "7"
    assert json.loads(lines[0])["payload"] == {"id": "w-1", "quantity": "2"}


def test_jsonl_cuts_an_uncommitted_tail(tmp_path: Path, store: StateStore, tenant_id: str) -> None:
    sink = JsonlSink(tmp_path, tenant=tenant_id, store=store)
    sink.write("withdrawals", [row("w-1")])
    path = tmp_path / "withdrawals.jsonl"
    committed = path.read_bytes()
    with open(path, "ab") as fh:  # a crash after appending, before the state commit
        fh.write(b'{"remote_id":"w-2","half":')
    JsonlSink(tmp_path, tenant=tenant_id, store=store)  # opening recovers
    assert path.read_bytes() == committed
    with open(path, "ab") as fh:
        fh.write(b'{"remote_id":"w-2"}\n')
    sink.write("withdrawals", [row("w-2")])  # writing recovers too
    assert [json.loads(x)["remote_id"] for x in path.read_text().splitlines()] == ["w-1", "w-2"]


def test_jsonl_failed_state_commit_leaves_no_line(
    tmp_path: Path, store: StateStore, tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = JsonlSink(tmp_path, tenant=tenant_id, store=store)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before commit")

    monkeypatch.setattr(store, "inbound_mark", boom)
    with pytest.raises(RuntimeError):
        sink.write("withdrawals", [row("w-1")])
    monkeypatch.undo()
    assert sink.write("withdrawals", [row("w-1")]) == 1
    assert len((tmp_path / "withdrawals.jsonl").read_text().splitlines()) == 1


def test_open_sink(tmp_path: Path, store: StateStore, tenant_id: str) -> None:
    jsonl = open_sink(
        tenant_settings(sink={"kind": "jsonl", "directory": str(tmp_path)}), tenant_id=tenant_id, store=store
    )
    assert isinstance(jsonl, JsonlSink)
    sql = open_sink(
        tenant_settings(sink={"kind": "sql", "url": f"sqlite:///{tmp_path}/erp.db"}),
        tenant_id=tenant_id,
        store=store,
    )
    assert (
        isinstance(sql, SqlSink)
        and sql.write("stock", [InboundRow.make("smartkasa", "c-1", {"count": Decimal(4)}, {})]) == 1
    )
    with pytest.raises(ConfigError, match="directory"):
        open_sink(tenant_settings(sink={"kind": "jsonl"}), tenant_id=tenant_id, store=store)
    assert "password" not in repr(
        SqlSink("postgresql+psycopg://u:password@127.0.0.1/x", tenant="t", store=store)
    )


def test_the_sql_sink_leaves_the_erp_database_file_mode_alone(
    store: StateStore, tenant_id: str, tmp_path: Path
) -> None:
    """The state store's file is made owner-only (it holds tokens); the ERP's database is
    the ERP's: a sink writing into it must not change who can read it."""
    import os
    import stat

    erp = tmp_path / "erp-shared.db"
    create_engine(f"sqlite:///{erp}").dispose()
    erp.touch()
    os.chmod(erp, 0o664)
    sink = SqlSink(f"sqlite:///{erp}", tenant=tenant_id, store=store, prefix="mode_")
    sink.ensure_tables()
    assert sink.write("withdrawals", [row("w-mode-1")]) == 1
    assert stat.S_IMODE(erp.stat().st_mode) == 0o664
