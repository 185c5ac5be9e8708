"""Audit finding 1: ``/training-records`` is not a documented endpoint (contract §3.9). A server
that does not serve it (404, 405, or API Gateway's 403 "Missing Authentication Token") must not
make ``erpsync pull`` fail: the stream is marked unavailable, its cursor stays, the others go on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from epi_env import API_KEY, EpiEnv
from typer.testing import CliRunner

from sync.cli import app
from sync.state.store import StateStore


def write_config(
    tmp_path: Path, base_url: str, state_url: str, *, extra: dict[str, Any] | None = None, **epi: Any
) -> Path:
    """An erpsync.yaml for tenant ``acme``: SmartEPI at ``base_url``, inbound rows to JSONL."""
    config = {
        "state_url": state_url,
        **(extra or {}),
        "tenants": {
            "acme": {
                "erp": {"kind": "sql", "url": f"sqlite:///{tmp_path}/erp.db"},
                "mappings": ["none.yaml"],
                "smartepi": {"base_url": base_url, "api_key": API_KEY, **epi},
                "sink": {"kind": "jsonl", "directory": str(tmp_path / "out")},
            }
        },
    }
    path = tmp_path / "erpsync.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("mode", ["404", "405", "403"])
def test_pull_skips_a_training_records_endpoint_the_server_does_not_serve(
    tmp_path: Path, serve: Any, mode: str, caplog: Any
) -> None:
    env = EpiEnv()
    env.sandbox.config.training_records = mode
    env.generate("withdrawals", 15, seed=4)
    server = serve(env.app)
    state_url = f"sqlite:///{tmp_path}/state.db"
    store = StateStore(state_url)
    env.bind_all(store, "acme")
    store.set_cursor("acme", "smartepi", "training_records", "2020-01-01T00:00:00.000000Z")
    path = write_config(tmp_path, f"{server.url}/v1", state_url)
    caplog.set_level(logging.WARNING, logger="sync.engine.pull")
    result = CliRunner().invoke(app, ["pull", "--config", str(path), "--since", "2000-01-01"])
    assert result.exit_code == 0, result.output
    assert "stopped" not in result.output and API_KEY not in result.output
    # the other streams went on
    assert len((tmp_path / "out" / "withdrawals.jsonl").read_text().splitlines()) == 15
    assert store.get_cursor("acme", "smartepi", "withdrawals") is not None
    # cursor untouched, one warning naming the stream
    assert store.get_cursor("acme", "smartepi", "training_records") == "2020-01-01T00:00:00.000000Z"
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "training_records" in warnings[0].getMessage()


def test_a_rejected_key_is_still_an_error_for_training_records(
    tmp_path: Path, serve: Any, monkeypatch: Any
) -> None:
    """Only an unknown route is "unavailable": a key the gateway denies (403 deny body) on a
    pull of training records alone stays an error, exit code 1."""
    env = EpiEnv()
    server = serve(env.app)
    state_url = f"sqlite:///{tmp_path}/state.db"
    path = write_config(
        tmp_path,
        f"{server.url}/v1",
        state_url,
        api_key="sk_wrong_key",
        key_activation_wait_seconds=0.2,  # not 90 s
    )
    args = ["pull", "--config", str(path), "--stream", "training_records"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "stopped" in result.output


def test_the_scheduled_pull_marks_it_unavailable_too(
    tmp_path: Path, serve: Any, redis_url: str, monkeypatch: Any
) -> None:
    """The Beat task ``erpsync.pull_inbound`` (run eagerly here, as in a worker)."""
    import uuid

    from sync import celery_app, tasks
    from sync.settings import load_settings

    env = EpiEnv()
    env.sandbox.config.training_records = "404"
    env.generate("withdrawals", 5, seed=6)
    server = serve(env.app)
    state_url = f"sqlite:///{tmp_path}/state.db"
    store = StateStore(state_url)
    env.bind_all(store, "acme")
    path = write_config(tmp_path, f"{server.url}/v1", state_url, extra={"redis_url": redis_url})
    monkeypatch.setenv("ERPSYNC_NAMESPACE", f"erpsync-test-{uuid.uuid4().hex[:10]}")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(path)
    celery_app.configure(settings)
    celery_app.app.conf.task_always_eager = True
    tasks.configure_runtime()
    try:
        result = tasks.pull_inbound.apply(args=("acme",)).get(timeout=60)
    finally:
        celery_app.app.conf.task_always_eager = False
        tasks.configure_runtime()
    streams = {s["stream"]: s for s in result["streams"]}
    assert streams["training_records"]["error"] is None
    assert streams["training_records"]["unavailable"]
    assert streams["withdrawals"]["error"] is None and streams["withdrawals"]["written"] == 5
