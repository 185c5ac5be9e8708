"""`direction: both` works as written (#16.4).

A user who writes ``direction: both`` on a field asks for console edits to come back to
the ERP. That is now what happens without also writing ``writable: true`` on the mapped
entity (it is implied); ``writable: false`` next to such a field is a contradiction that
``config check`` refuses with the fix; and when the ERP table itself is not writable,
``config check`` says the edits wait in adopted_edits.
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
from sync.playground import Playground, shipped_mappings, start_playground
from sync.state.store import StateStore


def _mappings(folder: Path, writable: Any) -> list[Path]:
    """The shipped mappings, with the employees' ``writable`` removed (None) or set."""
    epi, kasa = shipped_mappings()
    spec = yaml.safe_load(epi.read_text(encoding="utf-8"))
    employees = spec["entities"]["employees"]
    employees.pop("writable", None)
    if writable is not None:
        employees["writable"] = writable
    assert employees["fields"]["jobRoleId"]["direction"] == "both"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "smartepi.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return [path, kasa]


def _cli(pg: Playground, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"ERPSYNC_CONFIG": str(pg.config_path), "COLUMNS": "240"})


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    paths = _mappings(tmp_path / "maps", None)
    with start_playground(
        tmp_path / "pg", employees=6, products_epi=2, products_kasa=3, mappings=paths
    ) as play:
        yield play


def _cargo(pg: Playground, key: str) -> str:
    with sqlite3.connect(pg.erp_path) as conn:
        return str(conn.execute("SELECT cargo FROM funcionarios WHERE matricula = ?", (key,)).fetchone()[0])


def test_a_console_edit_of_a_both_field_reaches_the_erp_without_writable(pg: Playground) -> None:
    assert _cli(pg, "apply", "--yes", "--quiet").exit_code == 0
    store = StateStore(pg.settings().state_url)
    key, remote_id = sorted(store.bindings(pg.tenant, "smartepi", "employees").items())[0]
    roles = store.bindings(pg.tenant, "smartepi", "job_roles")
    other = next(code for code in sorted(roles) if code != _cargo(pg, key))
    pg.epi_admin(
        "PUT", f"/tenants/{pg.tenant}/records/employees/{remote_id}", json={"jobRoleId": roles[other]}
    )

    result = _cli(pg, "plan", "--json")
    assert result.exit_code == 2, result.output
    (action,) = json.loads(result.stdout)["actions"]
    assert [(c["field"], c["kind"]) for c in action["changes"]] == [("jobRoleId", "pull")]  # not drift
    assert _cli(pg, "apply", "--yes", "--quiet").exit_code == 0
    assert _cargo(pg, key) == other  # the console edit is in the ERP table
    employee = next(e for e in pg.epi_state()["employees"] if e["id"] == remote_id)
    assert employee["jobRoleId"] == roles[other]  # and was not overwritten
    assert _cli(pg, "plan").exit_code == 0


def test_writable_false_next_to_a_both_field_fails_config_check_with_the_fix(
    pg: Playground, tmp_path: Path
) -> None:
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["tenants"][pg.tenant]["mappings"] = [str(p) for p in _mappings(tmp_path / "false", False)]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "writable: false" in said and "jobRoleId (both)" in said
    assert "remove `writable: false`" in said
    assert "Traceback" not in result.output


def test_config_check_says_when_the_erp_table_cannot_take_the_edits(pg: Playground, tmp_path: Path) -> None:
    result = _cli(pg, "config", "check", str(pg.config_path))
    assert result.exit_code == 0, result.output
    assert "adopted_edits" not in result.output  # funcionarios is a writable table

    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["tenants"][pg.tenant]["erp"]["entities"]["funcionarios"]["writable"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "smartepi employees (email, jobRoleId) are kept in adopted_edits" in said
    assert "erp.entities.funcionarios.writable: true" in said
