"""Values of `sensitive` fields appear in no message and no file: plan files, HTML, quarantine, why.

Runs the CLI against the playground (both sandboxes over HTTP, the generated SQLite ERP).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.playground import Playground, shipped_mappings, start_playground
from sync.state.store import StateStore


def run(pg: Playground, *args: str) -> Result:
    result = CliRunner().invoke(
        app, list(args), env={"ERPSYNC_CONFIG": str(pg.config_path), "COLUMNS": "240"}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def cpfs(pg: Playground) -> dict[str, str]:
    with sqlite3.connect(pg.erp_path) as conn:
        rows = conn.execute("SELECT matricula, cpf FROM funcionarios WHERE cpf IS NOT NULL").fetchall()
    assert rows
    return dict(rows)


def leaked(values: dict[str, str], text: str) -> list[str]:
    digits = {v: "".join(ch for ch in v if ch.isdigit()) for v in values.values()}
    return [v for v, d in digits.items() if v in text or d in text]


@pytest.fixture
def typed_cpf(tmp_path: Path) -> Iterator[Playground]:
    """The shipped mappings, with the sensitive CPF typed as an integer: every row fails with
    a message that used to quote it (``expected integer: … '123.456.789-09'``)."""
    epi, kasa = shipped_mappings()
    text = epi.read_text(encoding="utf-8")
    line = "identification: {from: cpf, sensitive: true, max_length: 20}"
    assert line in text
    custom = tmp_path / "smartepi.yaml"
    custom.write_text(text.replace(line, "identification: {from: cpf, sensitive: true, type: integer}"))
    with start_playground(
        tmp_path / "pg", employees=6, products_epi=1, products_kasa=1, mappings=[custom, kasa]
    ) as pg:
        yield pg


def test_quarantine_messages_status_why_and_reports_mask_sensitive_values(
    typed_cpf: Playground, tmp_path: Path
) -> None:
    pg = typed_cpf
    values = cpfs(pg)
    plan_file, html = tmp_path / "plan.json", tmp_path / "plan.html"
    outputs = [run(pg, "plan", "--out", str(plan_file), "--html", str(html), "--detail")]
    outputs.append(run(pg, "plan", "--json"))
    outputs.append(run(pg, "status"))
    key = next(iter(values))
    outputs.append(run(pg, "why", "employees", key))
    outputs.append(run(pg, "why", "employees", key, "--json"))
    quarantined = [
        q for q in StateStore(pg.settings().state_url).quarantined(pg.tenant) if q.entity == "employees"
    ]
    assert {q.erp_key for q in quarantined} >= set(values)
    assert all(q.rule == "type" and q.field == "identification" for q in quarantined)
    assert "expected integer" in outputs[3].stdout  # the reason is still told, without the value
    texts = [r.stdout + r.stderr for r in outputs]
    texts += [plan_file.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")]
    texts += [q.message + (q.value or "") for q in quarantined]
    for text in texts:
        assert not leaked(values, text), leaked(values, text)


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[Playground]:
    with start_playground(tmp_path / "pg", employees=8, products_epi=1, products_kasa=1) as pg:
        yield pg


def test_a_saved_plan_holds_no_sensitive_value_and_applies_them_exactly(
    shipped: Playground, tmp_path: Path
) -> None:
    pg = shipped
    values = cpfs(pg)
    plan_file = tmp_path / "plan.json"
    assert run(pg, "plan", "--out", str(plan_file)).exit_code == 2
    saved = plan_file.read_text(encoding="utf-8")
    assert not leaked(values, saved)
    assert '"$masked": true' in saved
    result = run(pg, "apply", str(plan_file), "--quiet")
    assert result.exit_code == 0, result.output
    employees = [e for e in pg.epi_state()["employees"] if not e.get("_deleted")]
    assert sorted(e["identification"] for e in employees if e["identification"] in values.values()) == sorted(
        values.values()
    )
    assert run(pg, "plan").exit_code == 0  # nothing left to do
