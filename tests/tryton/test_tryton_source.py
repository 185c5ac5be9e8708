"""Tryton as the ERP source, against a real trytond (tests/tryton/conftest.py) and both sandboxes.

The shipped mappings (mappings/tryton-*.yaml) over the field guide's conventions: the first
apply converges (the plan after it is empty), an e-mail edited alone (the contact mechanism,
no employee write) is seen by the change poll and reaches SmartEPI, an archived or deleted
record is caught by a full reconcile, a console edit flows back into Tryton without ever
overwriting a concurrent edit made there, and a value Tryton refuses fails that row only,
with Tryton's own message.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync import celery_app, tasks
from sync.cli import app
from sync.clients.tryton import SyncTrytonClient, TrytonConcurrencyError, TrytonWarning
from sync.playground import Playground, start_playground
from sync.sources.config import TrytonSourceConfig
from sync.sources.tryton import TrytonSource
from sync.state.store import StateStore

REPO = Path(__file__).resolve().parents[2]
LOGINS = {"smartepi": "epi", "smartkasa": "kasa"}


class Cli:
    """`erpsync …` in-process against one playground; no secret may reach the output."""

    def __init__(self, pg: Playground, secrets: list[str]) -> None:
        self.pg = pg
        self.runner = CliRunner()
        self.secrets = [pg.epi_key, pg.kasa_key, *pg.env.values(), *secrets]

    def __call__(self, *args: str) -> Result:
        result = self.runner.invoke(
            app, list(args), env={"ERPSYNC_CONFIG": str(self.pg.config_path), "COLUMNS": "240"}
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        for secret in self.secrets:
            assert secret not in result.output, "a secret reached the CLI output"
        return result


def make_playground(
    root: Path,
    handle: Any,
    platform: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    entities: dict[str, Any] | None = None,
    mapping: Path | None = None,
) -> tuple[Playground, Cli]:
    login, password = handle.credentials(LOGINS[platform])
    var = f"ERPSYNC_TEST_TRYTON_PW_{uuid.uuid4().hex[:6].upper()}"
    monkeypatch.setenv(var, password)
    erp = {
        "kind": "tryton",
        "url": handle.url,
        "database": handle.database,
        "user": login,
        "password": f"${{{var}}}",
        "entities": entities or {},
    }
    files = [str(mapping or REPO / "mappings" / f"tryton-{platform}.yaml")]
    pg = start_playground(root, generate_erp=False, extra_tenant={"erp": erp, "mappings": files})
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    kasa = config["tenants"][pg.tenant]["smartkasa"]
    # The playground names its shops KYIV-01/LVIV-01; Tryton's warehouses are KYIV/LVIV.
    kasa["shops"] = {code.split("-")[0]: shop for code, shop in kasa["shops"].items()}
    pg.config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return pg, Cli(pg, [password])


@pytest.fixture
def playground(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[Playground, Cli]]]:
    started: list[Playground] = []

    def make(handle: Any, platform: str, **kw: Any) -> tuple[Playground, Cli]:
        pg, cli = make_playground(tmp_path / f"pg{len(started)}", handle, platform, monkeypatch, **kw)
        started.append(pg)
        return pg, cli

    try:
        yield make
    finally:
        for pg in started:
            pg.stop()


def admin(handle: Any) -> SyncTrytonClient:
    login, password = handle.credentials("admin")
    return SyncTrytonClient(handle.url, handle.database, login, password)


def source(handle: Any, login: str = "epi") -> TrytonSource:
    _, password = handle.credentials(login)
    return TrytonSource(
        TrytonSourceConfig(url=handle.url, database=handle.database, user=login, password=password)
    )


def bindings(pg: Playground, entity: str, platform: str = "smartepi") -> dict[str, str]:
    return dict(StateStore(pg.settings().state_url).bindings(pg.tenant, platform, entity))


def live(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if not r.get("_deleted")]


def employee_party(client: SyncTrytonClient, employee_id: int) -> int:
    return int(client.read("company.employee", [employee_id], ["party"])[0]["party"])


# --- initial load and convergence ------------------------------------------------------


@pytest.mark.parametrize("platform", ["smartepi", "smartkasa"])
def test_first_apply_converges_and_the_next_plan_is_empty(
    playground: Any, tryton: Any, platform: str
) -> None:
    pg, cli = playground(tryton, platform)
    result = cli("apply", "--yes", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok", summary
    assert summary.get("quarantined", 0) == 0, summary
    result = cli("plan")
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.stdout

    manifest = tryton.manifest
    if platform == "smartepi":
        employees = live(pg.epi_state()["employees"])
        assert len(employees) == manifest["employees"]
        # archived/former employees are there, deactivated (company.employee hides them by default)
        assert any(e.get("active") is False for e in employees)
        # CPF from the br_cpf identifier (digits), e-mail from the contact mechanism
        with_cpf = [e for e in employees if e.get("identification", "").isdigit()]
        assert len(with_cpf) >= manifest["employees"] - 1
        assert sum(1 for e in employees if e.get("email")) >= manifest["employees"] * 0.9
        assert all(e.get("costCenterId") for e in employees)
        products = live(pg.epi_state()["products"])
        assert any(len(p.get("sizes") or []) > 1 for p in products)
        assert all(p.get("certificates") for p in products)
    else:
        products = live(pg.kasa_state()["products"])
        assert len(products) == manifest["shop_products"]
        sample = products[0]
        assert sample["alter_number"].startswith("UA-")
        assert {int(p["tax_group_id"]) for p in products} <= {1, 2, 4, 6}


# --- change detection ---------------------------------------------------------------------


def test_an_email_edited_alone_is_found_by_the_change_poll(
    tryton_fresh: Any, playground: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At the source: the poll sees the contact mechanism's edit and names only its employee.
    src = source(tryton_fresh)
    adm = admin(tryton_fresh)
    try:
        watermark = src.max_updated_at("employees")
        assert watermark is not None
        employee = 3
        party = employee_party(adm, employee)
        (mech,) = adm.search("party.contact_mechanism", [["party", "=", party], ["type", "=", "email"]])
        before = adm.read("company.employee", [employee], ["last_modified_at"])[0]["last_modified_at"]
        adm.write("party.contact_mechanism", [mech], {"value": "new.address@metalurgica-exemplo.com.br"})
        after = adm.read("company.employee", [employee], ["last_modified_at"])[0]["last_modified_at"]
        assert before == after  # the employee row itself did not move (§5.3)

        src.client.rpc_counts.clear()
        rows = list(src.read("employees", since=watermark))
        assert [r["id"] for r in rows] == [str(employee)]
        assert rows[0]["_changed_at"] > watermark  # the server's clock, not ours
        # No call reads unchanged employees, and the changed one is only named here (the sync
        # it triggers reads it): one OR-poll per model (employee with its party, identifiers,
        # mechanisms, categories; analytic rules; their entries, kept through a reference
        # field, polled on their own model).
        reads = {m: n for m, n in src.client.rpc_counts.items() if "search_read" in m}
        assert reads == {
            "model.company.employee.search_read": 1,
            "model.analytic_account.rule.search_read": 1,
            "model.analytic.account.entry.search_read": 1,
        }
        (row,) = list(src.read_keys("employees", [str(employee)]))
        assert row["email"] == "new.address@metalurgica-exemplo.com.br"
        # The next poll of the same chain emits nothing new.
        assert list(src.read("employees", since=rows[0]["_changed_at"])) == []
    finally:
        src.close()

    # End to end: the beat's watermark poll (eager, as in the worker) brings it to SmartEPI.
    pg, cli = playground(tryton_fresh, "smartepi")
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["redis_url"] = redis_url
    pg.config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert cli("apply", "--yes", "--quiet").exit_code == 0
    monkeypatch.setenv("ERPSYNC_NAMESPACE", f"erpsync-test-{uuid.uuid4().hex[:10]}")
    settings = pg.settings()
    celery_app.configure(settings)
    celery_app.app.conf.task_always_eager = True
    tasks.configure_runtime(engine_factory=tasks.default_engine)
    try:
        assert tasks.poll_watermarks(pg.tenant) == {}  # the first poll only dates the baseline
        employee = 7
        party = employee_party(adm, employee)
        (mech,) = adm.search("party.contact_mechanism", [["party", "=", party], ["type", "=", "email"]])
        adm.write("party.contact_mechanism", [mech], {"value": "polled.edit@metalurgica-exemplo.com.br"})
        emitted = tasks.poll_watermarks(pg.tenant)
        assert emitted.get("employees", 0) >= 1
        remote_id = bindings(pg, "employees")[str(employee)]
        remote = next(e for e in pg.epi_state()["employees"] if e["id"] == remote_id)
        assert remote["email"] == "polled.edit@metalurgica-exemplo.com.br"
    finally:
        celery_app.app.conf.task_always_eager = False
        tasks.configure_runtime()
        adm.close()


def test_archived_and_deleted_records_are_caught_by_the_full_reconcile(
    tryton_fresh: Any, playground: Any
) -> None:
    adm = admin(tryton_fresh)
    try:
        root = adm.search("product.category", [["name", "=", "Магазин"]])[0]
        (extra,) = adm.create("product.category", [{"name": "Тимчасова", "code": "TMP", "parent": root}])
        pg, cli = playground(tryton_fresh, "smartkasa")
        assert cli("apply", "--yes", "--quiet").exit_code == 0
        kasa = pg.kasa_state()
        assert any(c["title"] == "Тимчасова" for c in live(kasa["categories"]))
        product = adm.search_read(
            "product.product",
            [["template.categories", "child_of", [root], "parent"]],
            ["code", "template"],
            limit=1,
            order=[("id", "ASC")],
        )[0]
        # Archived. Tryton warns about the stock left; a person confirms it (res.user.warning).
        try:
            adm.write("product.template", [product["template"]], {"active": False})
        except TrytonWarning as warning:
            adm.create(
                "res.user.warning", [{"user": adm.client.user_id, "name": warning.name, "always": False}]
            )
            adm.write("product.template", [product["template"]], {"active": False})
        adm.delete("product.category", [extra])  # deleted: no trace left in Tryton

        result = cli("plan", "--json")
        assert result.exit_code == 2, result.output
        actions = {(a["entity"], a["kind"]) for a in json.loads(result.stdout)["actions"]}
        assert ("products", "delete") in actions and ("categories", "delete") in actions
        assert cli("apply", "--yes", "--quiet").exit_code == 0
        kasa = pg.kasa_state()
        assert not any(p.get("alter_number") == product["code"] for p in live(kasa["products"]))
        assert not any(c["title"] == "Тимчасова" for c in live(kasa["categories"]))
        assert "Nothing to do" in cli("plan").stdout
    finally:
        adm.close()


# --- write-back of console edits ----------------------------------------------------------


def console_edit(pg: Playground, remote_id: str, **changes: Any) -> None:
    pg.epi_admin("PUT", f"/tenants/{pg.tenant}/records/employees/{remote_id}", json=changes)


def tryton_email(adm: SyncTrytonClient, employee: int) -> str:
    party = employee_party(adm, employee)
    rows = adm.search_read(
        "party.contact_mechanism", [["party", "=", party], ["type", "=", "email"]], ["value"]
    )
    return str(rows[0]["value"])


def test_console_edits_flow_back_and_a_concurrent_tryton_edit_is_never_overwritten(
    tryton_fresh: Any, playground: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg, cli = playground(tryton_fresh, "smartepi")
    assert cli("apply", "--yes", "--quiet").exit_code == 0
    employees = bindings(pg, "employees")
    roles = bindings(pg, "job_roles")
    adm = admin(tryton_fresh)
    try:
        # 1. A console edit of e-mail and job role lands in Tryton (contact mechanism, category).
        quiet, busy = "4", "5"
        remote_role = next(e for e in pg.epi_state()["employees"] if e["id"] == employees[quiet])["jobRoleId"]
        current_role = next(k for k, rid in roles.items() if rid == remote_role)  # ERP key (category id)
        new_role = next(k for k in sorted(roles) if k != current_role)
        console_edit(
            pg, employees[quiet], email="console.edit@metalurgica-exemplo.com.br", jobRoleId=roles[new_role]
        )
        # 2. Another employee's e-mail is edited on the console while a person edits the same
        #    e-mail in Tryton, after erpsync read it and before it writes back.
        console_edit(pg, employees[busy], email="console.loser@metalurgica-exemplo.com.br")
        original = TrytonSource.write_back

        def person_edits_first(self: TrytonSource, entity: str, field: str, key: str, fields: Any) -> int:
            if key == busy:
                time.sleep(1.05)  # Tryton's _timestamp has sub-second precision; be safely apart
                party = employee_party(adm, int(busy))
                (mech,) = adm.search(
                    "party.contact_mechanism", [["party", "=", party], ["type", "=", "email"]]
                )
                adm.write(
                    "party.contact_mechanism",
                    [mech],
                    {"value": "person.in.tryton@metalurgica-exemplo.com.br"},
                )
            return original(self, entity, field, key, fields)

        monkeypatch.setattr(TrytonSource, "write_back", person_edits_first)
        result = cli("apply", "--yes", "--json")
        monkeypatch.setattr(TrytonSource, "write_back", original)
        summary = json.loads(result.stdout)
        assert summary["status"] == "partial", summary

        assert tryton_email(adm, int(quiet)) == "console.edit@metalurgica-exemplo.com.br"
        party = employee_party(adm, int(quiet))
        categories = adm.read("party.party", [party], ["categories"])[0]["categories"]
        assert int(new_role) in categories and int(current_role) not in categories
        # The person's edit stands; erpsync's write was refused, not forced.
        assert tryton_email(adm, int(busy)) == "person.in.tryton@metalurgica-exemplo.com.br"

        # The next run sees both sides changed: the ERP wins (the mapping's default), so the
        # console shows the person's Tryton value, and everything agrees.
        assert cli("apply", "--yes", "--quiet").exit_code == 0
        remote = next(e for e in pg.epi_state()["employees"] if e["id"] == employees[busy])
        assert remote["email"] == "person.in.tryton@metalurgica-exemplo.com.br"
        assert tryton_email(adm, int(busy)) == "person.in.tryton@metalurgica-exemplo.com.br"
        assert "Nothing to do" in cli("plan").stdout
    finally:
        adm.close()


def test_write_back_guard_at_the_source(tryton_fresh: Any) -> None:
    """The source's own contract: a write carries the timestamps of erpsync's last read."""
    src = source(tryton_fresh)
    adm = admin(tryton_fresh)
    try:
        (row,) = list(src.read_keys("employees", ["9"]))
        time.sleep(1.05)
        adm.write("party.party", [employee_party(adm, 9)], {"name": "Renamed In Tryton"})
        roles = [r["id"] for r in src.read("job_roles") if int(r["id"]) != row["job_role"]]
        with pytest.raises(TrytonConcurrencyError) as info:
            src.write_back("employees", "id", "9", {"job_role": roles[0]})
        assert info.value.kind == "record" and "re-read" in str(info.value)
        # Read again (a new plan): now the write goes through.
        list(src.read_keys("employees", ["9"]))
        assert src.write_back("employees", "id", "9", {"job_role": roles[0]}) == 1
        (row,) = list(src.read_keys("employees", ["9"]))
        assert str(row["job_role"]) == roles[0] and row["name"] == "Renamed In Tryton"
    finally:
        src.close()
        adm.close()


def test_a_cpf_tryton_refuses_fails_that_row_with_trytons_message(
    tryton_fresh: Any, playground: Any, tmp_path: Path
) -> None:
    """A deployment lets the CPF flow back too; a bad check digit typed on the console is
    refused by Tryton (stdnum): that row fails with Tryton's message, the others go on."""
    mapping = yaml.safe_load((REPO / "mappings" / "tryton-smartepi.yaml").read_text(encoding="utf-8"))
    mapping["entities"]["employees"]["fields"]["identification"] = {
        "from": "cpf",
        "max_length": 20,
        "direction": "both",
    }
    path = tmp_path / "tryton-smartepi-cpf.yaml"
    path.write_text(yaml.safe_dump(mapping, allow_unicode=True, sort_keys=False), encoding="utf-8")
    entities = {
        "employees": {"columns": {"cpf": {"path": "party.identifiers.code", "where": {"type": "br_cpf"}}}}
    }
    pg, cli = playground(tryton_fresh, "smartepi", entities=entities, mapping=path)
    result = cli("apply", "--yes", "--quiet")
    assert result.exit_code == 0, result.output
    employees = bindings(pg, "employees")
    bad, good = "11", "12"
    console_edit(pg, employees[bad], identification="123.456.789-00")
    console_edit(pg, employees[good], email="still.goes.on@metalurgica-exemplo.com.br")
    result = cli("apply", "--yes", "--json")
    summary = json.loads(result.stdout)
    assert summary["status"] == "partial", summary
    result = cli("runs", "show", str(summary["run_id"]), "--json")
    text = result.stdout
    assert "Brazillian National Identifier" in text and "not valid" in text
    # Quarantined with Tryton's message and the fix, not offered again by the next run.
    store = StateStore(pg.settings().state_url)
    held = [q for q in store.quarantined(pg.tenant, stage="apply") if q.erp_key == bad]
    assert held and held[0].rule == "erp_rejected" and "retry-failed" in held[0].message, held
    again = json.loads(cli("apply", "--yes", "--json").stdout)
    assert again["status"] != "failed", again
    adm = admin(tryton_fresh)
    try:
        assert tryton_email(adm, int(good)) == "still.goes.on@metalurgica-exemplo.com.br"
        party = employee_party(adm, int(bad))
        codes = adm.search_read(
            "party.identifier", [["party", "=", party], ["type", "=", "br_cpf"]], ["code"]
        )
        assert codes and codes[0]["code"] != "123.456.789-00"
    finally:
        adm.close()


def test_keyset_pages_and_archived_rows(tryton: Any) -> None:
    """Pages of ``page_size`` rows by id; archived records are read and flagged inactive."""
    _, password = tryton.credentials("epi")
    src = TrytonSource(
        TrytonSourceConfig(
            url=tryton.url, database=tryton.database, user="epi", password=password, page_size=7
        )
    )
    try:
        rows = list(src.read("employees"))
        assert len(rows) == tryton.manifest["employees"] == src.count("employees")
        assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
        calls = src.client.rpc_counts["model.company.employee.search_read"]
        assert calls == -(-len(rows) // 7) or calls == -(-len(rows) // 7) + 1
        assert any(r["active"] is False for r in rows)  # people who left (end_date passed)
        assert all(isinstance(r["start_date"], dt.date) for r in rows)
        # distinct rows stay distinct across pages: one CA per PPE template, whatever the paging
        certificates = list(src.read("ppe_certificates"))
        templates = [r["template"] for r in certificates]
        assert len(templates) == len(set(templates)) == tryton.manifest["ppe_templates"]
    finally:
        src.close()


def test_a_done_stock_move_names_its_product_for_the_shop_stock(tryton_fresh: Any) -> None:
    """Quantities have no timestamp (§5.5): done stock moves date them."""
    src = source(tryton_fresh, "kasa")
    adm = admin(tryton_fresh)
    try:
        watermark = src.max_updated_at("shop_stock")
        assert watermark is not None
        code = sorted(r["product"] for r in src.read("shop_stock"))[0]
        before = {r["shop"]: r["quantity"] for r in src.read("shop_stock") if r["product"] == code}
        product = adm.search_read("product.product", [["code", "=", code]], ["default_uom"])[0]
        (lost,) = adm.search("stock.location", [["type", "=", "lost_found"], ["code", "=", "LF"]])
        (storage,) = adm.search("stock.location", [["code", "=", "KYIV-STO"]])
        company = adm.base_context["company"]
        moves = adm.create(
            "stock.move",
            [
                {
                    "product": product["id"],
                    "unit": product["default_uom"],
                    "quantity": 3,
                    "from_location": lost,
                    "to_location": storage,
                    "company": company,
                    "planned_date": dt.date.today(),
                    "effective_date": dt.date.today(),
                }
            ],
        )
        adm.model("stock.move", "do", moves)
        rows = list(src.read("shop_stock", since=watermark))
        assert [r["product"] for r in rows] == [code]  # names the parent product (its code)
        after = {r["shop"]: r["quantity"] for r in src.read("shop_stock") if r["product"] == code}
        assert after["KYIV"] == before["KYIV"] + 3 and after["LVIV"] == before["LVIV"]
    finally:
        src.close()
        adm.close()
