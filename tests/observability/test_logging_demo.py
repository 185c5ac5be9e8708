"""`erpsync --log-format json --log-level DEBUG demo`: every log line is JSON, run-scoped lines
carry the run id, and no secret of the demo's configuration or session reaches the output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import sync.demo.tour as tour
from sync.cli import app
from sync.observability import logging as obs
from sync.playground import Playground
from sync.sandbox.smartkasa import tokens


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    obs.set_overrides()
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def test_demo_at_debug_in_json_mode_logs_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    started: list[Playground] = []
    issued: list[str] = []  # SmartKasa session tokens the sandbox handed out
    real_start, real_encode = tour.start_playground, tokens.encode

    def spy_start(*args: Any, **kwargs: Any) -> Playground:
        pg = real_start(*args, **kwargs)
        started.append(pg)
        return pg

    def spy_encode(*args: Any, **kwargs: Any) -> str:
        token = real_encode(*args, **kwargs)
        issued.append(token)
        return token

    monkeypatch.setattr(tour, "start_playground", spy_start)
    monkeypatch.setattr(tokens, "encode", spy_encode)
    result = CliRunner().invoke(
        app,
        [
            "--log-format",
            "json",
            "--log-level",
            "DEBUG",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--employees",
            "5",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output[-3000:]

    (pg,) = started
    secrets = {
        "SmartEPI api key": pg.epi_key,
        "SmartKasa api key": pg.kasa_key,
        **{f"${name}": value for name, value in pg.env.items()},  # password, webhook secret, event token
        **{f"SmartKasa session token {i}": t for i, t in enumerate(issued)},
    }
    assert len(pg.env) >= 5 and issued, "the demo should log in to SmartKasa and use every kind of secret"
    everything = result.stdout + result.stderr
    leaked = [name for name, value in secrets.items() if value in everything]
    assert leaked == [], f"secrets in the demo's output: {leaked}"

    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert len(records) > 100  # DEBUG: every HTTP exchange
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    levels = {r["level"] for r in records}
    assert "DEBUG" in levels
    in_runs = [r for r in records if "run_id" in r]
    assert in_runs and all(r["tenant"] == pg.tenant and r["kind"] in ("apply", "plan") for r in in_runs)
    assert any(r["logger"].startswith("sync.clients") for r in in_runs)  # the engine's HTTP lines
