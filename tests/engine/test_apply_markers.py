"""SmartKasa products without a barcode: every create is findable through erpsync's marker.

SmartKasa accepts duplicate products, and a product without a barcode has no natural key.
erpsync stamps the ERP key into ``alter_number`` (the marker, returned by every read) on
create, so a batch whose answer was lost after commit is resolved by a lookup that can find
its products (one listing of the catalog), never by a blind resend. Where no marker exists
(``marker: false``), such a create is held for a person, never resent, until
``erpsync resolve`` settles it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from apply_helpers import (
    MakePlayground,
    check_invariants,
    desired_records,
    post_protocol_violations,
    recording_transports,
)
from typer.testing import CliRunner

from sync.cli import app
from sync.engine.api import Engine
from sync.playground import Playground, shipped_mappings
from sync.sandbox.faults import FaultConfig
from sync.state.store import StateStore

PRODUCTS = 40
PRODUCT_BATCHES = r"^/api/v1/inventory/products(/batch)?$"


def _drop_barcodes(pg: Playground) -> list[str]:
    with sqlite3.connect(pg.erp_path) as conn:
        conn.execute("UPDATE kasa_products SET barcode = NULL")
        return sorted(r[0] for r in conn.execute("SELECT sku FROM kasa_products"))


def _mapping_without_alter_number(tmp_path: Path, extra: str = "") -> list[Path]:
    """The shipped SmartKasa mapping with ``alter_number`` unmapped (erpsync stamps it itself)."""
    epi_map, kasa_map = shipped_mappings()
    text = kasa_map.read_text(encoding="utf-8")
    assert "      alter_number: sku\n" in text
    text = text.replace("      alter_number: sku\n", "")
    if extra:
        text = text.replace("    key: sku\n", f"    key: sku\n    {extra}\n", 1)
    custom = tmp_path / "smartkasa.yaml"
    custom.write_text(text, encoding="utf-8")
    return [epi_map, custom]


def _products(pg: Playground) -> list[dict[str, Any]]:
    return list(pg.kasa_state()["products"])


def test_barcode_less_products_survive_dropped_batch_answers(
    playground: MakePlayground, tmp_path: Path
) -> None:
    pg = playground(
        "batch",
        employees=4,
        products_epi=2,
        products_kasa=PRODUCTS,
        seed=3,
        kasa_batch=10,
        mappings=_mapping_without_alter_number(tmp_path),
    )
    skus = _drop_barcodes(pg)
    assert len(skus) == PRODUCTS
    pg.set_faults(
        "smartkasa",
        FaultConfig(seed=11, p_drop_after_commit=0.5, write_methods=["POST"], path_regex=PRODUCT_BATCHES),
    )
    log: list[dict[str, Any]] = []
    engine = Engine(pg.settings(), transports=recording_transports(log))
    wanted = desired_records(engine)
    assert wanted[("smartkasa", "products")].quarantined == 0
    for _ in range(3):
        engine.apply()
    stats = pg.stats("smartkasa")
    dropped = sum(
        c.get("dropped", 0) for r, c in stats["routes"].items() if r.startswith("POST ") and "products" in r
    )
    assert dropped > 0  # the faults happened
    products = _products(pg)
    assert len(products) == PRODUCTS, f"{len(products)} products for {PRODUCTS} rows"
    assert sorted(p["alter_number"] for p in products) == skus
    assert post_protocol_violations(log) == []

    pg.set_faults("smartkasa", FaultConfig())
    report = check_invariants(pg, wanted, engine=engine)
    assert report.ok and not report.extra, report.summary()
    assert not engine.plan().actions
    counts = StateStore(pg.settings().state_url).intent_counts(pg.tenant)
    assert not {s: n for s, n in counts.items() if s in ("pending", "unknown")}, counts


def test_barcode_less_products_survive_dropped_single_answers(
    playground: MakePlayground, tmp_path: Path
) -> None:
    """One product per request (batch size 1) and change events (fast mode, look before create)."""
    pg = playground(
        "single",
        employees=4,
        products_epi=2,
        products_kasa=12,
        seed=4,
        kasa_batch=1,
        mappings=_mapping_without_alter_number(tmp_path),
    )
    skus = _drop_barcodes(pg)
    pg.set_faults(
        "smartkasa",
        FaultConfig(seed=5, p_drop_after_commit=0.5, write_methods=["POST"], path_regex=PRODUCT_BATCHES),
    )
    log: list[dict[str, Any]] = []
    engine = Engine(pg.settings(), transports=recording_transports(log))
    engine.sync_keys(None, "kasa_products", skus[:6])
    engine.sync_keys(None, "kasa_products", skus[:6])
    engine.apply()
    engine.apply()
    products = _products(pg)
    assert sorted(p["alter_number"] for p in products) == skus, len(products)
    assert post_protocol_violations(log) == []
    pg.set_faults("smartkasa", FaultConfig())
    report = check_invariants(pg, engine=engine)
    assert report.ok and not report.extra, report.summary()
    assert not engine.plan().actions


def test_without_a_marker_a_lost_create_is_held_never_resent(
    playground: MakePlayground, tmp_path: Path
) -> None:
    pg = playground(
        "held",
        employees=4,
        products_epi=2,
        products_kasa=3,
        seed=6,
        kasa_batch=10,
        mappings=_mapping_without_alter_number(tmp_path, extra="marker: false"),
    )
    skus = _drop_barcodes(pg)
    pg.set_faults(
        "smartkasa",
        FaultConfig(seed=1, p_drop_after_commit=1.0, write_methods=["POST"], path_regex=PRODUCT_BATCHES),
    )
    engine = Engine(pg.settings())
    first = engine.apply()
    assert first.status == "partial"
    assert len(_products(pg)) == 3  # sent once, answer lost
    pg.set_faults("smartkasa", FaultConfig())
    second = engine.apply()
    assert len(_products(pg)) == 3  # never resent
    assert second.status == "partial"
    assert sum(n for k, n in second.counts.items() if k.endswith("/held")) == 3

    env = {"ERPSYNC_CONFIG": str(pg.config_path)}
    runner = CliRunner()
    why = runner.invoke(app, ["why", "products", skus[0], "--platform", "smartkasa"], env=env)
    assert why.exit_code == 0, why.output
    flat = " ".join(why.output.split())  # Rich wraps at the terminal width
    assert "held for a person" in flat and "erpsync resolve products" in flat, flat

    # A person finds the products on the platform and settles each intent.
    remote = {p["title"]: p["id"] for p in _products(pg)}
    with sqlite3.connect(pg.erp_path) as conn:
        titles = dict(conn.execute("SELECT sku, title FROM kasa_products").fetchall())
    for sku in skus[:2]:
        got = runner.invoke(
            app,
            ["resolve", "products", sku, "--platform", "smartkasa", "--remote-id", remote[titles[sku]]],
            env=env,
        )
        assert got.exit_code == 0, got.output
    # The third one: the person says it was not created (deletes it on the platform first).
    pg.kasa_admin("DELETE", f"/records/products/{remote[titles[skus[2]]]}")
    got = runner.invoke(
        app, ["resolve", "products", skus[2], "--platform", "smartkasa", "--not-created"], env=env
    )
    assert got.exit_code == 0, got.output
    third = engine.apply()
    assert third.status == "ok", third.counts
    assert len(_products(pg)) == 3
    assert not engine.plan().actions


def test_shuffled_batch_ids_and_dropped_answers_bind_every_row_to_its_own_product(
    playground: MakePlayground,
) -> None:
    """Issue #19: batch answers in another order than the input, 30% of them lost after commit."""
    pg = playground("shuffled", employees=4, products_epi=2, products_kasa=60, seed=8, kasa_batch=8)
    with sqlite3.connect(pg.erp_path) as conn:  # a third without barcode
        conn.execute("UPDATE kasa_products SET barcode = NULL WHERE rowid % 3 = 0")
    pg.kasa_admin("PATCH", "/config", json={"batch_order": "shuffled"})
    pg.set_faults(
        "smartkasa",
        FaultConfig(seed=21, p_drop_after_commit=0.3, write_methods=["POST"], path_regex=PRODUCT_BATCHES),
    )
    engine = Engine(pg.settings())
    wanted = desired_records(engine)
    engine.apply()
    engine.apply()
    pg.set_faults("smartkasa", FaultConfig())
    report = check_invariants(pg, wanted, engine=engine)  # field by field, cards included
    assert report.ok and not report.extra, report.summary()
    products = {p["id"]: p for p in _products(pg)}
    bindings = StateStore(pg.settings().state_url).bindings(pg.tenant, "smartkasa", "products")
    assert len(bindings) == 60
    for sku, remote_id in bindings.items():
        assert products[remote_id]["alter_number"] == sku  # bound to its own product
    assert not engine.plan().actions


def test_created_records_that_cannot_be_told_apart_are_held_not_resent(
    playground: MakePlayground, tmp_path: Path
) -> None:
    """No marker, no barcode, one title: the batch answered, so the products exist, but a
    read-back cannot tell which is whose. They are held for a person, never created again."""
    pg = playground(
        "twins",
        employees=4,
        products_epi=2,
        products_kasa=3,
        seed=7,
        kasa_batch=10,
        mappings=_mapping_without_alter_number(tmp_path, extra="marker: false"),
    )
    _drop_barcodes(pg)
    with sqlite3.connect(pg.erp_path) as conn:
        conn.execute("UPDATE kasa_products SET title = 'Same product'")
    engine = Engine(pg.settings())
    first = engine.apply()
    assert sum(n for k, n in first.counts.items() if k.endswith("products/create/held")) == 3, first.counts
    assert len(_products(pg)) == 3
    second = engine.apply()
    assert len(_products(pg)) == 3  # never resent
    assert second.status == "partial"


def test_an_erp_sinks_open_intents_are_left_to_the_sink(playground: MakePlayground) -> None:
    """The Tryton sink keeps its own create ledger in the intents table (platform "tryton");
    the apply's start-up resolution settles platform creates only, and must not mark the
    sink's open entries failed (the sink's crash recovery looks them up in the ERP)."""
    pg = playground("sink-ledger", employees=2, products_epi=1, products_kasa=1, seed=5)
    engine = Engine(pg.settings())
    store: StateStore = engine.store
    tenant = engine.runtime(None).tenant_id
    sink_intent = store.open_intent(tenant, "tryton", "withdrawals", "w-1", {"reference": "w-1"}, {"q": 1})
    engine.apply()
    (still,) = [i for i in store.open_intents(tenant) if i.id == sink_intent]
    assert still.state == "pending"


def test_a_full_plan_reads_no_stock_cards_the_mapping_does_not_map(
    playground: MakePlayground, tmp_path: Path
) -> None:
    """Cards are listed with requests of their own: a SmartKasa mapping without ``cards``
    must not pay for them on every full reconcile (bench/apply.py's update run counted one)."""
    epi_map, kasa_map = shipped_mappings()
    text = kasa_map.read_text(encoding="utf-8")
    head, _, tail = text.partition("    children:\n      cards:")
    assert tail, "the shipped mapping maps cards"
    rest = tail.split("\n")
    # drop the cards block: its lines are indented deeper than the entity's keys
    kept = [line for line in rest[1:] if line and not line.startswith("        ")]
    custom = tmp_path / "smartkasa.yaml"
    custom.write_text(head + "\n".join(kept) + "\n", encoding="utf-8")
    pg = playground(
        "no-cards", employees=2, products_epi=1, products_kasa=6, seed=9, mappings=[epi_map, custom]
    )
    engine = Engine(pg.settings())
    engine.apply()
    log: list[dict[str, Any]] = []
    listing = Engine(pg.settings(), transports=recording_transports(log))
    plan = listing.plan()  # full mode: every remote record is listed
    assert all(a.kind == "skip" for a in plan.actions)  # converged: unmapped cards are no drift
    card_reads = [e for e in log if e["m"] == "GET" and e["path"].endswith("/inventory/cards")]
    product_reads = [e for e in log if e["m"] == "GET" and e["path"].endswith("/inventory/products")]
    assert product_reads and not card_reads
