"""`erpsync why ENTITY KEY` (#16.12): the ERP columns behind each field, the children, the
last run's outcome and what the next apply does; an unknown key exits 1."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.engine.explain import next_action
from sync.playground import Playground, start_playground


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Playground]:
    with start_playground(
        tmp_path_factory.mktemp("why") / "pg", employees=5, products_epi=2, products_kasa=3
    ) as play:
        yield play


def _cli(pg: Playground, *args: str) -> Result:
    result = CliRunner().invoke(
        app, list(args), env={"ERPSYNC_CONFIG": str(pg.config_path), "COLUMNS": "250"}
    )
    assert "Traceback" not in result.output
    return result


def _erp(pg: Playground, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(pg.erp_path) as conn:
        return conn.execute(sql, params).fetchall()


def test_why_before_and_after_the_first_apply(pg: Playground) -> None:
    key, email = _erp(pg, "SELECT matricula, email FROM funcionarios WHERE email IS NOT NULL ORDER BY 1")[0]
    result = _cli(pg, "why", "employees", key)
    assert result.exit_code == 0, result.output
    assert "ERP row: table funcionarios, matricula = " in result.stdout and "found" in result.stdout
    assert "next: the next apply creates it" in result.stdout
    info = json.loads(_cli(pg, "why", "employees", key, "--json").stdout)
    assert info["columns"]["email"] == "email" and info["columns"]["name"] == "nome"
    assert info["desired"]["email"] == email.lower() and info["binding"] is None

    assert _cli(pg, "apply", "--yes", "--quiet").exit_code == 0
    info = json.loads(_cli(pg, "why", "employees", key, "--json").stdout)
    assert info["last_action"]["class"] == "written" and info["binding"]
    assert info["next"].startswith("nothing: the ERP, the last agreed values and the platform agree")

    _erp(pg, "UPDATE funcionarios SET email = ? WHERE matricula = ?", "novo@example.com", key)
    result = _cli(pg, "why", "employees", key)
    assert "next: the next apply updates email from the ERP" in result.stdout
    assert "│ email" in result.stdout  # the field row names its ERP column
    line = next(line for line in result.stdout.splitlines() if line.startswith("│ email"))
    assert line.split("│")[2].strip() == "email" and "novo@example.com" in line


def test_why_shows_children_with_their_columns(pg: Playground) -> None:
    sku = _erp(pg, "SELECT DISTINCT sku FROM kasa_stock ORDER BY sku")[0][0]
    result = _cli(pg, "why", "products", sku, "--platform", "smartkasa")
    assert result.exit_code == 0, result.output
    assert "children cards:" in result.stdout and "shop_id ← shop_code" in result.stdout
    assert "ERP column" in result.stdout


def test_an_unknown_key_exits_1_naming_the_table_and_column(pg: Playground) -> None:
    result = _cli(pg, "why", "employees", "NO-SUCH-KEY")
    assert result.exit_code == 1
    assert "NO-SUCH-KEY" in result.stderr and "funcionarios" in result.stderr and "matricula" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_next_action_covers_every_state() -> None:
    common: dict[str, Any] = {
        "desired_children": None,
        "base_children": None,
        "entity": "employees",
        "erp_key": "7",
        "delete_policy": "deactivate",
    }
    kw = {
        **common,
        "bound": True,
        "erp_found": True,
        "desired": {"a": 1},
        "base": {"a": 1},
        "remote": {"a": 1},
    }
    assert next_action(**kw, quarantine=[], held=True).startswith("held for a person")
    assert "retry-failed" in next_action(**kw, quarantine=[("apply", "platform_rejected", None)], held=False)
    assert "fixed" in next_action(**kw, quarantine=[("validate", "format", "email")], held=False)
    assert next_action(**{**kw, "erp_found": False}, quarantine=[], held=False).endswith("(deactivate)")
    assert "creates" in next_action(**{**kw, "bound": False}, quarantine=[], held=False)
    drift = next_action(**{**kw, "remote": {"a": 2}}, quarantine=[], held=False)
    assert "a changed on the platform" in drift
