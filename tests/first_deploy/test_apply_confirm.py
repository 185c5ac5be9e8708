"""Apply asks before writing (#16.8).

Without a saved plan, `erpsync apply` shows the plan and asks on a terminal; `--yes` skips
the question; without a terminal it needs `--yes` or a plan file, and says so in one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import sync.cli.apply as apply_cli
from sync.cli import app
from sync.playground import Playground, start_playground
from sync.state.store import StateStore


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    with start_playground(tmp_path / "pg", employees=4, products_epi=2, products_kasa=2) as play:
        yield play


def _cli(pg: Playground, *args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(
        app, list(args), input=stdin, env={"ERPSYNC_CONFIG": str(pg.config_path), "COLUMNS": "200"}
    )
    assert "Traceback" not in result.output
    return result


def _runs(pg: Playground) -> int:
    return len(StateStore(pg.settings().state_url).runs(pg.tenant, limit=50))


def _employees(pg: Playground) -> int:
    return len(pg.epi_state()["employees"])


def test_without_a_terminal_apply_needs_yes_or_a_plan_file(pg: Playground) -> None:
    result = _cli(pg, "apply")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--yes" in lines[0] and "plan.json" in lines[0]
    assert _runs(pg) == 0  # nothing ran, nothing was written


def test_on_a_terminal_apply_shows_the_plan_and_a_no_writes_nothing(
    pg: Playground, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_cli, "_interactive", lambda: True)
    before = _employees(pg)
    result = _cli(pg, "apply", stdin="n\n")
    assert result.exit_code == 1, result.output
    assert "Plan" in result.stdout and "create" in result.stdout and "Apply this plan?" in result.stdout
    assert "Nothing applied" in result.stdout
    assert _runs(pg) == 0 and _employees(pg) == before


def test_on_a_terminal_a_yes_applies_exactly_the_plan_shown(
    pg: Playground, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_cli, "_interactive", lambda: True)
    result = _cli(pg, "apply", stdin="y\n")
    assert result.exit_code == 0, result.output
    assert "Apply this plan?" in result.stdout and "Run" in result.stdout
    (run,) = StateStore(pg.settings().state_url).runs(pg.tenant, limit=5)
    assert run.status == "ok" and run.plan_hash  # the plan shown is the plan applied
    # nothing left to do: the question is not asked again for an empty plan
    result = _cli(pg, "apply", stdin="")
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.stdout and "Apply this plan?" not in result.stdout


def test_yes_and_a_plan_file_never_ask(pg: Playground, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    assert _cli(pg, "plan", "--out", str(plan_file)).exit_code == 2
    result = _cli(pg, "apply", str(plan_file), "--quiet")
    assert result.exit_code == 0, result.output
    assert "Apply this plan?" not in result.output
    result = _cli(pg, "apply", "-y", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "ok"


def test_json_output_needs_yes_or_a_plan_file_even_on_a_terminal(
    pg: Playground, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_cli, "_interactive", lambda: True)
    result = _cli(pg, "apply", "--json", stdin="y\n")
    assert result.exit_code == 1 and "--yes" in result.stderr and result.stdout == ""
    assert _runs(pg) == 0
