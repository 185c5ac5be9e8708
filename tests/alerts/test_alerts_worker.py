"""A real Celery worker evaluates a tenant's alerts when its reconcile task ends: one firing
message at a local receiver, and one resolved message after the next reconcile."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from alert_receivers import receivers

from sync.core.records import QuarantineEntry
from sync.settings import Settings
from sync.state.store import StateStore

SERVICE_TESTS = str(Path(__file__).resolve().parent.parent / "service")
if SERVICE_TESTS not in sys.path:  # the worker launcher and config builders of tests/service
    sys.path.append(SERVICE_TESTS)

from processes import running, service_env, start_worker, wait_until  # noqa: E402
from service_helpers import service_config, write_config  # noqa: E402

pytestmark = [pytest.mark.services]


def test_a_worker_checks_alerts_after_each_reconcile(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync import celery_app, tasks

    tenant = f"t{uuid.uuid4().hex[:10]}"
    namespace = f"erpsync-test-{uuid.uuid4().hex[:10]}"
    state_url = f"sqlite:///{tmp_path}/state.db"
    store = StateStore(state_url)
    store.quarantine(
        tenant,
        [
            QuarantineEntry("smartepi", "employees", k, None, "cpf_invalid", "bad", None, "h")
            for k in ("E1", "E2")
        ],
    )
    with receivers() as (http, _):
        data = service_config(redis_url, state_url, [tenant])
        data["tenants"][tenant]["alerts"] = {
            "webhooks": [{"url": f"{http.url}/json", "format": "json"}],
            "thresholds": {"rejected_rows": 1},
        }
        config = write_config(tmp_path / "config.yaml", data)
        env = service_env(config, namespace)
        monkeypatch.setenv("ERPSYNC_NAMESPACE", namespace)
        celery_app.configure(Settings(**data))
        tasks.configure_runtime()
        r = redis_lib.Redis.from_url(redis_url)
        try:
            with running(start_worker(env, tmp_path / "worker.log", name="alerts", concurrency=1)):
                tasks.reconcile.apply_async((tenant,))
                assert wait_until(lambda: len(http.posts) >= 1, timeout=30), "no firing message"
                assert [b["status"] for _, b in http.posts] == ["firing"]
                assert http.posts[0][1]["condition"] == "rejected_rows"

                store.release_many(tenant, "smartepi", "employees", ["E1"])
                tasks.reconcile.apply_async((tenant,), kwargs={"mode": "fast"})
                assert wait_until(lambda: len(http.posts) >= 2, timeout=30), "no resolved message"
                assert [b["status"] for _, b in http.posts] == ["firing", "resolved"]
        finally:
            tasks.configure_runtime()
            for key in r.scan_iter(f"{namespace}*", count=1000):
                r.delete(key)
            r.close()
