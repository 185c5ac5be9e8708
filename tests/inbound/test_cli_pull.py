"""``erpsync pull`` end to end: config file → SmartEPI sandbox over HTTP → JSONL sink; reruns add nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from epi_env import API_KEY, EpiEnv
from typer.testing import CliRunner

from sync.cli import app
from sync.state.store import StateStore


def test_pull_command_backfills_into_jsonl(tmp_path: Path, serve: Any) -> None:
    env = EpiEnv()
    env.generate("withdrawals", 120, seed=2)
    server = serve(env.app)
    state_url = f"sqlite:///{tmp_path}/state.db"
    store = StateStore(state_url)
    env.bind_all(store, "acme")
    config = {
        "state_url": state_url,
        "tenants": {
            "acme": {
                "erp": {"kind": "sql", "url": f"sqlite:///{tmp_path}/erp.db"},
                "mappings": ["none.yaml"],
                "smartepi": {"base_url": f"{server.url}/v1", "api_key": API_KEY},
                "sink": {"kind": "jsonl", "directory": str(tmp_path / "out")},
            }
        },
    }
    path = tmp_path / "erpsync.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    args = ["pull", "--config", str(path), "--since", "2000-01-01", "--stream", "withdrawals"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "withdrawals" in first.output and API_KEY not in first.output
    second = runner.invoke(app, ["pull", "--config", str(path), "--stream", "withdrawals"])
    assert second.exit_code == 0, second.output
    lines = (tmp_path / "out" / "withdrawals.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["remote_id"] for x in lines) == sorted(
        env.tenant.tables["withdrawals"].records
    )

    bad = runner.invoke(app, ["pull", "--config", str(path), "--since", "yesterday"])
    assert bad.exit_code != 0
    unknown = runner.invoke(app, ["pull", "--config", str(path), "--stream", "nope"])
    assert unknown.exit_code == 1 and "unknown pull stream" in unknown.output
