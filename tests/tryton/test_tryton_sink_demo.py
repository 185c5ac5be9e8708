"""``erpsync demo --erp tryton``: the whole loop on the real trytond, and its one-line error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from sync.cli import app
from sync.demo import tryton_demo


def test_demo_runs_the_whole_loop(tryton_database: Path, tmp_path: Path) -> None:
    shutil.copytree(tryton_database, tmp_path / "tryton-seeded")  # the session's build, not a new one
    with (tmp_path / "out.txt").open("w") as out:
        figures: dict[str, Any] = tryton_demo.run_tryton_tour(
            tmp_path,
            console=Console(file=out, width=120),
            size=os.environ.get("ERPSYNC_TEST_TRYTON_SIZE", "tiny"),
        )
    assert figures["converged"]
    landed = figures["landed"]
    assert landed["internal shipments done"] > 0
    assert landed["POS sales posted"] > 0
    epi = figures["inbound"]["demo"]["streams"]
    assert epi["withdrawals"] > 0 and epi["returns"] > 0


def test_demo_without_the_extra_says_what_to_install(monkeypatch: Any) -> None:
    monkeypatch.setattr(tryton_demo, "tryton_available", lambda: False)
    result = CliRunner().invoke(app, ["demo", "--erp", "tryton"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'erpsync[tryton]'" in lines[0]
