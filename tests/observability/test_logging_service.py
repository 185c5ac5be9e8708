"""`erpsync worker` and `erpsync beat` say what they do (issue #17, item 2).

Real processes, real Redis, the real engine against the playground's sandboxes: before this,
both printed nothing after Celery's banner (Celery redirected stderr into a logger, and the
handler writing to stderr fed the proxy, which dropped every line). Now, in JSON mode, the
worker logs it is ready, then one line when a reconcile starts and one when it ends, with
tenant, run id, kind, counts and duration; beat logs what it schedules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from sync import celery_app, tasks
from sync.playground import Playground, start_playground
from sync.settings import load_settings

pytestmark = pytest.mark.services


@pytest.fixture
def pg(tmp_path: Path, redis_url: str) -> Iterator[Playground]:
    with start_playground(
        tmp_path / "pg", employees=5, products_epi=2, products_kasa=3, redis_url=redis_url
    ) as play:
        yield play


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    import redis

    name = f"erpsync-test-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{name}*", count=1000):
        client.delete(key)
    client.close()


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of stderr, each one JSON object (a non-JSON line fails the test)."""
    text = path.read_text(errors="replace")
    complete = text[: text.rfind("\n") + 1]  # not a line still being written
    out = []
    for line in complete.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON line in {path.name}: {line!r}") from None
    return out


@contextmanager
def process(args: list[str], env: dict[str, str], folder: Path, name: str) -> Iterator[Path]:
    """Run ``python -m sync ARGS``; yields its stderr file; SIGTERM to its group at the end."""
    err = folder / f"{name}.err"
    with (folder / f"{name}.out").open("wb") as out, err.open("wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync", *args], env=env, stdout=out, stderr=errf, start_new_session=True
        )
        try:
            yield err
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_for(path: Path, match: Callable[[dict[str, Any]], bool], timeout: float = 50) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in json_lines(path) if match(r)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no matching line in {path.name}:\n{path.read_text(errors='replace')[-3000:]}")


def test_worker_logs_ready_and_each_task_start_and_end_in_json(
    pg: Playground, redis_url: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "ERPSYNC_CONFIG": str(pg.config_path), "ERPSYNC_NAMESPACE": namespace}
    args = ["--log-format", "json", "worker", "--concurrency", "1", "--queues", "reconcile"]
    with process([*args, "--hostname", f"{namespace}@%h"], env, tmp_path, "worker") as err:
        ready = wait_for(err, lambda r: r.get("event") == "worker_ready")
        assert (
            ready["level"] == "INFO" and ready["queues"] == ["reconcile"] and ready["tenants"] == [pg.tenant]
        )

        monkeypatch.setenv("ERPSYNC_NAMESPACE", namespace)
        celery_app.configure(load_settings(pg.config_path))
        sent = tasks.reconcile.apply_async((pg.tenant,), kwargs={"mode": "full"})

        end = wait_for(err, lambda r: r.get("event") == "task_end" and r.get("task_id") == sent.id)
    records = json_lines(err)
    start = next(r for r in records if r.get("event") == "task_start" and r.get("task_id") == sent.id)
    assert start["level"] == "INFO" and start["tenant"] == pg.tenant and start["kind"] == "reconcile"
    assert end["level"] == "INFO" and end["tenant"] == pg.tenant and end["kind"] == "reconcile"
    assert end["status"] == "ok" and isinstance(end["run_id"], int) and end["duration_s"] > 0
    assert end["counts"]["ok"] > 0 and end["requests"] > 0
    assert f"run {end['run_id']}" in end["msg"]
    # Celery's own INFO lines come through the same handler, and the engine's carry the run id.
    assert any(r["logger"].startswith("celery") and "received" in r["msg"] for r in records)
    during = [r for r in records if r.get("run_id") == end["run_id"] and r.get("event") != "task_end"]
    assert all(r["tenant"] == pg.tenant for r in during)


def test_beat_logs_what_it_schedules(pg: Playground, namespace: str, tmp_path: Path) -> None:
    env = {**os.environ, "ERPSYNC_CONFIG": str(pg.config_path), "ERPSYNC_NAMESPACE": namespace}
    args = [
        "--log-format",
        "json",
        "beat",
        "--schedule",
        str(tmp_path / "schedule"),
        "--pidfile",
        str(tmp_path / "beat.pid"),
    ]
    with process(args, env, tmp_path, "beat") as err:
        started = wait_for(err, lambda r: r.get("event") == "beat_start")
        wait_for(err, lambda r: r.get("entry") == f"{pg.tenant}:reconcile-full")
    entries = {r["entry"]: r for r in json_lines(err) if r.get("event") == "beat_entry"}
    assert started["level"] == "INFO" and started["entries"] == len(entries) >= 4
    assert entries[f"{pg.tenant}:reconcile-fast"]["task"] == "erpsync.reconcile"
    assert "every" in entries[f"{pg.tenant}:pull"]["msg"]


def test_serve_access_lines_go_through_the_same_handler(pg: Playground, tmp_path: Path) -> None:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "ERPSYNC_CONFIG": str(pg.config_path)}
    with process(["--log-format", "json", "serve", "--port", str(port)], env, tmp_path, "serve") as err:
        wait_for(err, lambda r: "Application startup complete" in r["msg"])
        assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=10).status_code == 200
        access = wait_for(err, lambda r: r["logger"] == "uvicorn.access")
    assert "GET /health/live" in access["msg"] and access["level"] == "INFO"
    assert "color_message" not in access
