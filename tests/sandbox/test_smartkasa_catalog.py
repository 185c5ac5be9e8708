"""SmartKasa sandbox catalog: categories, subgroups, products, cards, unit types (§5, §9.2–9.4)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec

KEY = "c" * 32
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
ID_INVALID = {"errors": {"id": [{"error": "invalid"}]}}


class Kasa:
    def __init__(self, **cfg: Any) -> None:
        config = SmartKasaSandboxConfig(tenants=[TenantSpec(api_key=KEY)], **cfg)
        self.c = TestClient(create_app(config), client=("127.0.0.1", 50000))
        creds = {"phone_number": "380960000006", "password": "123456789"}
        body = creds if cfg.get("body_style") == "plain" else {"session": creds}
        r = self.c.post("/api/v1/auth/sessions", headers={"X-API-KEY": KEY}, json=body)
        self.h = {"X-API-KEY": KEY, "Authorization": r.json()["data"]["access"]}
        self.shops = [s["id"] for s in self.get("/rsn/shops").json()["data"]]

    def get(self, path: str, **params: Any) -> Any:
        return self.c.get(f"/api/v1{path}", headers=self.h, params=params)

    def send(self, method: str, path: str, body: Any = None) -> Any:
        return self.c.request(method, f"/api/v1{path}", headers=self.h, json=body)

    def product(self, **fields: Any) -> str:
        r = self.send("POST", "/inventory/products", {"product": {"title": "Товар", "price": 10, **fields}})
        assert r.status_code == 201, r.text
        return str(r.json()["data"]["id"])


@pytest.fixture
def kasa() -> Kasa:
    return Kasa()


# --- categories -----------------------------------------------------------------------------


def test_category_create_ignores_color_and_stores_color_id(kasa):
    r = kasa.send("POST", "/inventory/categories", {"category": {"title": "Напої", "color": 2}})
    assert r.status_code == 201
    data = r.json()["data"]
    assert data["color_id"] is None and data["parent_id"] is None and data["shop_ids"] == []
    assert set(data) == {
        "id",
        "color_id",
        "created_at",
        "parent_id",
        "partner_id",
        "products_count",
        "shop_ids",
        "title",
        "updated_at",
    }
    assert re.fullmatch(r"[0-9a-f-]{36}", data["id"]) and TS.match(data["created_at"])
    r = kasa.send("PUT", f"/inventory/categories/{data['id']}", {"category": {"color_id": 3}})
    assert r.json()["data"]["color_id"] == 3 and r.json()["data"]["title"] == "Напої"  # PUT merges


def test_category_parent_must_exist_and_title_must_not_be_blank(kasa):
    r = kasa.send("POST", "/inventory/categories", {"category": {"title": "x", "parent_id": "0" * 36}})
    assert r.status_code == 422 and r.json() == {"errors": {"parent_id": [{"error": "invalid"}]}}
    r = kasa.send("POST", "/inventory/categories", {"category": {"title": "  "}})
    assert r.json() == {"errors": {"title": [{"error": "blank"}]}}
    parent = kasa.send("POST", "/inventory/categories", {"category": {"title": "P"}}).json()["data"]["id"]
    child = kasa.send("POST", "/inventory/categories", {"category": {"title": "C", "parent_id": parent}})
    assert child.json()["data"]["parent_id"] == parent


def test_category_batch_create_returns_full_objects_in_order_and_terse_422(kasa):
    body = {"batch": {"categories": [{"title": f"T{i}", "color": 2} for i in range(3)]}}
    r = kasa.send("POST", "/inventory/categories/batch", body)
    assert r.status_code == 201 and [c["title"] for c in r.json()["data"]] == ["T0", "T1", "T2"]
    bad = kasa.send(
        "POST", "/inventory/categories/batch", {"batch": {"categories": [{"title": "ok"}, {"title": ""}]}}
    )
    assert bad.status_code == 422 and bad.json() == {"errors": {"categories": [{"error": "invalid"}]}}
    assert kasa.get("/inventory/categories").json()["meta"]["total_count"] == 3  # nothing from the bad batch


def test_category_delete_and_batch_delete_return_full_objects(kasa):
    ids = [
        c["id"]
        for c in kasa.send(
            "POST",
            "/inventory/categories/batch",
            {"batch": {"categories": [{"title": f"T{i}"} for i in range(3)]}},
        ).json()["data"]
    ]
    pid = kasa.product(category_id=ids[0])
    r = kasa.send("DELETE", f"/inventory/categories/{ids[0]}")
    assert (
        r.status_code == 200 and r.json()["data"]["id"] == ids[0] and r.json()["data"]["products_count"] == 1
    )
    assert kasa.get(f"/inventory/products/{pid}").json()["data"]["category_id"] is None
    r = kasa.send("DELETE", "/inventory/categories/batch", {"batch": {"ids": [*ids[1:], "0" * 36]}})
    assert [c["id"] for c in r.json()["data"]] == ids[1:]
    assert kasa.send("DELETE", f"/inventory/categories/{ids[1]}").json() == ID_INVALID


def test_category_list_carries_partner_and_kaminari_meta(kasa):
    kasa.send("POST", "/inventory/categories", {"category": {"title": "A"}})
    r = kasa.get("/inventory/categories")
    assert r.json()["meta"] == {
        "current_page": 1,
        "next_page": None,
        "prev_page": None,
        "total_pages": 1,
        "total_count": 1,
        "limit_value": 25,
        "offset_value": 0,
    }
    assert "partner" in r.json()["data"][0]


# --- products -------------------------------------------------------------------------------


def test_product_post_and_patch_return_id_only_and_get_embeds(kasa):
    cat = kasa.send("POST", "/inventory/categories", {"category": {"title": "C"}}).json()["data"]["id"]
    r = kasa.send(
        "POST",
        "/inventory/products",
        {
            "product": {
                "title": "Кава",
                "price": 71.89,
                "number": "123",
                "procurement_price": 50.0,
                "category_id": cat,
                "tax_group_id": 1,
                "user_id": 1,
                "owner_id": 2,
            }
        },
    )
    assert r.status_code == 201 and set(r.json()["data"]) == {"id"} and r.json()["meta"] == {}
    pid = r.json()["data"]["id"]
    kasa.send("POST", "/inventory/cards", {"card": {"product_id": pid, "shop_id": kasa.shops[0], "count": 5}})
    one = kasa.get(f"/inventory/products/{pid}").json()["data"]
    assert one["price"] == "71.89" and one["procurement_price"] == "50.0"
    assert one["tax_amount"] == {"А": 1198}  # VAT 20% included, in kopecks, Cyrillic key
    assert one["owner_id"] != 2 and one["user_id"] != 1  # derived from the session, not the body
    assert [c["count"] for c in one["cards"]] == ["5.0"] and one["category"]["id"] == cat
    assert "category_type" in one and not {"partner", "stock", "subgroup_title"} & set(one)
    listed = kasa.get("/inventory/products").json()["data"][0]
    assert {"partner", "partner_id", "partner_title", "stock", "subgroup_title"} <= set(listed)
    assert listed["stock"] == {} and "cards" not in listed
    r = kasa.send("PATCH", f"/inventory/products/{pid}", {"product": {"id": pid, "price": "80"}})
    assert r.json() == {"data": {"id": pid}, "meta": {}}
    after = kasa.get(f"/inventory/products/{pid}").json()["data"]
    assert after["price"] == "80.0" and after["title"] == "Кава" and after["updated_at"] >= one["updated_at"]


def test_products_have_no_put(kasa):
    pid = kasa.product()
    r = kasa.send("PUT", f"/inventory/products/{pid}", {"product": {"title": "x"}})
    assert r.status_code == 405 and r.json() == {"message": "Method Not Allowed"}


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"title": ""}, {"title": [{"error": "blank"}]}),
        ({"price": None}, {"price": [{"error": "blank"}]}),
        ({"category_id": "nope"}, {"category_id": [{"error": "invalid"}]}),
        ({"subgroup_id": 1}, {"subgroup_id": [{"error": "invalid"}]}),
    ],
)
def test_product_validation_shape_a(kasa, fields, errors):
    r = kasa.send("POST", "/inventory/products", {"product": {"title": "t", "price": 1, **fields}})
    assert r.status_code == 422 and r.json() == {"errors": errors}


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("price", "wrong", 'invalid value for Float(): "wrong"'),
        ("tax_group_id", "x", 'invalid value for Integer(): "x"'),
        ("title", 5, "type?(String, 5)"),
        ("sold_by_weight", "maybe", 'type?(Bool, "maybe")'),
    ],
)
def test_wrong_json_types_give_string_errors(kasa, field, value, reason):
    r = kasa.send("POST", "/inventory/products", {"product": {"title": "t", "price": 1, field: value}})
    assert r.status_code == 422
    text = r.json()["errors"]
    assert isinstance(text, str) and text.startswith("[Inventory::ProductForm.new] ")
    assert f"has invalid type for :{field} violates constraints ({reason} failed)" in text


def test_product_filters(kasa):
    cat = kasa.send("POST", "/inventory/categories", {"category": {"title": "C"}}).json()["data"]["id"]
    sub = kasa.send("POST", "/inventory/product_subgroups", {"subgroup": {"title": "S"}}).json()["data"]["id"]
    a = kasa.product(title="Сік яблучний", number="4820001", category_id=cat, alter_number="ART-7")
    b = kasa.product(title="Вода", number="48200011", subgroup_id=sub)
    kasa.send("POST", "/inventory/cards", {"card": {"product_id": b, "shop_id": kasa.shops[1]}})

    def ids(**params: Any) -> list[str]:
        return [p["id"] for p in kasa.get("/inventory/products", **params).json()["data"]]

    assert ids(number="4820001") == [a]  # exact by default
    assert ids(category_id=cat) == [a] and ids(subgroup_id=sub) == [b] and ids(shop_id=kasa.shops[1]) == [b]
    assert ids(q="ЯБЛУЧ") == [a] and ids(q="art-7") == [a] and ids(q="4820001") == [a, b]
    listed = kasa.get("/inventory/products").json()["data"]
    assert [p["subgroup_title"] for p in listed] == [None, "S"]


def test_partial_number_match_setting():
    k = Kasa(number_match="partial")
    a = k.product(number="4820001")
    assert [p["id"] for p in k.get("/inventory/products", number="482").json()["data"]] == [a]


def test_batch_create_validates_all_first_and_answers_shape_b(kasa):
    good = {"title": "ok", "price": 1}
    r = kasa.send(
        "POST", "/inventory/products/batch", {"batch": {"products": [good, {"title": "", "price": 1}]}}
    )
    assert r.status_code == 422
    assert r.json() == {
        "errors": {"products": [{"error": "invalid", "messages": "title: Не може бути пустим"}]}
    }
    assert kasa.get("/inventory/products").json()["meta"]["total_count"] == 0


def test_batch_partial_mode_creates_the_valid_rows_but_still_answers_422():
    k = Kasa(batch_mode="partial")
    r = k.send("POST", "/inventory/products/batch", {"products": [{"title": "a", "price": 1}, {"price": 1}]})
    assert r.status_code == 422
    assert [p["title"] for p in k.get("/inventory/products").json()["data"]] == ["a"]


def test_batch_ids_follow_input_order_with_duplicate_numbers_allowed(kasa):
    rows = [{"title": f"P{i}", "price": i + 1, "number": "6930426566"} for i in range(5)]
    r = kasa.send("POST", "/inventory/products/batch", {"batch": {"products": rows}})
    assert r.status_code == 201
    ids = [x["id"] for x in r.json()["data"]]
    titles = [kasa.get(f"/inventory/products/{i}").json()["data"]["title"] for i in ids]
    assert titles == [f"P{i}" for i in range(5)]


def test_batch_ids_can_be_shuffled_to_test_client_verification():
    k = Kasa(batch_order="shuffled", seed=3)
    rows = [{"title": f"P{i}", "price": 1} for i in range(12)]
    ids = [
        x["id"]
        for x in k.send("POST", "/inventory/products/batch", {"batch": {"products": rows}}).json()["data"]
    ]
    titles = [k.get(f"/inventory/products/{i}").json()["data"]["title"] for i in ids]
    assert sorted(titles) == sorted(f"P{i}" for i in range(12)) and titles != [f"P{i}" for i in range(12)]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (422, {"errors": {"products": [{"error": "too_long"}]}}),
        (413, {"message": "Payload Too Large"}),
        (400, {"errors": {"products": [{"error": "too_long"}]}}),
    ],
)
def test_max_batch(status, body):
    k = Kasa(max_batch=2, max_batch_status=status)
    r = k.send("POST", "/inventory/products/batch", {"batch": {"products": [{"title": "a", "price": 1}] * 3}})
    assert (r.status_code, r.json()) == (status, body)
    assert k.send(
        "POST", "/inventory/products/batch", {"batch": {"products": [{"title": "a", "price": 1}] * 2}}
    )


def test_reject_duplicate_number_setting():
    k = Kasa(reject_duplicate_number=True)
    k.product(number="1")
    r = k.send("POST", "/inventory/products", {"product": {"title": "t", "price": 1, "number": "1"}})
    assert r.json() == {"errors": {"number": [{"error": "taken"}]}}
    r = k.send(
        "POST", "/inventory/products/batch", {"products": [{"title": "a", "price": 1, "number": "2"}] * 2}
    )
    assert (
        r.status_code == 422
        and r.json()["errors"]["products"][0]["messages"] == "number: Вже використовується"
    )


@pytest.mark.parametrize(
    ("mode", "value", "name"), [("code", 2009, "шт"), ("code", 4, None), ("id", 4, "шт"), ("code", 0, None)]
)
def test_unit_type_id_interpretation(mode, value, name):
    k = Kasa(unit_type_mode=mode)
    pid = k.product(unit_type_id=value)
    assert k.get(f"/inventory/products/{pid}").json()["data"]["unit_type_name"] == name


def test_product_delete_and_batch_delete(kasa):
    ids = [kasa.product() for _ in range(3)]
    kasa.send("POST", "/inventory/cards", {"card": {"product_id": ids[0], "shop_id": kasa.shops[0]}})
    assert kasa.send("DELETE", f"/inventory/products/{ids[0]}").json() == {"data": {"id": ids[0]}, "meta": {}}
    assert kasa.get("/inventory/cards").json()["meta"] == {"total_count": 0}
    r = kasa.send("DELETE", "/inventory/products/batch", {"batch": {"ids": ids[1:]}})
    assert r.json()["data"] == [{"id": i} for i in ids[1:]]
    assert kasa.get(f"/inventory/products/{ids[1]}").json() == ID_INVALID


def test_unknown_ids_are_422_or_404_by_setting(kasa):
    assert kasa.send("PATCH", "/inventory/products/nope", {"product": {}}).json() == ID_INVALID
    assert kasa.send("PUT", "/inventory/cards/abc", {"card": {}}).json() == ID_INVALID
    k = Kasa(unknown_id_status=404)
    r = k.get("/inventory/products/nope")
    assert (r.status_code, r.json()) == (404, {"message": "Not Found"})


@pytest.mark.parametrize("style", ["wrapped", "plain"])
def test_body_style_strictness(style):
    k = Kasa(body_style=style)
    wrapped = k.send("POST", "/inventory/products", {"product": {"title": "t", "price": 1}})
    plain = k.send("POST", "/inventory/products", {"title": "t", "price": 1})
    if style == "wrapped":
        assert wrapped.status_code == 201 and plain.status_code == 400
    else:  # the wrapper is an unknown attribute, silently dropped, so the title is blank
        assert plain.status_code == 201 and wrapped.json()["errors"]["title"] == [{"error": "blank"}]


def test_malformed_json_never_gives_fastapi_422_or_500(kasa):
    r = kasa.c.post(
        "/api/v1/inventory/products", headers=kasa.h | {"content-type": "application/json"}, content=b"{nope"
    )
    assert r.status_code == 400 and r.json() == {"errors": {"base": [{"error": "invalid_json"}]}}
    for body in ([1, 2], "text", {"product": [1]}, {"batch": {"products": "x"}}):
        r = kasa.send("POST", "/inventory/products/batch", body)
        assert r.status_code == 422 and "errors" in r.json()
    assert kasa.send("POST", "/inventory/products/batch", {"products": [1]}).status_code == 422


# --- subgroups, cards, unit types -----------------------------------------------------------


def test_subgroups_crud_with_integer_ids_and_count_only_meta(kasa):
    r = kasa.send("POST", "/inventory/product_subgroups", {"subgroup": {"title": "S"}})
    sub = r.json()["data"]
    assert (
        r.status_code == 201
        and isinstance(sub["id"], int)
        and set(sub) == {"id", "created_at", "title", "updated_at"}
    )
    assert kasa.send("POST", "/inventory/product_subgroups", {"subgroup": {"title": ""}}).status_code == 422
    assert (
        kasa.send("PUT", f"/inventory/product_subgroups/{sub['id']}", {"subgroup": {"title": "S2"}}).json()[
            "data"
        ]["title"]
        == "S2"
    )
    assert kasa.get("/inventory/product_subgroups").json()["meta"] == {"total_count": 1}
    pid = kasa.product(subgroup_id=sub["id"])
    assert kasa.send("DELETE", f"/inventory/product_subgroups/{sub['id']}").json()["data"]["title"] == "S2"
    assert kasa.get(f"/inventory/products/{pid}").json()["data"]["subgroup_id"] is None


def test_cards_one_per_product_and_shop(kasa):
    pid = kasa.product()
    r = kasa.send(
        "POST",
        "/inventory/cards",
        {"card": {"product_id": pid, "shop_id": kasa.shops[0], "count": 5.0, "counting_enabled": True}},
    )
    card = r.json()["data"]
    assert (
        r.status_code == 201
        and card["count"] == "5.0"
        and card["owner_id"] is None
        and isinstance(card["id"], int)
    )
    dup = kasa.send("POST", "/inventory/cards", {"card": {"product_id": pid, "shop_id": kasa.shops[0]}})
    assert dup.json() == {"errors": {"product_id": [{"error": "invalid"}]}}  # the contract's example
    unknown = kasa.send(
        "POST", "/inventory/cards", {"card": {"product_id": "0" * 36, "shop_id": kasa.shops[0]}}
    )
    assert unknown.json() == {"errors": {"product_id": [{"error": "invalid"}]}}
    r = kasa.send("PUT", f"/inventory/cards/{card['id']}", {"card": {"id": card["id"], "count": 9.99}})
    assert r.json() == {"data": {"id": card["id"]}, "meta": {}}
    bad = kasa.send("PUT", f"/inventory/cards/{card['id']}", {"card": {"product_id": "wrong"}})
    assert bad.json() == {"errors": {"product_id": [{"error": "invalid"}]}}
    one = kasa.get(f"/inventory/cards/{card['id']}").json()["data"]
    assert one["count"] == "9.99" and one["product"]["id"] == pid and "address" not in one["shop"]
    kasa.send("POST", "/inventory/cards", {"card": {"product_id": pid, "shop_id": kasa.shops[1], "count": 1}})
    listed = kasa.get("/inventory/cards", shop_id=kasa.shops[1]).json()
    assert listed["meta"] == {"total_count": 1} and listed["data"][0]["shop_id"] == kasa.shops[1]
    assert kasa.send("DELETE", f"/inventory/cards/{card['id']}").json() == {
        "data": {"id": card["id"]},
        "meta": {},
    }


def test_unit_types_full_list(kasa):
    r = kasa.get("/inventory/unit_types").json()
    assert r["meta"] == {"total_count": 11}
    assert {(u["id"], u["code"], u["short_name"]) for u in r["data"]} >= {(4, 2009, "шт"), (12, 175, "год")}
    assert all(u["is_visible"] for u in r["data"])


def test_import_requires_url_and_category(kasa):
    r = kasa.send("POST", "/inventory/import_products", {"import": {}})
    assert r.json() == {"errors": {"url": [{"error": "blank"}], "category_id": [{"error": "blank"}]}}
    cat = kasa.send("POST", "/inventory/categories", {"category": {"title": "C"}}).json()["data"]["id"]
    r = kasa.send(
        "POST", "/inventory/import_products", {"import": {"url": "https://x/y/file.json", "category_id": cat}}
    )
    job = r.json()["data"]
    assert r.status_code == 201 and job["filename"] == "file.json" and job["state"] == 0
    assert kasa.get(f"/inventory/import_products/{job['id']}").json()["data"]["results"] == {}
