"""`erpsync plan`, `apply`, `status`, `why`, `retry-failed` and `config check` as a user runs them.

Every command runs through the real Typer app (CliRunner, in-process) against the playground:
both sandboxes over real HTTP, the generated SQLite ERP, the shipped mapping files. Every
invocation also asserts that no secret of the environment reaches stdout or stderr.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.playground import Playground, shipped_mappings, start_playground
from sync.state.store import StateStore

EXTERNAL_URL = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import"""
)


class Cli:
    """Runs `erpsync …` against one playground; every call is checked for leaked secrets."""

    def __init__(self, pg: Playground) -> None:
        self.pg = pg
        self.runner = CliRunner()
        self.secrets = [pg.epi_key, pg.kasa_key, *pg.env.values()]

    def __call__(self, *args: str) -> Result:
        result = self.runner.invoke(
            app, list(args), env={"ERPSYNC_CONFIG": str(self.pg.config_path), "COLUMNS": "240"}
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        self.assert_no_secret(result.stdout + result.stderr)
        return result

    def assert_no_secret(self, text: str) -> None:
        for secret in self.secrets:
            assert secret not in text, "a secret reached the CLI output"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    with start_playground(tmp_path / "pg", employees=12, products_epi=3, products_kasa=5) as play:
        yield play


@pytest.fixture
def cli(pg: Playground) -> Cli:
    return Cli(pg)


@pytest.fixture
def synced(cli: Cli) -> Cli:
    """The playground after a first full sync."""
    result = cli("apply", "--yes", "--quiet")
    assert result.exit_code == 0, result.output
    return cli


def erp(pg: Playground, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(pg.erp_path) as conn:
        rows = conn.execute(sql, params).fetchall()
    return rows


def store(pg: Playground) -> StateStore:
    return StateStore(pg.settings().state_url)


def live(pg: Playground, resource: str) -> list[dict[str, Any]]:
    return [r for r in pg.epi_state()[resource] if not r.get("_deleted")]


# --- plan → apply exactly → empty plan ------------------------------------------------


def test_plan_saved_then_applied_exactly_then_nothing_to_do(cli: Cli, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    result = cli("plan", "--out", str(plan_file))
    assert result.exit_code == 2, result.output
    assert "create" in result.stdout and "smartepi" in result.stdout and "employees" in result.stdout
    saved = json.loads(plan_file.read_text())
    planned = Counter({(c["platform"], c["entity"], c["kind"]): c["count"] for c in saved["counts"]})
    assert planned[("smartepi", "employees", "create")] == 12
    assert set(k for _, _, k in planned) == {"create"}

    result = cli("apply", str(plan_file), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok"
    done = Counter()
    for key, n in summary["counts"].items():
        platform, entity, kind, outcome = key.split("/")
        assert outcome == "ok", key
        done[(platform, entity, kind)] += n
    assert done == planned  # exactly the saved plan: nothing more, nothing less
    assert len(live(cli.pg, "employees")) == 12

    result = cli("plan")
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.stdout


def test_plan_json_is_valid_json_and_html_is_self_contained(cli: Cli, tmp_path: Path) -> None:
    html = tmp_path / "plan.html"
    result = cli("plan", "--json", "--html", str(html))
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)  # stdout holds the JSON alone
    assert data["tenant"] == cli.pg.tenant
    assert any(a["kind"] == "create" and a["entity"] == "employees" for a in data["actions"])
    text = html.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert "<style" in text
    assert not EXTERNAL_URL.search(text), EXTERNAL_URL.search(text)
    cli.assert_no_secret(text)
    cpfs = [c for (c,) in erp(cli.pg, "SELECT cpf FROM funcionarios WHERE cpf IS NOT NULL")]
    assert cpfs and not any(c in text or c in result.stdout for c in cpfs)  # sensitive: masked


# --- stale plans --------------------------------------------------------------------


def test_saved_plan_refused_when_the_erp_changed(synced: Cli, tmp_path: Path) -> None:
    pg = synced.pg
    erp(pg, "UPDATE cargos SET nome = nome || ' (novo)' WHERE codigo = (SELECT MIN(codigo) FROM cargos)")
    plan_file = tmp_path / "plan.json"
    assert synced("plan", "--out", str(plan_file)).exit_code == 2
    erp(pg, "UPDATE setores SET nome = nome || ' B' WHERE codigo = (SELECT MIN(codigo) FROM setores)")

    result = synced("apply", str(plan_file), "--quiet")
    assert result.exit_code == 1, result.output
    assert "stale" in result.stderr
    assert "smartepi/sectors" in result.stderr
    assert "smartepi/job_roles" not in result.stderr  # only what changed is named
    assert not any(r["name"].endswith("(novo)") for r in live(pg, "job-roles"))  # nothing was written


def test_saved_plan_refused_after_a_console_edit(synced: Cli, tmp_path: Path) -> None:
    pg = synced.pg
    erp(pg, "UPDATE grupos SET descricao = 'x' WHERE codigo = (SELECT MIN(codigo) FROM grupos)")
    plan_file = tmp_path / "plan.json"
    assert synced("plan", "--out", str(plan_file)).exit_code == 2
    employee = live(pg, "employees")[0]
    pg.epi_admin("PUT", f"/tenants/{pg.tenant}/records/employees/{employee['id']}", json={"name": "Edited"})

    result = synced("apply", str(plan_file), "--quiet")
    assert result.exit_code == 1, result.output
    assert "stale" in result.stderr and "smartepi/employees/remote" in result.stderr


# --- safety valve -------------------------------------------------------------------


def test_mass_delete_needs_force(synced: Cli) -> None:
    pg = synced.pg
    codes = [c for (c,) in erp(pg, "SELECT codigo FROM setores ORDER BY codigo")]
    keep = codes[:2]
    erp(pg, "UPDATE funcionarios SET setor = ?", keep[0])
    with sqlite3.connect(pg.erp_path) as conn:
        conn.executemany("DELETE FROM setores WHERE codigo = ?", [(c,) for c in codes[2:]])

    result = synced("plan")
    assert result.exit_code == 1, result.output
    assert "smartepi/sectors" in result.stderr and "--force" in result.stderr
    result = synced("apply", "--yes", "--quiet")
    assert result.exit_code == 1 and "--force" in result.stderr
    assert len(live(pg, "sectors")) == len(codes)  # refused: nothing deleted

    result = synced("plan", "--force", "--json")
    assert result.exit_code == 2, result.output
    kinds = Counter(a["kind"] for a in json.loads(result.stdout)["actions"] if a["entity"] == "sectors")
    assert kinds == {"delete": len(codes) - 2}
    result = synced("apply", "--yes", "--force", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(r["code"] for r in live(pg, "sectors")) == keep
    assert synced("plan").exit_code == 0


# --- status, why, quarantine --------------------------------------------------------


def test_status_why_and_quarantine_that_clears_itself(synced: Cli) -> None:
    pg = synced.pg
    key, good_email, cpf = erp(
        pg, "SELECT matricula, email, cpf FROM funcionarios WHERE email IS NOT NULL AND cpf IS NOT NULL"
    )[0]
    remote_id = store(pg).bindings(pg.tenant, "smartepi", "employees")[key]

    result = synced("why", "employees", key)
    assert result.exit_code == 0, result.output
    assert remote_id in result.stdout and "base" in result.stdout and "platform" in result.stdout
    assert good_email.lower() in result.stdout
    assert cpf not in result.stdout  # identification is sensitive: masked
    info = json.loads(synced("why", "employees", key, "--json").stdout)
    assert info["binding"]["remote_id"] == remote_id
    assert info["base"]["email"] == info["remote"]["email"] == good_email.lower()
    assert info["quarantine"] == []

    erp(pg, "UPDATE funcionarios SET email = 'not-an-email' WHERE matricula = ?", key)
    result = synced("plan", "--json")
    assert result.exit_code == 0, result.output  # the bad row is held back, nothing else changed
    held = [q for q in json.loads(result.stdout)["quarantine"] if q["erp_key"] == key]
    assert held and held[0]["field"] == "email"

    result = synced("why", "employees", key)
    assert "quarantined" in result.stdout and "email" in result.stdout and held[0]["rule"] in result.stdout
    result = synced("status")
    assert result.exit_code == 0, result.output
    for text in ("runs of", "apply", "bindings:", "smartepi/employees 12", "open intents: 0", key):
        assert text in result.stdout, text
    status = json.loads(synced("status", "--json").stdout)
    assert status["runs"][0]["status"] == "ok" and status["bindings"]["smartepi/employees"] == 12
    assert [(q["erp_key"], q["field"], q["stage"]) for q in status["quarantine"]] == [
        (key, "email", "validate")
    ]
    assert status["intents"] == {"done": sum(status["bindings"].values())}

    erp(pg, "UPDATE funcionarios SET email = ? WHERE matricula = ?", good_email, key)
    assert synced("plan").exit_code == 0
    status = json.loads(synced("status", "--json").stdout)
    assert status["quarantine"] == []
    assert json.loads(synced("why", "employees", key, "--json").stdout)["quarantine"] == []


def test_why_unknown_entity_is_one_clear_error(synced: Cli) -> None:
    result = synced("why", "employes", "0000001")
    assert result.exit_code == 1
    assert "employes" in result.stderr and "Traceback" not in result.output


# --- retry-failed ---------------------------------------------------------------------


def test_retry_failed_releases_platform_rejections_and_reapplies(synced: Cli) -> None:
    """A category is deleted in the SmartKasa console; a fast apply (trusting the bases) moves a
    product into it and the platform answers 422: the row is quarantined at the apply stage and
    held while its ERP row is unchanged. Once the category is restored, `retry-failed` sends it."""
    pg = synced.pg
    categories = store(pg).bindings(pg.tenant, "smartkasa", "categories")
    sku = erp(pg, "SELECT sku FROM kasa_products ORDER BY sku")[0][0]
    busy = {
        c
        for (c,) in erp(
            pg, "SELECT parent_code FROM kasa_categories UNION SELECT category_code FROM kasa_products"
        )
    }
    leaf = next(code for code in sorted(categories) if code not in busy)
    record = next(c for c in pg.kasa_state()["categories"] if str(c["id"]) == categories[leaf])
    pg.kasa_admin("DELETE", f"/records/categories/{record['id']}")
    erp(pg, "UPDATE kasa_products SET category_code = ? WHERE sku = ?", leaf, sku)

    result = synced("apply", "--yes", "--fast")
    assert result.exit_code == 3, result.output  # a rejected row: the run goes on, status partial
    assert "Items needing attention (1)" in result.stdout and "rejected" in result.stdout
    assert "category_id" in result.stdout
    status = json.loads(synced("status", "--json").stdout)
    assert [(q["erp_key"], q["stage"], q["field"]) for q in status["quarantine"]] == [
        (sku, "apply", "category_id")
    ]
    assert "platform_rejected" in synced("why", "products", sku, "--platform", "smartkasa").stdout

    pg.kasa_admin("POST", "/seed/categories", json=[record])  # restored in the console
    assert synced("apply", "--yes", "--quiet").exit_code == 0
    assert json.loads(synced("status", "--json").stdout)["quarantine"] != []  # held: ERP row unchanged

    result = synced("retry-failed", "--quiet")
    assert result.exit_code == 0, result.output
    assert "released 1 record" in result.stdout
    assert json.loads(synced("status", "--json").stdout)["quarantine"] == []
    remote_id = store(pg).bindings(pg.tenant, "smartkasa", "products")[sku]
    product = next(p for p in pg.kasa_state()["products"] if str(p["id"]) == remote_id)
    assert str(product["category_id"]) == categories[leaf]
    assert synced("plan").exit_code == 0


# --- config check -----------------------------------------------------------------------


def test_config_check_playground_ok_and_broken_mapping_located(cli: Cli, tmp_path: Path) -> None:
    pg = cli.pg
    result = cli("config", "check", str(pg.config_path))
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout

    epi, kasa = shipped_mappings()
    lines = epi.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip() == "delete: deactivate")
    lines[index] = lines[index].replace("deactivate", "shred")
    broken = tmp_path / "smartepi.yaml"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["tenants"][pg.tenant]["mappings"] = [str(broken), str(kasa)]
    bad_config = tmp_path / "config.yaml"
    bad_config.write_text(yaml.safe_dump(config), encoding="utf-8")

    result = cli("config", "check", str(bad_config))
    assert result.exit_code == 1
    assert re.search(rf"smartepi\.yaml:{index + 1}: entities\.products\.delete: \S", result.stderr), (
        result.stderr
    )
    assert "Traceback" not in result.output
