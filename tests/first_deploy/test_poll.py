"""The service notices ERP edits by polling the configured change column (#16.1).

A user's ERP dates its rows in a column of its own name (``changed`` here), stored as ISO
text, a SQL datetime or epoch seconds. The Celery beat task ``poll_watermarks`` runs as in
the worker (eager, against real Redis and the in-process sandboxes): it reads the
``erp.entities.<x>.updated_at`` column, and an edit reaches the platform.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sync import celery_app, tasks
from sync.cli import app as cli_app
from sync.engine.api import Engine
from sync.playground import Playground, start_playground
from sync.state.store import StateStore

FORMATS: dict[str, Callable[[dt.datetime], Any]] = {
    "iso-text": lambda t: t.isoformat(),  # 2026-12-06T22:41:05.123456+00:00
    "sql-datetime": lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),
    "epoch-seconds": lambda t: int(t.timestamp()),
}


def _restamp(db: Path, table: str, fmt: str) -> None:
    """Rename the table's ``updated_at`` to ``changed`` and store it in the given form."""
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP INDEX IF EXISTS ix_{table}_updated")
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN updated_at TO changed")
        rows = conn.execute(f"SELECT rowid, changed FROM {table}").fetchall()
        for rowid, value in rows:
            stamp = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
            conn.execute(f"UPDATE {table} SET changed = ? WHERE rowid = ?", (FORMATS[fmt](stamp), rowid))


def _configure(pg: Playground, redis_url: str, entities: dict[str, Any]) -> None:
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["redis_url"] = redis_url
    config["tenants"][pg.tenant]["erp"]["entities"].update(entities)
    pg.config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
def service(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Playground]]:
    """``make(fmt, entities)``: a playground whose ERP dates kasa_products in ``changed``,
    applied once, with this process configured as its Celery worker (eager tasks)."""
    started: list[Playground] = []

    def make(fmt: str, entities: dict[str, Any]) -> Playground:
        pg = start_playground(tmp_path / fmt, employees=3, products_epi=2, products_kasa=6)
        started.append(pg)
        _restamp(pg.erp_path, "kasa_products", fmt)
        _configure(pg, redis_url, entities)
        settings = pg.settings()
        Engine(settings, store=StateStore(settings.state_url)).apply(pg.tenant)
        monkeypatch.setenv("ERPSYNC_NAMESPACE", f"erpsync-test-{uuid.uuid4().hex[:10]}")
        celery_app.configure(settings)
        celery_app.app.conf.task_always_eager = True  # the task runs here, as in a worker
        tasks.configure_runtime(engine_factory=tasks.default_engine)
        return pg

    try:
        yield make
    finally:
        celery_app.app.conf.task_always_eager = False
        tasks.configure_runtime()
        for pg in started:
            pg.stop()


def _price(pg: Playground, sku: str) -> Decimal:
    products = pg.kasa_state()["products"]
    found = [p for p in products if p.get("alter_number") == sku and not p.get("_deleted")]
    assert len(found) == 1, found
    return Decimal(str(found[0]["price"]))


def _edit(
    db: Path, table: str, fmt: str, column: str, values: dict[str, Any], where: tuple[str, Any]
) -> None:
    """Update one row as the ERP would: the values and its change column, stamped now."""
    stamped = {**values, column: FORMATS[fmt](dt.datetime.now(dt.UTC))}
    sets = ", ".join(f"{name} = ?" for name in stamped)
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE {table} SET {sets} WHERE {where[0]} = ?", (*stamped.values(), where[1]))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_the_poll_reads_the_configured_change_column(service: Callable[..., Playground], fmt: str) -> None:
    pg = service(fmt, {"kasa_products": {"key": "sku", "updated_at": "changed"}})
    with sqlite3.connect(pg.erp_path) as conn:
        sku, price = conn.execute("SELECT sku, price FROM kasa_products ORDER BY sku LIMIT 1").fetchone()
    assert _price(pg, sku) == Decimal(str(price))

    assert tasks.poll_watermarks(pg.tenant) == {}  # the first poll dates the newest row only
    store = tasks.runtime().store
    assert store.get_cursor(pg.tenant, "erp", "watermark:kasa_products") is not None
    time.sleep(1.1)  # epoch and SQL datetime stamps count whole seconds
    new = Decimal(str(price)) + Decimal("11.50")
    _edit(pg.erp_path, "kasa_products", fmt, "changed", {"price": str(new)}, ("sku", sku))

    emitted = tasks.poll_watermarks(pg.tenant)
    # The edited row, and the one the watermark was taken from (the read is inclusive).
    assert set(emitted) == {"kasa_products"} and 1 <= emitted["kasa_products"] <= 2
    assert _price(pg, sku) == new  # synced by the emitted sync_keys
    assert tasks.poll_watermarks(pg.tenant) == {}  # nothing new since: nothing emitted


def test_a_stock_edit_syncs_its_product(service: Callable[..., Playground]) -> None:
    """Child rows (kasa_stock, a product's cards) are polled too and name their parent."""
    pg = service(
        "sql-datetime",
        {
            "kasa_products": {"key": "sku", "updated_at": "changed"},
            "kasa_stock": {"updated_at": "updated_at"},
        },
    )
    with sqlite3.connect(pg.erp_path) as conn:
        row_id, sku = conn.execute("SELECT id, sku FROM kasa_stock ORDER BY id LIMIT 1").fetchone()
    assert tasks.poll_watermarks(pg.tenant) == {}
    time.sleep(1.1)
    _edit(pg.erp_path, "kasa_stock", "sql-datetime", "updated_at", {"qty": "987"}, ("id", row_id))

    emitted = tasks.poll_watermarks(pg.tenant)
    assert set(emitted) == {"kasa_stock"} and 1 <= emitted["kasa_stock"] <= 2
    products = pg.kasa_state()["products"]
    (product,) = [p for p in products if p.get("alter_number") == sku and not p.get("_deleted")]
    cards = [c for c in pg.kasa_state()["cards"] if c.get("product_id") == product["id"]]
    assert Decimal("987") in {Decimal(str(c["count"])) for c in cards}, cards


def test_an_entity_without_change_column_is_named_by_config_check_and_the_worker(
    service: Callable[..., Playground], caplog: pytest.LogCaptureFixture
) -> None:
    pg = service("iso-text", {"kasa_products": {"key": "sku", "updated_at": "changed"}})
    result = CliRunner().invoke(cli_app, ["config", "check", str(pg.config_path)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert "erp.entities.kasa_categories: no updated_at column" in flat
    assert "erp.entities.kasa_products:" not in flat  # polled: not named
    assert "set erp.entities.kasa_stock.updated_at" in flat.lower()

    with caplog.at_level(logging.WARNING):
        tasks._say_what_is_not_polled()
        assert tasks.poll_watermarks(pg.tenant) == {}
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "'kasa_categories' has no change column" in said
    assert "'kasa_products'" not in said
