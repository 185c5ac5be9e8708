"""Edits made in the SmartEPI console come back into the ERP ("Data back into the ERP", item 4).

`employees.jobRoleId` is mapped `direction: both` (mappings/smartepi.yaml) and the playground
makes `funcionarios` writable. Each test drives the real CLI (CliRunner) against the playground
sandboxes and reads the outcome where a user would see it: the ERP table, the platform, the
plan and run reports, the state store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.playground import Playground, start_playground
from sync.state.store import StateStore


class Cli:
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
        for secret in self.secrets:
            assert secret not in result.output, "a secret reached the CLI output"
        return result


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    with start_playground(tmp_path / "pg", employees=10, products_epi=2, products_kasa=3) as play:
        yield play


@pytest.fixture
def cli(pg: Playground) -> Cli:
    runner = Cli(pg)
    result = runner("apply", "--yes", "--quiet")
    assert result.exit_code == 0, result.output
    return runner


def cargo(pg: Playground, key: str) -> str:
    with sqlite3.connect(pg.erp_path) as conn:
        return str(conn.execute("SELECT cargo FROM funcionarios WHERE matricula = ?", (key,)).fetchone()[0])


def set_cargo(pg: Playground, key: str, role: str) -> None:
    with sqlite3.connect(pg.erp_path) as conn:
        conn.execute("UPDATE funcionarios SET cargo = ? WHERE matricula = ?", (role, key))


def remote_employee(pg: Playground, remote_id: str) -> dict[str, Any]:
    return next(e for e in pg.epi_state()["employees"] if e["id"] == remote_id)


def pick(pg: Playground) -> tuple[str, str, dict[str, str], list[str]]:
    """An employee (ERP key, remote id), the job role bindings and two other role codes."""
    store = StateStore(pg.settings().state_url)
    key, remote_id = sorted(store.bindings(pg.tenant, "smartepi", "employees").items())[0]
    roles = store.bindings(pg.tenant, "smartepi", "job_roles")
    others = [code for code in sorted(roles) if code != cargo(pg, key)]
    return key, remote_id, roles, others


def console_edit(pg: Playground, remote_id: str, **changes: Any) -> None:
    pg.epi_admin("PUT", f"/tenants/{pg.tenant}/records/employees/{remote_id}", json=changes)


def test_console_edit_of_a_both_field_reaches_the_erp(cli: Cli) -> None:
    pg = cli.pg
    key, remote_id, roles, others = pick(pg)
    console_edit(pg, remote_id, jobRoleId=roles[others[0]])

    result = cli("plan", "--json")
    assert result.exit_code == 2, result.output
    (action,) = json.loads(result.stdout)["actions"]
    assert (action["kind"], action["entity"], action["erp_key"]) == ("pull", "employees", key)
    assert [(c["field"], c["kind"]) for c in action["changes"]] == [("jobRoleId", "pull")]

    result = cli("apply", "--yes")
    assert result.exit_code == 0, result.output
    assert "pull" in result.stdout
    assert cargo(pg, key) == others[0]  # funcionarios.cargo holds the ERP key of the new role
    assert remote_employee(pg, remote_id)["jobRoleId"] == roles[others[0]]
    result = cli("plan")
    assert result.exit_code == 0, result.output  # our own write-back does not bounce


def test_same_field_changed_on_both_sides_is_a_reported_conflict_erp_wins(cli: Cli, tmp_path: Path) -> None:
    pg = cli.pg
    key, remote_id, roles, others = pick(pg)
    console_edit(pg, remote_id, jobRoleId=roles[others[0]])
    set_cargo(pg, key, others[1])

    html = tmp_path / "plan.html"
    result = cli("plan", "--detail", "--html", str(html))
    assert result.exit_code == 2, result.output
    assert "1 conflicting field(s)" in result.stdout
    assert "conflict, erp_wins" in result.stdout and "jobRoleId" in result.stdout
    assert "1 conflicting field(s)" in html.read_text(encoding="utf-8")
    (action,) = json.loads(cli("plan", "--json").stdout)["actions"]
    (change,) = action["changes"]
    assert (change["field"], change["kind"], change["resolution"]) == ("jobRoleId", "conflict", "erp_wins")
    assert change["new"] == others[1]

    result = cli("apply", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "ok"
    assert remote_employee(pg, remote_id)["jobRoleId"] == roles[others[1]]  # the ERP value is pushed
    assert cargo(pg, key) == others[1]  # and the ERP keeps it
    assert cli("plan").exit_code == 0


def test_edit_of_a_non_writable_source_entity_lands_in_adopted_edits(cli: Cli) -> None:
    pg = cli.pg
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["tenants"][pg.tenant]["erp"]["entities"]["funcionarios"]["writable"] = False
    pg.config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    key, remote_id, roles, others = pick(pg)
    before = cargo(pg, key)
    console_edit(pg, remote_id, jobRoleId=roles[others[0]])

    result = cli("apply", "--yes")
    assert cargo(pg, key) == before  # the ERP table is not written
    assert result.exit_code == 0, result.output
    edits = StateStore(pg.settings().state_url).adopted_edits(pg.tenant)
    assert [(e.entity, e.erp_key, e.field, e.new_value) for e in edits] == [
        ("employees", key, "cargo", others[0])
    ]
    # The ERP has not consumed the edit yet: the plan keeps showing the pull (never the old
    # value pushed back over the console edit), and applying again records nothing twice.
    assert cli("plan").exit_code == 2
    assert cli("apply", "--yes").exit_code == 0
    assert len(StateStore(pg.settings().state_url).adopted_edits(pg.tenant)) == 1
    assert remote_employee(pg, remote_id)["jobRoleId"] == roles[others[0]]


def test_record_deleted_in_the_console_is_created_again(cli: Cli) -> None:
    pg = cli.pg
    store = StateStore(pg.settings().state_url)
    roles = store.bindings(pg.tenant, "smartepi", "job_roles")
    code = sorted(roles)[0]
    pg.epi_admin("DELETE", f"/tenants/{pg.tenant}/records/job-roles/{roles[code]}")

    result = cli("plan", "--json")
    assert result.exit_code == 2
    assert [(a["kind"], a["erp_key"]) for a in json.loads(result.stdout)["actions"]] == [("create", code)]
    assert cli("apply", "--yes", "--quiet").exit_code == 0
    new_id = store.bindings(pg.tenant, "smartepi", "job_roles")[code]
    assert new_id != roles[code]
    assert any(r["id"] == new_id and not r.get("_deleted") for r in pg.epi_state()["job-roles"])
    assert cli("plan").exit_code == 0
