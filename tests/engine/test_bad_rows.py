"""Bad ERP rows are set aside at the smallest unit, and the run still settles.

Against the in-process sandboxes (issue 14 items 5 and 8, issue 19 item 3):

- a product's sizes ``M`` and ``m`` are one size (child keys fold case like natural keys):
  both rows are set aside, the product syncs with its other sizes; a size without a name
  and a stock card whose count is ``n/a`` are set aside alone too, and the platform's
  entries are never removed because of them;
- a cost center the platform rejects at apply (409 duplicate) quarantines the employees
  that reference it as ``reference_quarantined`` in the same apply, and the next plan is
  empty instead of deferring them on every run;
- a 400 "invalid field" to one employee's write (SmartEPI §2.5) quarantines that row with
  the field, the run goes on, and the next run does not send it again;
- an ERP key over 255 characters and a lone surrogate in a JSONL export are quarantined
  (``key_too_long``, ``invalid_text``) on SQLite and PostgreSQL, and the other rows sync.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from apply_helpers import MakePlayground

from sync.engine.api import Engine
from sync.state.store import StateStore


def _erp(pg: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(pg.erp_path) as conn:
        rows = conn.execute(sql, params).fetchall()
    return rows


def _quarantine(pg: Any, engine: Engine) -> dict[tuple[str, str], Any]:
    return {(q.entity, q.erp_key): q for q in engine.store.quarantined(pg.tenant)}


def _epi_product(pg: Any, code: str) -> dict[str, Any]:
    (found,) = [p for p in pg.epi_state()["products"] if p.get("code") == code and not p.get("_deleted")]
    return dict(found)


def _sizes(product: dict[str, Any]) -> list[str]:
    return sorted(s["name"] for s in product.get("sizes") or [])


def test_child_rows_are_set_aside_alone_and_never_delete_platform_entries(playground: MakePlayground) -> None:
    pg = playground("children", employees=10, products_epi=4, products_kasa=4, seed=3)
    stamp = "2024-07-01 00:00:00"
    sizes = dict(_erp(pg, "SELECT produto, group_concat(tamanho, '|') FROM epi_tamanhos GROUP BY produto"))
    first, second = sorted(sizes)[:2]
    assert "M" in sizes[first].split("|")
    # A new product: "m" is the same size as "M", and one size has no name.
    _erp(pg, "INSERT INTO epi_tamanhos (produto, tamanho, updated_at) VALUES (?, 'm', ?)", first, stamp)
    _erp(pg, "INSERT INTO epi_tamanhos (produto, tamanho, updated_at) VALUES (?, '  ', ?)", first, stamp)
    ((sku, shop),) = _erp(pg, "SELECT sku, shop_code FROM kasa_stock ORDER BY id LIMIT 1")
    other_cards = _erp(pg, "SELECT count(*) FROM kasa_stock WHERE sku = ? AND shop_code <> ?", sku, shop)[0][
        0
    ]
    _erp(pg, "UPDATE kasa_stock SET qty = 'n/a' WHERE sku = ? AND shop_code = ?", sku, shop)

    engine = Engine(pg.settings())
    summary = engine.apply()
    assert summary.status == "ok", summary.counts

    # The products reached the platforms with their other children.
    expected = sorted(s for s in sizes[first].split("|") if s != "M")
    assert _sizes(_epi_product(pg, first)) == expected
    kasa = {p["id"]: p for p in pg.kasa_state()["products"]}
    (product,) = [p for p in kasa.values() if p.get("alter_number") == sku]  # alter_number: sku
    cards = [c for c in pg.kasa_state().get("cards", []) if str(c["product_id"]) == str(product["id"])]
    assert len(cards) == other_cards
    q = _quarantine(pg, engine)
    entry = q[("products", first)]
    assert entry.rule == "duplicate_child_key" and entry.field == "sizes.name"
    assert (
        "sizes row" in entry.message and "'M' / 'm'" in entry.message and "(name: required" in entry.message
    )
    card = q[("products", sku)]
    assert card.field == "cards.count" and card.rule == "type" and "cards row" in card.message

    # Nothing left to do: the set-aside rows are neither created nor "missing" on the platform.
    assert engine.plan().actions == []

    # On records already on the platforms, set-aside rows change nothing there: the
    # platform's size "M" (now clashing with a new "m") and the card whose count became
    # "n/a" stay as they are, and no plan wants to remove them.
    assert "M" in sizes[second].split("|")
    _erp(pg, "INSERT INTO epi_tamanhos (produto, tamanho, updated_at) VALUES (?, 'm', ?)", second, stamp)
    ((sku2, shop2, qty2),) = _erp(
        pg, "SELECT sku, shop_code, qty FROM kasa_stock WHERE sku <> ? ORDER BY id LIMIT 1", sku
    )
    cards_before = pg.kasa_state()["cards"]
    _erp(pg, "UPDATE kasa_stock SET qty = 'n/a' WHERE sku = ? AND shop_code = ?", sku2, shop2)
    assert engine.plan().actions == []
    assert engine.apply().status == "ok"
    assert _sizes(_epi_product(pg, second)) == sorted(sizes[second].split("|"))
    assert pg.kasa_state()["cards"] == cards_before
    assert _quarantine(pg, engine)[("products", sku2)].rule == "type"

    # Fixed in the ERP, the rows sync: "M" is added to the first product, the card created.
    _erp(pg, "DELETE FROM epi_tamanhos WHERE tamanho IN ('m', '  ')")
    _erp(pg, "UPDATE kasa_stock SET qty = '5' WHERE sku = ? AND shop_code = ?", sku, shop)
    _erp(pg, "UPDATE kasa_stock SET qty = ? WHERE sku = ? AND shop_code = ?", qty2, sku2, shop2)
    assert {a.erp_key for a in engine.plan().actions} == {first, sku}
    assert engine.apply().status == "ok"
    assert _sizes(_epi_product(pg, first)) == sorted(sizes[first].split("|"))
    cards = [c for c in pg.kasa_state()["cards"] if str(c["product_id"]) == str(product["id"])]
    assert len(cards) == other_cards + 1
    assert engine.plan().actions == []
    assert not {("products", first), ("products", sku), ("products", sku2)} & set(_quarantine(pg, engine))


def _problem(request: httpx.Request, status: int, token: str, detail: str) -> httpx.Response:
    """A SmartEPI application error (problem+json, contract §2.5)."""
    problem = {"type": f"urn:smartepi:error:{token}", "title": token, "status": status, "detail": detail}
    return httpx.Response(
        status, json=problem, headers={"content-type": "application/problem+json"}, request=request
    )


class _DuplicateCode(httpx.AsyncBaseTransport):
    """A strict SmartEPI: cost center ``code`` is unique too, so this one answers 409."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/cost-centers"):
            body = json.loads(request.content or b"{}")
            if body.get("code") == self.code:
                return _problem(request, 409, "duplicate_code", "A record with this code already exists")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_reference_rejected_at_apply_quarantines_dependents_and_settles(playground: MakePlayground) -> None:
    pg = playground("ref409", employees=40, products_epi=2, products_kasa=2, seed=5)
    counts = _erp(
        pg,
        "SELECT f.centro_custo, count(*) FROM funcionarios f JOIN centros_custo c "
        "ON c.codigo = f.centro_custo WHERE c.ativo = 1 GROUP BY 1 ORDER BY 2 DESC",
    )
    code = counts[0][0]
    dependents = {
        k
        for (k,) in _erp(
            pg, "SELECT matricula FROM funcionarios WHERE centro_custo = ? OR centro_custo_2 = ?", code, code
        )
    }
    assert dependents

    def engine() -> Engine:
        return Engine(pg.settings(), transports={"smartepi": _DuplicateCode(code)})

    first = engine().apply()
    assert first.status == "partial", first.counts  # rejected rows: partial (#16.6), not deferred
    assert first.counts.get("smartepi/employees/create/deferred") is None
    store = StateStore(pg.settings().state_url)
    held = {(q.entity, q.erp_key): q for q in store.quarantined(pg.tenant)}
    assert held[("cost_centers", code)].stage == "apply"
    for key in dependents:
        q = held[("employees", key)]
        assert q.rule == "reference_quarantined" and code in q.message

    plan = engine().plan()
    assert plan.actions == []
    rules = {(q.entity, q.erp_key): q.rule for q in plan.quarantine}
    assert all(rules[("employees", k)] == "reference_quarantined" for k in dependents)
    second = engine().apply()
    assert second.status == "ok" and second.writes() == 0

    # The platform takes the code again (the clash was resolved there): once the cost
    # center's ERP row changes it is created, and its employees follow in the same apply.
    _erp(pg, "UPDATE centros_custo SET nome = nome || ' (novo)' WHERE codigo = ?", code)
    third = Engine(pg.settings()).apply()
    assert third.status == "ok", third.counts
    assert Engine(pg.settings()).plan().actions == []
    left = {(q.entity, q.erp_key) for q in store.quarantined(pg.tenant)}
    assert not left & ({("employees", k) for k in dependents} | {("cost_centers", code)})


def _export_jsonl(pg: Any, folder: Path) -> dict[str, Any]:
    """The playground's ERP as one JSONL file per table (a files source)."""
    folder.mkdir()
    entities = {}
    with sqlite3.connect(pg.erp_path) as conn:
        conn.row_factory = sqlite3.Row
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            with (folder / f"{table}.jsonl").open("w", encoding="utf-8") as fh:
                for row in conn.execute(f"SELECT * FROM {table}"):  # table names from the db itself
                    fh.write(json.dumps(dict(row)) + "\n")
            entities[table] = {"path": f"{table}.jsonl", "format": "jsonl"}
    return {"kind": "files", "directory": str(folder), "entities": entities}


def test_long_key_and_lone_surrogate_are_quarantined(
    playground: MakePlayground, state_url: str, tenant_id: str, tmp_path: Path
) -> None:
    pg = playground("badkeys", employees=20, products_epi=2, products_kasa=2, seed=8, tenant=tenant_id)
    cfg = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    cfg["state_url"] = state_url
    source = _export_jsonl(pg, tmp_path / "export")
    cfg["tenants"][pg.tenant]["erp"] = source
    pg.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    long_key = "K" * 300
    row = json.loads((tmp_path / "export/funcionarios.jsonl").read_text(encoding="utf-8").splitlines()[0])
    bad_rows = [
        {**row, "matricula": long_key, "cpf": "98765432100", "email": "long@example.com"},
        {
            **row,
            "matricula": "SURR-1",
            "nome": "Ana \udcff Silva",
            "cpf": "98765432101",
            "email": "s@example.com",
        },
        {**row, "matricula": "SURR-\udcff", "cpf": "98765432102", "email": "k@example.com"},
    ]
    with (tmp_path / "export/funcionarios.jsonl").open("a", encoding="utf-8") as fh:
        for bad in bad_rows:
            fh.write(json.dumps(bad) + "\n")  # ensure_ascii: the surrogate is written as "\udcff"

    engine = Engine(pg.settings())
    summary = engine.apply()
    assert summary.status == "ok", summary.counts
    held = {(q.entity, q.rule): q for q in engine.store.quarantined(pg.tenant)}
    too_long = held[("employees", "key_too_long")]
    assert len(too_long.erp_key) <= 255 and too_long.erp_key.startswith("K" * 200)
    assert "300 characters" in too_long.message
    text = held[("employees", "invalid_text")]
    assert text.erp_key in ("SURR-1", "SURR-\\udcff")
    rules = {q.erp_key: q.rule for q in engine.store.quarantined(pg.tenant)}
    assert rules["SURR-1"] == "invalid_text" and rules["SURR-\\udcff"] == "invalid_text"
    employees = [e for e in pg.epi_state()["employees"] if not e.get("_deleted")]
    assert len(employees) == 20  # every good row synced
    assert engine.plan().actions == []
    assert engine.apply().status == "ok"


class _BadFieldOnWrite(httpx.AsyncBaseTransport):
    """A strict SmartEPI that answers 400 "invalid field" (contract §2.5) to one employee's write."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inner = httpx.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method in ("POST", "PUT") and "/employees" in request.url.path:
            body = json.loads(request.content or b"{}")
            if body.get("name") == self.name:
                self.refused += 1
                return _problem(
                    request, 400, "bad_request", "name: contains characters the platform does not accept"
                )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_400_naming_a_field_quarantines_the_row_and_is_not_resent_every_run(
    playground: MakePlayground,
) -> None:
    pg = playground("bad400", employees=12, products_epi=2, products_kasa=2, seed=9)
    ((key, name),) = _erp(pg, "SELECT matricula, nome FROM funcionarios ORDER BY matricula LIMIT 1")
    strict = _BadFieldOnWrite(name)

    first = Engine(pg.settings(), transports={"smartepi": strict}).apply()
    assert first.status == "partial", first.counts  # the run went on (#16.6: rows need attention)
    assert first.counts.get("smartepi/employees/create/failed") is None
    q = _quarantine(pg, Engine(pg.settings()))[("employees", key)]
    assert (q.field, q.rule, q.stage) == ("name", "platform_rejected", "apply")
    assert "contains characters" in q.message
    others = {e["identification"] for e in pg.epi_state()["employees"] if not e.get("_deleted")}
    assert len(others) == 11  # every other employee was created

    refused = strict.refused
    again = Engine(pg.settings(), transports={"smartepi": strict}).apply()
    assert again.writes() == 0 and strict.refused == refused  # held until the ERP row changes


@pytest.mark.parametrize("null_on_update", ["clears", "ignored", "rejected"])
def test_an_erp_field_cleared_is_cleared_or_held_never_resent_every_run(
    playground: MakePlayground, null_on_update: str
) -> None:
    """How to clear a field on SmartEPI is undocumented (§2.6 "no blanking"). erpsync sends
    null; a server that ignores it (or refuses it with a 400) keeps the e-mail: the row's
    other changes are still written, and the row is held with rule ``not_cleared`` instead of
    an update on every run."""
    pg = playground(f"clear-{null_on_update}", employees=8, products_epi=2, products_kasa=2, seed=4)
    ((key, email),) = _erp(
        pg, "SELECT matricula, email FROM funcionarios WHERE email IS NOT NULL ORDER BY matricula LIMIT 1"
    )
    assert Engine(pg.settings()).apply().status == "ok"
    pg.epi_admin("PATCH", "/strictness", json={"null_on_update": null_on_update})
    _erp(pg, "UPDATE funcionarios SET email = NULL, nome = nome || ' Jr' WHERE matricula = ?", key)

    first = Engine(pg.settings()).apply()
    (employee,) = [e for e in pg.epi_state()["employees"] if e.get("name", "").endswith(" Jr")]
    assert employee["name"].endswith(" Jr")  # the other change is written in every case
    held = {(q.entity, q.erp_key): q for q in StateStore(pg.settings().state_url).quarantined(pg.tenant)}
    if null_on_update == "clears":
        assert first.status == "ok" and not employee.get("email")
        assert ("employees", key) not in held
    else:
        assert first.status == "partial", first.counts
        assert employee["email"] == email.lower()
        q = held[("employees", key)]
        assert (q.rule, q.field, q.stage) == ("not_cleared", "email", "apply")
        assert "clear it on the platform" in q.message
        assert email.lower() not in q.message.lower()  # personal data stays out of the reason
    second = Engine(pg.settings()).apply()
    assert second.writes() == 0, second.counts  # nothing is sent again
