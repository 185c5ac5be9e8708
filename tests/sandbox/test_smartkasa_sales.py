"""SmartKasa sandbox sales side and admin: generators, receipts, z-reports, seeds, console edits (§6, §9)."""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal
from typing import Any

import pytest
from starlette.testclient import TestClient

from sync.sandbox.faults import FaultConfig
from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec

KEY = "e" * 32
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")


class Kasa:
    def __init__(self, faults: FaultConfig | None = None, **cfg: Any) -> None:
        config = SmartKasaSandboxConfig(tenants=[TenantSpec(api_key=KEY)], **cfg)
        self.c = TestClient(create_app(config, faults), client=("127.0.0.1", 50000))
        r = self.c.post(
            "/api/v1/auth/sessions",
            headers={"X-API-KEY": KEY},
            json={"session": {"phone_number": "380960000006", "password": "123456789"}},
        )
        self.h = {"X-API-KEY": KEY, "Authorization": r.json()["data"]["access"]}
        self.shops = [s["id"] for s in self.get("/rsn/shops").json()["data"]]

    def get(self, path: str, **params: Any) -> Any:
        return self.c.get(f"/api/v1{path}", headers=self.h, params=params)

    def send(self, method: str, path: str, body: Any = None) -> Any:
        return self.c.request(method, f"/api/v1{path}", headers=self.h, json=body)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        r = self.c.request(method, f"/_admin{path}", headers={"X-API-KEY": KEY}, json=body)
        assert r.status_code < 300, r.text
        return r.json()

    def stocked_products(self, n: int = 3, count: int = 100) -> list[str]:
        rows = [
            {"title": f"P{i}", "price": 10 + i, "tax_group_id": 1, "unit_type_id": 2009} for i in range(n)
        ]
        ids = [
            x["id"] for x in self.send("POST", "/inventory/products/batch", {"products": rows}).json()["data"]
        ]
        for pid in ids:
            for shop in self.shops:
                self.send(
                    "POST", "/inventory/cards", {"card": {"product_id": pid, "shop_id": shop, "count": count}}
                )
        return ids


@pytest.fixture
def kasa() -> Kasa:
    return Kasa()


def test_generated_day_shifts_receipts_and_payments(kasa):
    kasa.stocked_products()
    shifts = kasa.admin("POST", "/generate/day", {"receipts_per_shift": 3, "seed": 1})["data"]
    assert len(shifts) == 2 and all(s["state"] == 1 and TS.match(s["closed_at"]) for s in shifts)
    listed = kasa.get("/pos/shifts").json()
    assert listed["meta"]["total_count"] == 2 and listed["meta"]["limit_value"] == 25
    receipts = kasa.get("/pos/receipts").json()
    assert receipts["meta"]["limit_value"] == 10 and receipts["meta"]["total_count"] == 6
    created = [r["created_at"] for r in receipts["data"]]
    assert created == sorted(created, reverse=True)  # newest first
    first = receipts["data"][0]
    assert first["payment_transactions"] and "discount_type_id" in first
    assert all(
        set(k) <= {"А", "Б", "В", "Г", "З"} and isinstance(v, int)
        for k, v in ((k, v) for r in receipts["data"] for k, v in r["tax_amount"].items())
    )
    total = sum(Decimal(i["amount"]) for i in first["items"])
    assert Decimal(first["total_amount"]) == total and first["items"][0]["unit_type_name"] == "шт"
    one = kasa.get(f"/pos/receipts/{first['id']}").json()["data"]
    assert "payment_transactions" not in one and "discount_type_id" not in one and one["items"]
    tx_id = first["payment_transactions"][0]["id"]
    tx = kasa.get(f"/pos/payment_transactions/{tx_id}").json()["data"]
    assert (
        tx["receipt"]["id"] == first["id"]
        and "items" not in tx["receipt"]
        and tx["amount"] == first["total_amount"]
    )
    by_shift = kasa.get("/pos/receipts", shift_id=shifts[0]["id"]).json()["data"]
    assert len(by_shift) == 3 and {r["shift_id"] for r in by_shift} == {shifts[0]["id"]}


def test_generators_are_reproducible_with_a_seed():
    def run() -> list[Any]:
        k = Kasa()
        k.stocked_products()
        k.admin("POST", "/generate/day", {"receipts_per_shift": 4, "seed": 42})
        return [
            (r["total_amount"], [i["quantity"] for i in r["items"]])
            for r in k.get("/pos/receipts").json()["data"]
        ]

    assert sorted(run()) == sorted(run())


def test_sales_decrement_counted_stock_only(kasa):
    ids = kasa.stocked_products(n=1, count=100)
    cards = kasa.get("/inventory/cards").json()["data"]
    kasa.send("PUT", f"/inventory/cards/{cards[1]['id']}", {"card": {"counting_enabled": False}})
    kasa.admin("POST", "/generate/day", {"receipts_per_shift": 5, "seed": 3})
    sold = {shop: Decimal(0) for shop in kasa.shops}
    for r in kasa.get("/pos/receipts", per_page=50).json()["data"]:
        sold[r["shop_id"]] += sum(Decimal(i["quantity"]) for i in r["items"] if i["product_id"] == ids[0])
    after = {c["shop_id"]: Decimal(c["count"]) for c in kasa.get("/inventory/cards").json()["data"]}
    counted = cards[0]["shop_id"]
    assert after[counted] == 100 - sold[counted] and sold[counted] > 0
    assert after[cards[1]["shop_id"]] == 100


def test_z_reports_amounts_are_numbers_and_dates_filter(kasa):
    kasa.stocked_products()
    kasa.admin("POST", "/generate/day", {"receipts_per_shift": 2, "seed": 5})
    r = kasa.get("/reports/z-reports").json()
    assert r["meta"]["total_count"] == 2
    z = r["data"][0]
    assert isinstance(z["sale_total"], int | float) and isinstance(z["cash_total"], int | float)
    assert z["shift"]["id"] == z["shift_id"] and "address" not in z["shop"] and isinstance(z["id"], int)
    receipts = kasa.get("/pos/receipts", shift_id=z["shift_id"]).json()["data"]
    assert Decimal(str(z["sale_total"])) == sum(Decimal(x["total_amount"]) for x in receipts)
    today = dt.datetime.now(dt.UTC).date()
    assert (
        kasa.get(
            "/reports/z-reports",
            date_start=str(today - dt.timedelta(days=3)),
            date_end=str(today + dt.timedelta(days=3)),
        ).json()["meta"]["total_count"]
        == 2
    )
    assert kasa.get("/reports/z-reports", date_end="2020-01-01").json()["meta"]["total_count"] == 0
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    assert kasa.get("/reports/z-reports", date_start=later).json()["meta"]["total_count"] == 0
    bad = kasa.get("/reports/z-reports", date_start="soon")
    assert bad.status_code == 422 and bad.json() == {"errors": {"date_start": [{"error": "invalid"}]}}
    user = z["shift"]["terminal_user_id"]
    for param in ("termianl_user_id", "terminal_user_id"):
        rows = kasa.get("/reports/z-reports", **{param: user}).json()["data"]
        assert rows and all(x["shift"]["terminal_user_id"] == user for x in rows)
    assert kasa.get("/reports/z-reports", shop_id=z["shop_id"]).json()["meta"]["total_count"] == 1


def test_shift_by_shift_generators_and_product_sales_report(kasa):
    kasa.stocked_products(n=2)
    shift = kasa.admin("POST", "/generate/shifts", {"seed": 9})["data"]
    assert shift["state"] == 0 and shift["closed_at"] is None
    kasa.admin("POST", "/generate/receipts", {"shift_id": shift["id"], "count": 4, "seed": 9})
    kasa.admin("POST", f"/generate/shifts/{shift['id']}/close", {"z_report": False})
    assert kasa.get("/reports/z-reports").json()["meta"]["total_count"] == 0
    z = kasa.admin("POST", "/generate/z_reports", {"shift_id": shift["id"]})["data"]
    assert z["shift_id"] == shift["id"]
    again = kasa.c.post(
        "/_admin/generate/z_reports", headers={"X-API-KEY": KEY}, json={"shift_id": shift["id"]}
    )
    assert again.status_code == 422
    report = kasa.get("/stats/product_daily_sales/alter").json()
    assert report["meta"] == {} and report["data"]["id"] == 0
    data = report["data"]
    assert isinstance(data["total_amount"], int | float) and all(
        isinstance(p["total_amount"], str) for p in data["products"]
    )
    assert Decimal(str(data["total_amount"])) == Decimal(str(z["sale_total"]))
    assert sum(Decimal(p["popularity"]) for p in data["products"]) == pytest.approx(
        Decimal(100), abs=Decimal("0.02")
    )
    assert (
        kasa.get("/stats/product_daily_sales/alter", date_end="2020-01-01").json()["data"]["products"] == []
    )


def test_generator_errors_are_422(kasa):
    r = kasa.c.post("/_admin/generate/receipts", headers={"X-API-KEY": KEY}, json={"shift_id": "nope"})
    assert r.status_code == 422
    shift = kasa.admin("POST", "/generate/shifts", {})["data"]
    r = kasa.c.post("/_admin/generate/receipts", headers={"X-API-KEY": KEY}, json={"shift_id": shift["id"]})
    assert r.status_code == 422 and "no products" in r.json()["message"]


def test_receipt_writes_echo_tax_amount_and_reject_wrong_types(kasa):
    body = {
        "receipt": {
            "title": "new receipt",
            "total_amount": 145,
            "state": 2,
            "type": 0,
            "discount_amount": 15,
            "tax_amount": {"А": 23.5},
            "items": [{"name": "x", "price": 70.5, "amount": 246.75, "quantity": 3.5, "unit_type_id": 2009}],
        }
    }
    r = kasa.send("POST", "/pos/receipts", body)
    data = r.json()["data"]
    assert r.status_code == 201 and data["total_amount"] == "145.0" and data["tax_amount"] == {"А": 23.5}
    assert data["items"][0]["quantity"] == "3.5" and data["items"][0]["receipt_id"] == data["id"]
    bad = kasa.send("POST", "/pos/receipts", {"receipt": {"total_amount": "wrong"}})
    assert bad.json() == {
        "errors": '[Pos::ReceiptForm.new] "wrong" (String) has invalid type for :total_amount '
        'violates constraints (invalid value for Float(): "wrong" failed)'
    }
    batch = kasa.send("POST", "/pos/receipts/batch", {"batch": {"receipts": [{"total_amount": "wrong"}]}})
    assert batch.json()["errors"].startswith("[Pos::ReceiptBatchItemForm.new]")
    many = kasa.send("POST", "/pos/receipts/batch", {"batch": {"receipts": [{"title": "a"}, {"title": "b"}]}})
    ids = [x["id"] for x in many.json()["data"]]
    gone = kasa.send("DELETE", "/pos/receipts/batch", {"batch": {"ids": ids}}).json()["data"]
    assert isinstance(gone, dict) and gone["id"] == ids[0] and "items" not in gone
    assert kasa.send("DELETE", f"/pos/receipts/{data['id']}").json()["data"]["id"] == data["id"]


def test_admin_seed_console_edit_and_dump(kasa):
    created = kasa.admin(
        "POST",
        "/seed/products",
        [
            {"title": "Old", "price": "12.50", "number": "111", "created_at": "2020-01-02T03:04:05+00:00"},
            {"title": "Other", "price": 1},
        ],
    )["data"]
    pid = created[0]["id"]
    before = kasa.get(f"/inventory/products/{pid}").json()["data"]
    assert before["price"] == "12.5" and before["created_at"].startswith("2020-01-02")
    time.sleep(0.01)
    edited = kasa.admin("PATCH", f"/records/products/{pid}", {"title": "Edited in the back office"})["data"]
    after = kasa.get(f"/inventory/products/{pid}").json()["data"]
    assert (
        after["title"] == edited["title"] == "Edited in the back office"
        and after["updated_at"] > before["updated_at"]
    )
    assert after["price"] == "12.5"
    dump = kasa.admin("GET", "/dump")
    assert {p["title"] for p in dump["products"]} == {"Edited in the back office", "Other"}
    assert len(dump["shops"]) == 2 and "_tz" not in dump["products"][0]
    kasa.admin("DELETE", f"/records/products/{pid}")
    assert kasa.get(f"/inventory/products/{pid}").status_code == 422
    r = kasa.c.post("/_admin/seed/nope", headers={"X-API-KEY": KEY}, json={})
    assert r.status_code == 404
    assert kasa.c.get("/_admin/dump", headers={"X-API-KEY": "unknown"}).status_code == 404


def test_stock_generator_sets_absolute_counts(kasa):
    kasa.stocked_products(n=2, count=7)
    changed = kasa.admin("POST", "/generate/stock", {"count": 2, "seed": 1})["data"]
    cards = {c["id"]: c for c in kasa.get("/inventory/cards").json()["data"]}
    assert len(changed) == 2 and all(cards[c["id"]]["count"] == c["count"] for c in changed)


def test_admin_tenants_reset_and_loopback_guard():
    k = Kasa()
    made = k.c.post(
        "/_admin/tenants",
        json={"api_key": "new-key", "phone_number": "380501112233", "password": "pw", "shops": 3},
    )
    assert made.status_code == 201 and len(made.json()["shops"]) == 3
    assert k.c.post("/_admin/tenants", json={"api_key": "new-key"}).status_code == 409
    assert k.c.post("/_admin/tenants", json={"phone_number": "1"}).status_code == 422
    login = k.c.post(
        "/api/v1/auth/sessions",
        headers={"X-API-KEY": "new-key"},
        json={"session": {"phone_number": "380501112233", "password": "pw"}},
    )
    assert login.status_code == 201
    k.send("POST", "/inventory/products", {"product": {"title": "t", "price": 1}})
    assert k.c.post("/_admin/reset").json() == {"tenants": 1}  # back to the configured tenants only
    assert k.c.post("/api/v1/auth/sessions", headers={"X-API-KEY": "new-key"}, json={}).status_code == 401
    assert k.get("/rsn/shops").status_code == 401  # sessions are gone too
    remote = TestClient(create_app(SmartKasaSandboxConfig()), client=("10.1.2.3", 50000))
    for path in ("/_admin/dump", "/_admin/stats", "/_admin/faults"):
        assert remote.get(path).status_code == 403


def test_faults_and_stats_come_from_the_shared_layer():
    k = Kasa(FaultConfig(p_5xx=1.0, path_regex="/inventory/products$"))
    r = k.send("POST", "/inventory/products", {"product": {"title": "t", "price": 1}})
    assert (r.status_code, r.json()) == (500, {"message": "Internal Server Error"})
    k.admin("PUT", "/faults", {"p_429": 1.0, "retry_after": 2})
    r = k.get("/rsn/shops")
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (429, {"message": "Too Many Requests"}, "2")
    stats = k.admin("GET", "/stats")
    assert stats["routes"]["POST /api/v1/inventory/products"] == {"500": 1}
    assert stats["by_account"][KEY]["rate_limited"] == 1


def test_timestamps_use_configured_offsets(kasa):
    k = Kasa(utc_offsets_minutes=[0, 180])
    a = k.send("POST", "/inventory/categories", {"category": {"title": "a"}}).json()["data"]["created_at"]
    b = k.send("POST", "/inventory/categories", {"category": {"title": "b"}}).json()["data"]["created_at"]
    assert {a[-6:], b[-6:]} == {"+00:00", "+03:00"} and TS.match(a) and TS.match(b)


def test_expired_shifts_late_offline_receipts_and_ignored_receipt_filters():
    kasa = Kasa(receipt_filters="ignored")
    kasa.stocked_products(n=2)
    first = kasa.admin("POST", "/generate/shifts", {"seed": 3})["data"]
    kasa.admin("POST", "/generate/receipts", {"shift_id": first["id"], "count": 2, "seed": 3})
    expired = kasa.admin("POST", f"/generate/shifts/{first['id']}/expire")["data"]
    assert expired["state"] == 2 and expired["closed_at"] is None  # §6.1's "stale" example
    online = kasa.c.post(
        "/_admin/generate/receipts", headers={"X-API-KEY": KEY}, json={"shift_id": first["id"]}
    )
    assert online.status_code == 422  # only the till's offline upload reaches a shift that ended
    late = kasa.admin("POST", "/generate/receipts", {"shift_id": first["id"], "offline": True, "seed": 4})
    (late_id,) = [r["id"] for r in late["data"]]

    second = kasa.admin("POST", "/generate/shifts", {"seed": 5})["data"]
    kasa.admin("POST", "/generate/receipts", {"shift_id": second["id"], "count": 1, "seed": 5})
    listed = kasa.get("/pos/receipts", shift_id=first["id"], per_page=50).json()["data"]
    assert len(listed) == 4 and {r["shift_id"] for r in listed} == {first["id"], second["id"]}  # ignored
    (offline,) = [r for r in listed if r["id"] == late_id]
    assert offline["offline_id"] and offline["offline_seed"] and offline["offline_local_number"]
    assert all(not r["offline_id"] for r in listed if r["id"] != late_id)
