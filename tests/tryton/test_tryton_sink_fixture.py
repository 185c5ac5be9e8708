"""The seeded Tryton follows the field guide's §4 conventions, and the server survives a kill -9."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from sync.demo.erpgen import cpf_valid, ean13_valid


class Rpc:
    def __init__(self, handle: Any, login: str = "epi") -> None:
        self.url = f"{handle.url}{handle.database}/rpc/"
        user, password = handle.credentials(login)
        answer = httpx.post(
            self.url,
            json={"id": 1, "method": "common.db.login", "params": [user, {"password": password}, "en"]},
            timeout=30,
        ).json()
        uid, key = answer["result"][:2]
        token = base64.b64encode(f"{user}:{uid}:{key}".encode()).decode()
        self.headers = {"Authorization": f"Session {token}"}

    def __call__(self, method: str, *params: Any) -> Any:
        answer = httpx.post(
            self.url,
            json={"id": 2, "method": method, "params": list(params)},
            headers=self.headers,
            timeout=60,
        ).json()
        assert "error" not in answer or answer["error"] is None, answer
        return answer["result"]


def test_seeded_conventions(tryton: Any) -> None:
    rpc = Rpc(tryton)
    roots = rpc("model.party.category.search_read", [["parent", "=", None]], 0, None, None, ["name"], {})
    assert {"Setor", "Cargo", "Grupo"} <= {r["name"] for r in roots}
    analytic = rpc(
        "model.analytic_account.account.search_read", [["type", "=", "root"]], 0, None, None, ["name"], {}
    )
    assert {r["name"] for r in analytic} == {"Centros de Custo", "Rateio"}
    employees = rpc(
        "model.company.employee.search_read",
        [],
        0,
        None,
        [["id", "ASC"]],
        ["party.identifiers.code", "party.identifiers.type", "party.contact_mechanisms.value", "end_date"],
        {"active_test": False},
    )
    assert len(employees) == tryton.manifest["employees"]
    cpfs = [i["code"] for e in employees for i in e["party."]["identifiers."] if i["type"] == "br_cpf"]
    assert len(cpfs) >= len(employees) * 0.9 and all(cpf_valid(c) for c in cpfs)
    assert any(e["end_date"] for e in employees)  # some have left
    ppe = rpc(
        "model.product.product.search_read",
        [["template.categories", "child_of", [tryton.manifest["ppe_root"]], "parent"]],
        0,
        None,
        None,
        ["code", "attributes", "identifiers.code", "quantity"],
        {"locations": [tryton.manifest["warehouses"]["ALM"]["warehouse"]]},
    )
    assert ppe and all({"tamanho", "ca_numero", "ca_validade"} <= set(p["attributes"]) for p in ppe)
    assert all(ean13_valid(i["code"]) for p in ppe for i in p["identifiers."])
    assert sum(p["quantity"] for p in ppe) > 0


def test_shop_catalogue_and_points(tryton: Any) -> None:
    rpc = Rpc(tryton, "kasa")
    m = tryton.manifest
    products = rpc(
        "model.product.product.search_read",
        [["template.categories", "child_of", [m["shop_root"]], "parent"]],
        0,
        None,
        None,
        ["code", "gross_price_used", "template.account_category.name", "default_uom.symbol", "quantity"],
        {"company": m["companies"]["kasa"], "locations": [m["warehouses"]["KYIV"]["warehouse"]]},
    )
    assert len(products) == m["shop_products"]
    assert all(p["code"].startswith("UA-") and p["gross_price_used"] for p in products)
    assert {p["default_uom."]["symbol"] for p in products} == {"u", "kg"}
    points = rpc("model.sale.point.search_read", [], 0, None, None, ["name"], {})
    assert {p["name"] for p in points} == {"Каса KYIV", "Каса LVIV"}


def test_kill_and_restart(tryton_fresh: Any) -> None:
    assert Rpc(tryton_fresh)("model.company.employee.search_count", [], {}) > 0
    tryton_fresh.kill()
    try:
        Rpc(tryton_fresh)
    except httpx.HTTPError:
        pass
    else:
        raise AssertionError("the killed server still answered")
    tryton_fresh.restart()
    assert Rpc(tryton_fresh)("model.company.employee.search_count", [], {}) > 0
