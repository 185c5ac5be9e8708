"""The campaign's own instruments can fail: the listing check sees each kind of damage a sync can do,
the inbound check sees a record that never landed, and the SmartKasa sandbox's run-time config knob
(``PATCH /_admin/config``) really shuffles batch ids. Without these, a green campaign proves nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from campaign import CampaignSpec, check_inbound, check_remote, desired_records, make_hostile, start
from starlette.testclient import TestClient

from sync.engine.api import Engine
from sync.playground import Playground
from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec


@pytest.fixture
def synced(tmp_path: Path) -> Any:
    spec = CampaignSpec(seed=5, records=12, epi_products=2, no_barcode=0.5, no_cpf=0.3, shuffled=False)
    pg = start(spec, tmp_path / "pg")
    try:
        make_hostile(pg.erp_path, spec)
        engine = Engine(pg.settings())
        wanted = desired_records(engine)
        engine.apply()
        yield pg, wanted
    finally:
        pg.stop()


def _products(pg: Playground) -> list[dict[str, Any]]:
    return list(pg.kasa_state()["products"])


def test_listing_check_sees_duplicates_missing_mismatches_moved_cards_and_extras(synced: Any) -> None:
    pg, wanted = synced
    assert check_remote(pg, wanted).ok, check_remote(pg, wanted).summary()
    products = _products(pg)
    no_barcode = next(p for p in products if not p.get("number"))
    other = next(p for p in products if p["id"] != no_barcode["id"])

    # a second product carrying the same ERP marker: a duplicate although it has no barcode
    pg.kasa_admin(
        "POST",
        "/seed/products",
        json={"title": "dup", "price": "1", "alter_number": no_barcode["alter_number"]},
    )
    # a field changed on the platform: a mismatch
    pg.kasa_admin("PATCH", f"/records/products/{other['id']}", json={"title": "changed on the till"})
    # a stock card moved to another product: both products' cards differ from the ERP
    card = next(c for c in pg.kasa_state()["cards"] if c["product_id"] == other["id"])
    pg.kasa_admin("PATCH", f"/records/cards/{card['id']}", json={"product_id": no_barcode["id"]})
    # an employee gone from the platform: missing
    employee = pg.epi_state()["employees"][0]
    pg.epi_admin("DELETE", f"/tenants/{pg.tenant}/records/employees/{employee['id']}")
    # a product no ERP row accounts for: extra
    pg.kasa_admin("POST", "/seed/products", json={"title": "stray", "price": "1", "alter_number": "NOPE-1"})

    check = check_remote(pg, wanted)
    assert not check.ok
    assert any(no_barcode["alter_number"] in d for d in check.duplicates), check.duplicates
    assert any(".title" in m and "changed on the till" in m for m in check.mismatches), check.mismatches
    assert sum(".cards" in m for m in check.mismatches) == 2, check.mismatches
    assert any(m.startswith("smartepi/employees") for m in check.missing), check.missing
    assert any("NOPE-1" in e for e in check.extra), check.extra


def test_inbound_check_sees_records_that_never_landed(synced: Any) -> None:
    pg, _ = synced
    made = pg.epi_admin("POST", f"/tenants/{pg.tenant}/generate", json={"kind": "withdrawals", "count": 4})
    check = check_inbound(pg)
    assert check.expected == 4 and sorted(check.lost) == sorted(f"withdrawals {i}" for i in made["ids"])


def test_kasa_config_knob_shuffles_batch_ids_at_run_time() -> None:
    key = "k" * 32
    app = create_app(
        SmartKasaSandboxConfig(tenants=[TenantSpec(api_key=key)], seed=3, admin_loopback_only=False)
    )
    c = TestClient(app)
    login = {"phone_number": "380960000006", "password": "123456789"}
    r = c.post("/api/v1/auth/sessions", headers={"X-API-KEY": key}, json=login)
    h = {"X-API-KEY": key, "Authorization": r.json()["data"]["access"]}

    def batch_titles() -> list[str]:
        rows = [{"title": f"P{i}", "price": 1} for i in range(12)]
        got = c.post("/api/v1/inventory/products/batch", headers=h, json={"batch": {"products": rows}})
        ids = [x["id"] for x in got.json()["data"]]
        return [c.get(f"/api/v1/inventory/products/{i}", headers=h).json()["data"]["title"] for i in ids]

    in_order = [f"P{i}" for i in range(12)]
    assert batch_titles() == in_order
    r = c.patch("/_admin/config", json={"batch_order": "shuffled"})
    assert r.status_code == 200 and r.json()["data"]["batch_order"] == "shuffled"
    titles = batch_titles()
    assert sorted(titles) == sorted(in_order) and titles != in_order
    assert c.patch("/_admin/config", json={"batch_order": "sideways"}).status_code == 422
    assert c.patch("/_admin/config", json={"jwt_secret": "x"}).status_code == 422
    assert c.patch("/_admin/config", json={"no_such_knob": 1}).status_code == 422
    assert "jwt_secret" not in c.patch("/_admin/config", json={}).json()["data"]
