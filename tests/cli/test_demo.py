"""`erpsync demo --dir TMP`: the whole loop, fast, with self-contained reports and no secret."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import sync.demo.tour as tour
from sync.cli import app
from sync.playground import Playground

EXTERNAL_URL = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import"""
)


def test_demo_runs_converges_and_writes_clean_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Playground] = []
    real_start = tour.start_playground

    def spy(*args: Any, **kwargs: Any) -> Playground:  # records the generated secrets; changes nothing
        pg = real_start(*args, **kwargs)
        started.append(pg)
        return pg

    folder = tmp_path / "demo"
    runner = CliRunner()
    # A small first run leaves its files behind: the measured run must start afresh in the same folder.
    first = runner.invoke(app, ["demo", "--dir", str(folder), "--employees", "5"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output[-3000:]
    monkeypatch.setattr(tour, "start_playground", spy)
    t0 = time.monotonic()
    result = runner.invoke(app, ["demo", "--dir", str(folder)], env={"COLUMNS": "200"})
    took = time.monotonic() - t0
    assert result.exit_code == 0, result.output
    assert took < 60, f"the demo took {took:.1f} s"

    (pg,) = started
    secrets = [pg.epi_key, pg.kasa_key, *pg.env.values()]
    plan_html, run_html = folder / "reports" / "plan.html", folder / "reports" / "run.html"
    out = result.output
    assert f"Plan report: {plan_html}" in out and f"Run report:  {run_html}" in out
    assert "A third plan is empty" in out and "files of an earlier demo replaced" in out
    assert "changed to" in out and "console" in out  # the console edit is part of the tour
    for text in [out, *(p.read_text(encoding="utf-8") for p in (plan_html, run_html))]:
        for secret in secrets:
            assert secret not in text, "a secret reached the demo output or a report"
    for page in (plan_html, run_html):
        html = page.read_text(encoding="utf-8")
        assert html.lstrip().lower().startswith("<!doctype html>") and "<style" in html
        assert not EXTERNAL_URL.search(html), (page.name, EXTERNAL_URL.search(html))
    assert "jobRoleId" in plan_html.read_text(encoding="utf-8")  # the console edit coming back
