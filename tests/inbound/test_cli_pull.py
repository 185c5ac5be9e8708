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


def test_pull_shares_the_tenants_rate_governor(
    tmp_path: Path, serve: Any, redis_url: str, monkeypatch: Any
) -> None:
    """Issue #15 item 1: the pull path built its own clients, with no Redis rate governor, so a
    pull did not share the tenant's quota with the workers. Its clients now come from the runtime."""
    import secrets

    import redis

    namespace = "pulltest" + secrets.token_hex(4)
    monkeypatch.setenv("ERPSYNC_NAMESPACE", namespace)
    env = EpiEnv()
    env.generate("withdrawals", 30, seed=3)
    server = serve(env.app)
    state_url = f"sqlite:///{tmp_path}/state.db"
    env.bind_all(StateStore(state_url), "acme")
    config = {
        "state_url": state_url,
        "redis_url": redis_url,
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
    got = CliRunner().invoke(
        app, ["pull", "--config", str(path), "--since", "2000-01-01", "--stream", "withdrawals"]
    )
    assert got.exit_code == 0, got.output
    r = redis.Redis.from_url(redis_url)
    try:
        keys = r.keys(f"{namespace}:erpsync:gov:smartepi:acme*")
        assert keys, "the pull did not go through the tenant's Redis rate governor"
        for k in keys:
            r.delete(k)
    finally:
        r.close()
