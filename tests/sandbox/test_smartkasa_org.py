"""SmartKasa sandbox organisation side: shops, employees, terminals, paging (§3, §5.7–5.10)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec

KEY = "d" * 32
SHOP = {
    "title": "Test shop",
    "email": "a@b.ua",
    "phone_number": "0971234567",
    "state": 0,
    "website_url": "https://www.example.com",
    "business_category_id": 1,
    "fiscal_numbers": [],
    "fiscalization_enabled": False,
    "is_vat_taxation": True,
    "is_excise_taxation": False,
    "address": {"zip_code": "08800", "city_name": "Київ", "content": "вулиця Молодіжна, 195"},
}


class Kasa:
    def __init__(self, shops: int = 2, **cfg: Any) -> None:
        config = SmartKasaSandboxConfig(tenants=[TenantSpec(api_key=KEY, shops=shops)], **cfg)
        self.c = TestClient(create_app(config), client=("127.0.0.1", 50000))
        r = self.c.post(
            "/api/v1/auth/sessions",
            headers={"X-API-KEY": KEY},
            json={"session": {"phone_number": "380960000006", "password": "123456789"}},
        )
        self.h = {"X-API-KEY": KEY, "Authorization": r.json()["data"]["access"]}

    def get(self, path: str, **params: Any) -> Any:
        return self.c.get(f"/api/v1{path}", headers=self.h, params=params)

    def send(self, method: str, path: str, body: Any = None) -> Any:
        return self.c.request(method, f"/api/v1{path}", headers=self.h, json=body)


def test_tenant_is_seeded_with_shops_and_terminals():
    k = Kasa()
    shops = k.get("/rsn/shops").json()["data"]
    assert len(shops) == 2 and all(isinstance(s["id"], int) and s["address"]["city_name"] for s in shops)
    terminals = k.get("/pos/terminals").json()["data"]
    assert sorted(t["shop_id"] for t in terminals) == sorted(s["id"] for s in shops)
    assert all(s["terminals_count"] == 1 for s in shops)


def test_shop_crud_normalizes_phone_on_write():
    k = Kasa()
    r = k.send("POST", "/rsn/shops", {"shop": SHOP})
    shop = r.json()["data"]
    assert r.status_code == 201 and shop["phone_number"] == "380971234567"
    assert shop["address"]["content"] == "вулиця Молодіжна, 195" and shop["address"]["address_type_id"] == 0
    assert k.send("POST", "/rsn/shops", {"shop": {**SHOP, "title": ""}}).json() == {
        "errors": {"title": [{"error": "blank"}]}
    }
    r = k.send(
        "PUT", f"/rsn/shops/{shop['id']}", {"shop": {"title": "New title", "address": {"zip_code": "01001"}}}
    )
    updated = r.json()["data"]
    assert updated["title"] == "New title" and updated["address"]["zip_code"] == "01001"
    assert updated["address"]["content"] == "вулиця Молодіжна, 195"
    assert k.send("DELETE", f"/rsn/shops/{shop['id']}").json() == {"data": {"id": shop["id"]}, "meta": {}}
    assert k.get(f"/rsn/shops/{shop['id']}").json() == {"errors": {"id": [{"error": "invalid"}]}}


@pytest.mark.parametrize(
    ("page", "per_page", "meta_page"),
    [
        (
            1,
            2,
            {
                "current_page": 1,
                "next_page": 2,
                "prev_page": None,
                "total_pages": 3,
                "total_count": 5,
                "limit_value": 2,
                "offset_value": 0,
            },
        ),
        (
            3,
            2,
            {
                "current_page": 3,
                "next_page": None,
                "prev_page": 2,
                "total_pages": 3,
                "total_count": 5,
                "limit_value": 2,
                "offset_value": 4,
            },
        ),
        (
            9,
            2,
            {
                "current_page": 9,
                "next_page": None,
                "prev_page": None,
                "total_pages": 3,
                "total_count": 5,
                "limit_value": 2,
                "offset_value": 16,
            },
        ),
        (
            "x",
            "y",
            {
                "current_page": 1,
                "next_page": None,
                "prev_page": None,
                "total_pages": 1,
                "total_count": 5,
                "limit_value": 25,
                "offset_value": 0,
            },
        ),
    ],
)
def test_kaminari_meta_exactly(page, per_page, meta_page):
    k = Kasa(shops=5)
    r = k.get("/rsn/shops", page=page, per_page=per_page).json()
    assert r["meta"] == meta_page
    assert len(r["data"]) == min(max(0, 5 - meta_page["offset_value"]), meta_page["limit_value"])


def test_optional_silent_cap_on_per_page():
    k = Kasa(shops=5, max_per_page=3)
    r = k.get("/rsn/shops", per_page=100).json()
    assert r["meta"]["limit_value"] == 3 and r["meta"]["next_page"] == 2 and len(r["data"]) == 3


def test_employees_crud_dates_phones_and_pin_quirk():
    k = Kasa()
    body = {
        "first_name": "Віктор",
        "last_name": "Лагойда",
        "phone_number": "0971234567",
        "pin_code": "1123",
        "birthday": "1980-01-01",
        "joined_at": "2012-01-01",
        "address_legal": {"zip_code": "08132", "content": "пр. Нижанківського, 196"},
        "role_id": 999999,
    }
    r = k.send("POST", "/rsn/employees", {"employee": body})
    e = r.json()["data"]
    assert r.status_code == 201 and isinstance(e["id"], int)
    assert e["birthday"] == "1980-01-01T00:00:00.000+00:00" and e["phone_number"] == "380971234567"
    assert e["address_legal"]["address_type_id"] == 1 and "role" not in e
    assert k.get(f"/rsn/employees/{e['id']}").json()["data"]["pin_code"] == "1123"
    r = k.send("PUT", f"/rsn/employees/{e['id']}", {"employee": {"first_name": "New name"}})
    assert r.json()["data"]["first_name"] == "New name" and r.json()["data"]["pin_code"] is None
    assert k.get(f"/rsn/employees/{e['id']}").json()["data"]["pin_code"] == "1123"
    assert k.send("POST", "/rsn/employees", {"employee": {**body, "first_name": ""}}).json() == {
        "errors": {"first_name": [{"error": "blank"}]}
    }
    bad = k.send("POST", "/rsn/employees", {"employee": {**body, "birthday": "soon"}})
    assert bad.status_code == 422 and isinstance(bad.json()["errors"], str)
    assert k.get("/rsn/employees").json()["meta"]["total_count"] == 1
    assert k.send("DELETE", f"/rsn/employees/{e['id']}").json() == {"data": {"id": e["id"]}, "meta": {}}


def test_shops_employees_lists_seeded_staff_with_count_only_meta():
    k = Kasa()
    shop = k.get("/rsn/shops").json()["data"][0]["id"]
    k.c.post(
        "/_admin/seed/employees",
        headers={"X-API-KEY": KEY},
        json={"first_name": "Потап", "last_name": "Майстренко", "role_id": 1, "shop_ids": [shop]},
    )
    r = k.get("/rsn/shops/employees").json()
    assert r["meta"] == {"total_count": 2}
    first = next(s for s in r["data"] if s["id"] == shop)
    assert [e["first_name"] for e in first["employees"]] == ["Потап"]
    assert set(first["employees"][0]) == {"id", "first_name", "last_name", "role_id", "state", "updated_at"}


def test_terminals_put_delete_and_type_errors():
    k = Kasa()
    shops = [s["id"] for s in k.get("/rsn/shops").json()["data"]]
    term = k.get("/pos/terminals", shop_id=shops[0]).json()["data"][0]
    r = k.send(
        "PUT",
        f"/pos/terminals/{term['id']}",
        {"terminal": {"id": term["id"], "name": "N", "shop_id": shops[1]}},
    )
    assert r.json()["data"]["shop_id"] == shops[1] and r.json()["data"]["name"] == "N"
    bad = k.send("PUT", f"/pos/terminals/{term['id']}", {"terminal": {"shop_id": "wrong"}})
    assert bad.status_code == 422 and bad.json() == {
        "errors": '[Pos::TerminalForm.new] "wrong" (String) has invalid type for :shop_id '
        'violates constraints (invalid value for Integer(): "wrong" failed)'
    }
    assert k.send("PUT", f"/pos/terminals/{term['id']}", {"terminal": {"shop_id": 1}}).json() == {
        "errors": {"shop_id": [{"error": "invalid"}]}
    }
    assert k.send("DELETE", f"/pos/terminals/{term['id']}").json()["data"]["id"] == term["id"]
    assert k.send("DELETE", f"/pos/terminals/{term['id']}").json() == {
        "errors": {"id": [{"error": "invalid"}]}
    }
    assert k.send("POST", "/pos/terminals", {"terminal": {}}).status_code == 405
