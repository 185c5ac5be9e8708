"""Honest outcomes (#16.6): one classification of what happened to each row.

``sync.report.outcomes`` classifies every row (written, skipped, conflict, quarantined at
plan, rejected by the platform, deferred, failed, held for a person); the terminal, ``--json``,
the run record and the HTML report all use it, and the exit codes follow from it. A row the
platform rejected waits, and is retried by itself when its ERP row or its mapping changes.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.core.records import QuarantineEntry
from sync.playground import Playground, shipped_mappings, start_playground
from sync.report.outcomes import ATTENTION, CLASSES, classify, plan_outcomes, run_outcomes, run_status
from sync.state.store import StateStore

# --- the classification itself ---------------------------------------------------------------


def test_every_run_outcome_has_one_class() -> None:
    assert classify("ok") == "written" and classify("skipped") == "skipped"
    assert classify("quarantined") == "rejected"  # quarantined while applying: the platform refused
    assert [classify(o) for o in ("deferred", "failed", "held")] == ["deferred", "failed", "held"]
    assert classify("", "validate") == "quarantined" and classify("", "apply") == "rejected"
    assert set(ATTENTION) < set(CLASSES)


def test_a_run_with_a_rejected_row_is_partial_and_says_what_to_do() -> None:
    counts = {"smartkasa/products/create/ok": 4, "smartkasa/products/update/quarantined": 1}
    out = run_outcomes(counts)
    assert out.counts["written"] == 4 and out.counts["rejected"] == 1 and out.status == "partial"
    assert out.line() == "4 written, 1 rejected"
    (step,) = out.next_steps()
    assert "retry-failed" in step and "mapping changes" in step
    assert run_status({("smartkasa", "products", "create", "ok"): 2}) == "ok"
    assert run_status({("smartkasa", "products", "create", "held"): 1}) == "partial"


def test_a_plan_counts_each_held_record_once() -> None:
    def q(key: str, field: str, stage: str) -> QuarantineEntry:
        return QuarantineEntry("smartepi", "employees", key, field, "format", "bad", stage=stage)

    out = plan_outcomes([q("1", "email", "validate"), q("1", "phone", "validate"), q("2", "", "apply")])
    assert (out.counts["quarantined"], out.counts["rejected"], out.attention) == (1, 1, 2)


# --- through the CLI ---------------------------------------------------------------------------


def _maps(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, folder / p.name)) for p in shipped_mappings()]


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    with start_playground(
        tmp_path / "pg", employees=6, products_epi=2, products_kasa=4, mappings=_maps(tmp_path / "maps")
    ) as play:
        yield play


def _cli(pg: Playground, *args: str) -> Result:
    result = CliRunner().invoke(
        app, list(args), env={"ERPSYNC_CONFIG": str(pg.config_path), "COLUMNS": "240"}
    )
    assert "Traceback" not in result.output
    return result


def _erp(pg: Playground, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(pg.erp_path) as conn:
        return conn.execute(sql, params).fetchall()


def _reject_one_product(pg: Playground) -> tuple[str, dict[str, Any]]:
    """Delete an unused category in the SmartKasa console and move a product into it in the ERP:
    a fast apply (which trusts its bindings) sends it and the platform answers 422."""
    st = StateStore(pg.settings().state_url)
    categories = st.bindings(pg.tenant, "smartkasa", "categories")
    busy = {
        c
        for (c,) in _erp(
            pg, "SELECT parent_code FROM kasa_categories UNION SELECT category_code FROM kasa_products"
        )
    }
    leaf = next(code for code in sorted(categories) if code not in busy)
    record = next(c for c in pg.kasa_state()["categories"] if str(c["id"]) == categories[leaf])
    pg.kasa_admin("DELETE", f"/records/categories/{record['id']}")
    sku = _erp(pg, "SELECT sku FROM kasa_products ORDER BY sku")[0][0]
    _erp(pg, "UPDATE kasa_products SET category_code = ? WHERE sku = ?", leaf, sku)
    return sku, record


def test_a_plan_with_only_quarantined_rows_does_not_say_nothing_to_do(pg: Playground) -> None:
    assert _cli(pg, "apply", "--yes", "--quiet").exit_code == 0
    result = _cli(pg, "plan")
    assert result.exit_code == 0 and "Nothing to do" in result.stdout

    key = _erp(pg, "SELECT matricula FROM funcionarios ORDER BY matricula")[0][0]
    _erp(pg, "UPDATE funcionarios SET email = 'not-an-email' WHERE matricula = ?", key)
    result = _cli(pg, "plan")
    assert result.exit_code == 0, result.output  # nothing to write (documented: exit 0)
    assert "Nothing to do" not in result.stdout
    assert "No changes to write, but 1 row(s) need attention: 1 quarantined" in result.stdout
    assert "fix the ERP rows" in result.stdout
    data = json.loads(_cli(pg, "plan", "--json").stdout)
    assert data["outcomes"]["quarantined"] == 1 and data["next_steps"]
    html = pg.config_path.parent / "plan.html"
    _cli(pg, "plan", "--html", str(html))
    assert "No changes to write" in html.read_text(encoding="utf-8")


def test_an_apply_with_a_rejected_row_is_partial_everywhere_and_retried_when_the_mapping_changes(
    pg: Playground,
) -> None:
    assert _cli(pg, "apply", "--yes", "--quiet").exit_code == 0
    sku, record = _reject_one_product(pg)

    html = pg.config_path.parent / "run.html"
    result = _cli(pg, "apply", "--yes", "--fast", "--json", "--html", str(html))
    assert result.exit_code == 3, result.output  # finished, but a row needs attention
    data = json.loads(result.stdout)
    assert data["status"] == "partial" == run_outcomes(data["counts"]).status
    assert data["outcomes"] == run_outcomes(data["counts"]).to_dict()
    assert data["outcomes"]["rejected"] == 1 and data["quarantined"] == 1
    assert "1 rejected" in html.read_text(encoding="utf-8")
    status = json.loads(_cli(pg, "status", "--json").stdout)
    assert status["runs"][0]["status"] == "partial"  # the run record agrees

    # Nothing changed: the rejected row waits, and the plan says how many and how to retry now.
    pg.kasa_admin("POST", "/seed/categories", json=[record])  # restored in the console
    result = _cli(pg, "plan")
    assert "Nothing to do" not in result.stdout and "1 rejected" in result.stdout
    assert "retry-failed" in result.stdout
    assert json.loads(_cli(pg, "plan", "--json").stdout)["outcomes"]["rejected"] == 1

    # A change of the products mapping (here a wider title limit) retries it by itself.
    kasa = next(p for p in pg.settings().tenants[pg.tenant].mappings if Path(p).name == "smartkasa.yaml")
    spec = yaml.safe_load(Path(kasa).read_text(encoding="utf-8"))
    spec["entities"]["products"]["fields"]["title"]["max_length"] = 201
    Path(kasa).write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    result = _cli(pg, "apply", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(_cli(pg, "status", "--json").stdout)["quarantine"] == []
    st = StateStore(pg.settings().state_url)
    remote_id = st.bindings(pg.tenant, "smartkasa", "products")[sku]
    product = next(p for p in pg.kasa_state()["products"] if str(p["id"]) == remote_id)
    assert str(product["category_id"]) == str(record["id"])
    assert _cli(pg, "plan").exit_code == 0


def test_the_exit_codes_are_documented_in_one_table() -> None:
    import sync.cli
    from sync.report.outcomes import EXIT_CODES

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "docs/exit-codes.md" in readme and "docs/exit-codes.md" in (sync.cli.__doc__ or "")
    for code, meaning in EXIT_CODES:
        assert f"| {code} | {meaning} |" in doc
        assert f"\n{code}    " in (sync.cli.__doc__ or "")
    for cls in CLASSES:
        assert f"\n| {cls} |" in doc


# --- quarantine lines (#16.11) -------------------------------------------------------------------


def test_quarantine_lines_show_column_value_rule_and_every_problem_grouped_by_rule(pg: Playground) -> None:
    assert _cli(pg, "apply", "--yes", "--quiet").exit_code == 0
    keys = [k for (k,) in _erp(pg, "SELECT matricula FROM funcionarios ORDER BY matricula")]
    _erp(pg, "UPDATE funcionarios SET email = 'ana.at.example' WHERE matricula IN (?, ?)", keys[0], keys[1])
    _erp(
        pg,
        "UPDATE funcionarios SET nome = ?, email = 'bob.at.example' WHERE matricula = ?",
        "x" * 151,
        keys[2],
    )
    result = _cli(pg, "plan")
    out = result.stdout
    assert "by rule" in out and "ERP column" in out
    rows = [[c.strip() for c in line.strip("│┃ ").split("│")] for line in out.splitlines() if "│" in line]
    assert ["quarantined", "smartepi/employees", "format", "2"] in rows
    assert ["quarantined", "smartepi/employees", "max_length", "1"] in rows
    assert "ana.at.example" not in out and "an*** (14 chars)" in out  # personal data: only its start
    data = json.loads(_cli(pg, "plan", "--json").stdout)
    (both,) = [q for q in data["quarantine"] if q["erp_key"] == keys[2]]
    assert both["rule"] == "max_length" and both["column"] == "nome"
    assert "also email (ERP column email): format" in both["message"]
    assert "bob.at.example" not in json.dumps(data)


def test_per_row_warnings_are_not_logged_when_the_report_lists_the_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from sync.cli.apply import rows_in_report

    log = logging.getLogger("erpsync.apply")
    with caplog.at_level(logging.WARNING, logger="erpsync.apply"):
        with rows_in_report(True):
            log.warning("smartepi/employees 7 deferred: timeout", extra={"key": "7"})
            log.warning("the run stopped")  # not about one row: kept
        with rows_in_report(False):
            log.warning("smartepi/employees 8 deferred: timeout", extra={"key": "8"})
    assert [r.getMessage() for r in caplog.records] == [
        "the run stopped",
        "smartepi/employees 8 deferred: timeout",
    ]
