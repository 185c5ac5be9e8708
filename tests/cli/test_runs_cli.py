"""`erpsync runs` and `erpsync runs show RUN` (issue #17, item 3) against the playground.

Runs are made by the real engine against both sandboxes: a first full sync (ok), then a fast
apply where SmartKasa rejects a product (its category was deleted in the console) while an
ERP row fails validation (partial), then a run recorded as failed the way a dropped task
records it. Every invocation asserts that no secret of the environment reaches the output.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.engine.api import Engine
from sync.playground import Playground, start_playground
from sync.redact import register_secret


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Playground]:
    with start_playground(
        tmp_path_factory.mktemp("runs") / "pg", employees=12, products_epi=3, products_kasa=5
    ) as play:
        yield play


def erp(pg: Playground, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(pg.erp_path) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def history(pg: Playground) -> dict[str, Any]:
    """Three runs: ok, partial (a platform rejection + a validation failure), failed."""
    engine = Engine(pg.settings())
    first = engine.apply(pg.tenant)
    assert first.status == "ok"

    # A job role deleted in the SmartEPI console; a fast apply (trusting the bindings) moves an
    # employee into it: SmartEPI answers 422 with a request id. Another employee's e-mail
    # fails validation.
    roles = engine.store.bindings(pg.tenant, "smartepi", "job_roles")
    rejected, role = erp(pg, "SELECT matricula, cargo FROM funcionarios ORDER BY matricula")[0]
    other = next(code for code in sorted(roles) if code != role)
    pg.epi_admin("DELETE", f"/tenants/{pg.tenant}/records/job-roles/{roles[other]}")
    erp(
        pg,
        "UPDATE funcionarios SET cargo = ?, updated_at = '2030-01-01T00:00:00' WHERE matricula = ?",
        other,
        rejected,
    )
    key = erp(
        pg,
        "SELECT matricula FROM funcionarios WHERE email IS NOT NULL AND matricula != ? ORDER BY matricula",
        rejected,
    )[0][0]
    erp(pg, "UPDATE funcionarios SET email = 'not-an-email' WHERE matricula = ?", key)
    second = engine.apply(pg.tenant, mode="fast")
    assert second.status == "partial"

    secret = "tok_" + pg.kasa_key[:12]  # a value that must be masked wherever it shows
    register_secret(secret)
    failed = engine.store.start_run(pg.tenant, "reconcile", "full")
    engine.store.finish_run(
        failed,
        status="failed",
        counts={},
        requests={},
        error=f"worker died (session {secret}); look at its log",
    )
    return {
        "ok": first.run_id,
        "partial": second.run_id,
        "failed": failed,
        "rejected": rejected,
        "key": key,
        "secret": secret,
    }


@pytest.fixture(scope="module")
def cli(pg: Playground, history: dict[str, Any]) -> Any:
    runner = CliRunner()
    secrets = [pg.epi_key, pg.kasa_key, *pg.env.values(), history["secret"]]

    def run(*args: str) -> Result:
        result = runner.invoke(app, list(args), env={"ERPSYNC_CONFIG": str(pg.config_path), "COLUMNS": "240"})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        for secret in secrets:
            assert secret not in result.stdout + result.stderr, "a secret reached the CLI output"
        return result

    return run


def test_runs_lists_the_history_newest_first(cli: Any, history: dict[str, Any], pg: Playground) -> None:
    result = cli("runs", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [history["failed"], history["partial"], history["ok"]]
    assert [r["status"] for r in rows] == ["failed", "partial", "ok"]
    assert all(r["tenant"] == pg.tenant and r["finished_at"] and r["duration_s"] >= 0 for r in rows)
    failed, partial, ok = rows
    assert failed["kind"] == "reconcile" and "worker died" in failed["error"] and "***" in failed["error"]
    assert (
        partial["outcomes"].get("quarantined") == 1 and partial["requests"] > 0 and partial["error"] is None
    )
    assert ok["outcomes"]["ok"] > 0 and set(ok["outcomes"]) <= {"ok", "skipped"}

    assert json.loads(cli("runs", "--json", "--limit", "1").stdout)[0]["id"] == history["failed"]
    assert json.loads(cli("runs", "--json", "--tenant", "nobody").stdout) == []

    text = cli("runs").stdout
    for needle in (str(history["partial"]), "partial", "failed", "worker died", "erpsync runs show RUN"):
        assert needle in text, needle


def test_show_lists_every_item_not_ok_with_reason_and_request_id(cli: Any, history: dict[str, Any]) -> None:
    result = cli("runs", "show", str(history["partial"]), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run"]["id"] == history["partial"] and data["run"]["status"] == "partial"
    rejected = [i for i in data["items"] if i["erp_key"] == history["rejected"]]
    assert [(i["platform"], i["entity"], i["outcome"]) for i in rejected] == [
        ("smartepi", "employees", "quarantined")
    ]
    assert "jobRoleId" in rejected[0]["reason"] and rejected[0]["request_id"].startswith("req_")
    assert all(i["outcome"] != "ok" for i in data["items"])
    held = [(q["erp_key"], q["field"], q["stage"]) for q in data["quarantine"]]
    assert (history["key"], "email", "validate") in held  # failed validation during this run
    assert data["intents"] == []

    text = cli("runs", "show", str(history["partial"])).stdout
    for needle in (
        f"run {history['partial']}",
        "not ok (1)",
        history["rejected"],
        "jobRoleId",
        "quarantined at validation",
        history["key"],
    ):
        assert needle in text, needle
    assert rejected[0]["request_id"] in text


def test_show_of_an_ok_and_a_failed_run(cli: Any, history: dict[str, Any]) -> None:
    text = cli("runs", "show", str(history["ok"])).stdout
    assert "every item of this run was ok" in text and "not ok" not in text
    result = cli("runs", "show", str(history["failed"]))
    assert result.exit_code == 0
    assert "error:" in result.stdout and "worker died" in result.stdout and "look at its log" in result.stdout


def test_html_report_of_any_past_run(cli: Any, history: dict[str, Any], tmp_path: Path) -> None:
    for name in ("ok", "partial", "failed"):
        page = tmp_path / f"run-{name}.html"
        result = cli("runs", "show", str(history[name]), "--html", str(page))
        assert result.exit_code == 0, result.output
        html = page.read_text(encoding="utf-8")
        assert html.lstrip().lower().startswith("<!doctype html>"), name
        assert f"HTML report: {page}" in result.stdout.replace("\n", "")
    assert history["rejected"] in (tmp_path / "run-partial.html").read_text(encoding="utf-8")


def test_unknown_run_is_one_clear_error(cli: Any) -> None:
    result = cli("runs", "show", "999999")
    assert result.exit_code == 1
    assert "no run 999999" in result.stderr and "erpsync runs" in result.stderr
    assert "Traceback" not in result.output
