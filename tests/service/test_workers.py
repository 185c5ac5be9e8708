"""The Celery service end to end: real Redis, real worker and beat processes, never eager mode.

The engine is the instrumented ``FakeEngine`` (its ERP and "sandbox" live in Redis), so
these tests check the service layer itself: intake, throttle, routing, redelivery after
kill -9, the tenant lease, beat. Each module run uses its own Redis key namespace.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from fake_engine import FakeWorld
from fastapi.testclient import TestClient
from processes import Proc, running, service_env, start_beat, start_worker, wait_until
from service_helpers import TOKENS, service_config, write_config

from sync import celery_app, tasks
from sync.settings import Settings
from sync.web import create_app

pytestmark = [pytest.mark.services, pytest.mark.slow]
ENTITY = "employees"


class Service:
    def __init__(
        self,
        root: Path,
        redis_url: str,
        state_url: str,
        tenants: list[str],
        *,
        celery: dict[str, Any] | None = None,
        **tenant_overrides: Any,
    ):
        self.root = root
        self.namespace = f"erpsync-test-{uuid.uuid4().hex[:10]}"
        data = service_config(redis_url, state_url, tenants, **(celery or {}))
        for tenant, extra in tenant_overrides.items():
            data["tenants"][tenant].update(extra)
        self.config = write_config(root / "config.yaml", data)
        self.settings = Settings(**data)
        self.redis = redis_lib.Redis.from_url(redis_url)
        self.world = FakeWorld(self.redis, self.namespace)
        self.env = service_env(self.config, self.namespace)

    def worker(self, name: str, concurrency: int = 2) -> Proc:
        return start_worker(self.env, self.root / f"{name}.log", name=name, concurrency=concurrency)

    def use_here(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Configure this test process to enqueue into the service (same broker and namespace)."""
        monkeypatch.setenv("ERPSYNC_NAMESPACE", self.namespace)
        celery_app.configure(self.settings)
        tasks.configure_runtime()

    def cleanup(self) -> None:
        for key in self.redis.scan_iter(f"{self.namespace}:*", count=1000):
            self.redis.delete(key)
        self.redis.close()


def state_url_for(root: Path, pg_url: str | None) -> str:
    # PostgreSQL when reachable: the lease's row lock is what several processes rely on.
    return pg_url or f"sqlite:///{root}/state.db"


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, pg_url: str | None
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("service")
    svc = Service(root, redis_url, state_url_for(root, pg_url), ["acme", "globex"])
    try:
        with running(svc.worker("w1", 4), svc.worker("w2", 4)):
            yield svc
    finally:
        svc.cleanup()


def test_events_posted_to_the_web_app_reach_the_sandbox(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.use_here(monkeypatch)
    service.world.set_erp("acme", ENTITY, {"E1": "Ann", "E2": "Bob"})
    http = TestClient(create_app(service.settings))
    t0 = time.monotonic()
    r = http.post(
        "/erp/events",
        json={"tenant": "acme", "entity": ENTITY, "keys": ["E1", "E2"], "op": "update"},
        headers={"Authorization": f"Bearer {TOKENS['acme']}"},
    )
    assert r.status_code == 202 and r.json()["task_id"]
    assert wait_until(lambda: service.world.sandbox("acme", ENTITY) == {"E1": "Ann", "E2": "Bob"}, 10)
    assert time.monotonic() - t0 < 2.0  # leading edge: a lone event is not delayed by the window


def test_a_burst_of_100_events_for_one_key_gives_one_write(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.use_here(monkeypatch)
    service.world.set_erp("globex", ENTITY, {"B1": "v1"})
    for _ in range(100):
        tasks.submit_keys("globex", ENTITY, ["B1"])
        time.sleep(0.01)  # 100 events over ~1 s, inside the 2 s window
    time.sleep(service.settings.celery.debounce_seconds + 1.5)  # let the one follow-up run
    assert service.world.sandbox("globex", ENTITY) == {"B1": "v1"}
    assert service.world.writes("globex", ENTITY) == ["B1"]
    assert service.world.calls("globex", "sync_keys") <= 2  # the leading sync plus one follow-up


def test_a_change_during_a_burst_still_lands_through_the_follow_up(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.use_here(monkeypatch)
    service.world.set_erp("globex", ENTITY, {"C1": "old"})
    tasks.submit_keys("globex", ENTITY, ["C1"])
    assert wait_until(lambda: service.world.sandbox("globex", ENTITY).get("C1") == "old", 5)
    service.world.set_erp("globex", ENTITY, {"C1": "new"})
    tasks.submit_keys("globex", ENTITY, ["C1"])  # inside the window: folded, not lost
    assert wait_until(lambda: service.world.sandbox("globex", ENTITY).get("C1") == "new", 10)
    assert service.world.writes("globex", ENTITY).count("C1") == 2


def test_one_reconcile_per_tenant_at_a_time_but_tenants_run_in_parallel(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_reconcile_per_tenant_at_a_time(service, monkeypatch)


def test_one_reconcile_per_tenant_at_a_time_on_sqlite(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #14 item 2: SQLite is the default store; its lease failed 2 runs in 3 here."""
    svc = Service(tmp_path, redis_url, f"sqlite:///{tmp_path}/state.db", ["acme", "globex"])
    try:
        with running(svc.worker("s1", 4), svc.worker("s2", 4)):
            one_reconcile_per_tenant_at_a_time(svc, monkeypatch)
    finally:
        svc.cleanup()


def one_reconcile_per_tenant_at_a_time(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    service.use_here(monkeypatch)
    world = service.world
    for tenant in ("acme", "globex"):
        world.set_erp(tenant, "employees", {f"R{i}": f"x{i}" for i in range(20)})
        world.set_delay(tenant, 0.05)  # about 1 s per reconcile
    results = [tasks.reconcile.apply_async(("acme",), {"mode": "fast"}) for _ in range(50)]
    results += [tasks.reconcile.apply_async(("globex",), {"mode": "fast"}) for _ in range(2)]
    outcomes = [r.get(timeout=60)["status"] for r in results]
    assert world.max_active("acme") == 1 and world.max_active("globex") == 1
    acme, globex = world.intervals("acme"), world.intervals("globex")
    assert 1 <= len(acme) < 50 and outcomes[:50].count("coalesced") == 50 - len(acme)
    assert all(
        a_end <= b_start or b_end <= a_start  # acme's runs never overlap each other
        for i, (a_start, a_end) in enumerate(acme)
        for (b_start, b_end) in acme[i + 1 :]
    )
    assert any(a_start < g_end and g_start < a_end for a_start, a_end in acme for g_start, g_end in globex)


def test_beat_triggers_a_reconcile_that_converges(
    tmp_path: Path, redis_url: str, pg_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Service(
        tmp_path,
        redis_url,
        state_url_for(tmp_path, pg_url),
        ["initech"],
        initech={"schedule": {"fast_reconcile_seconds": 5, "full_reconcile_seconds": 3600}},
    )
    try:
        svc.world.set_erp("initech", ENTITY, {f"K{i}": f"v{i}" for i in range(50)})
        with running(svc.worker("bw", 2), start_beat(svc.env, tmp_path / "beat.log", tmp_path / "schedule")):
            assert wait_until(lambda: len(svc.world.sandbox("initech", ENTITY)) == 50, 20)
        assert svc.world.calls("initech", "reconcile") >= 1
        assert sorted(svc.world.writes("initech", ENTITY)) == sorted(f"K{i}" for i in range(50))
    finally:
        svc.cleanup()


def test_kill_9_mid_reconcile_then_redelivery_converges_without_duplicates(
    tmp_path: Path, redis_url: str, pg_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Service(
        tmp_path,
        redis_url,
        state_url_for(tmp_path, pg_url),
        ["hooli"],
        celery={"task_time_limit": 15, "visibility_timeout": 20},
    )
    try:
        svc.use_here(monkeypatch)
        erp = {f"P{i:04d}": f"p{i}" for i in range(2000)}
        svc.world.set_erp("hooli", ENTITY, erp)
        svc.world.set_delay("hooli", 0.001)  # a few seconds for 2,000 records
        first = svc.worker("victim", 1)
        with running(first):
            tasks.reconcile.apply_async(("hooli",), {"mode": "full"})
            assert wait_until(lambda: len(svc.world.writes("hooli", ENTITY)) >= 300, 20)
            first.kill9()
        runs_at_kill = svc.world.calls("hooli", "reconcile")
        partial = len(svc.world.writes("hooli", ENTITY))
        assert 300 <= partial < 2000
        # The worst moment to die: inside the unacked-restore sweep, holding its mutex (the
        # victim sweeps every second). The mutex lives as long as the configured expiry.
        expire = celery_app.app.conf.broker_transport_options["unacked_mutex_expire"]
        svc.redis.set(f"{svc.namespace}:unacked_mutex", "held-by-the-dead-victim", px=expire * 1000)
        with running(svc.worker("rescuer", 1)) as (rescuer,):
            # Redelivered after the visibility timeout (20 s here), once the dead holder's lease lapsed.
            converged = wait_until(lambda: svc.world.sandbox("hooli", ENTITY) == erp, 90, interval=0.5)
            written = len(svc.world.writes("hooli", ENTITY))
            assert converged, f"{written} of 2000 written; rescuer log:\n{rescuer.text()[-4000:]}"
        writes = svc.world.writes("hooli", ENTITY)
        assert len(writes) == len(set(writes)) == 2000  # 0 duplicates, 0 missing
        assert svc.world.calls("hooli", "reconcile") - runs_at_kill <= 2  # redelivery + at most one more
    finally:
        svc.cleanup()


def test_sql_watermark_emits_sync_keys_and_advances_only_after_the_sync(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_engine import FakeEngine

    service.use_here(monkeypatch)
    tasks.configure_runtime(engine_factory=FakeEngine)
    try:
        store = tasks.runtime().store
        service.world.set_erp("acme", ENTITY, {"W0": "old"})
        assert tasks.poll_watermarks("acme") == {}  # the first poll only sets the watermark
        first = store.get_cursor("acme", "erp", "watermark:employees")
        assert first is not None
        time.sleep(0.01)
        service.world.set_erp("acme", ENTITY, {"W1": "one", "W2": "two"})
        assert tasks.poll_watermarks("acme") == {ENTITY: 2}
        assert tasks.poll_watermarks("acme") == {}  # claimed while the sync runs: not emitted twice
        assert wait_until(lambda: store.get_cursor("acme", "erp", "watermark:employees") != first, 10)
        sandbox = service.world.sandbox("acme", ENTITY)
        assert sandbox["W1"] == "one" and sandbox["W2"] == "two"  # synced before the watermark moved
        assert "W0" not in service.world.writes("acme", ENTITY)[-2:]
    finally:
        tasks.configure_runtime(engine_factory=tasks.default_engine)


def test_erpsync_notify_enqueues_a_throttled_sync(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sync.cli import app as cli

    service.use_here(monkeypatch)
    service.world.set_erp("globex", ENTITY, {"N1": "cli"})
    result = CliRunner().invoke(
        cli, ["notify", ENTITY, "N1", "--tenant", "globex", "--config", str(service.config)]
    )
    assert result.exit_code == 0, result.output
    assert "queued 1 key(s)" in result.output
    assert wait_until(lambda: service.world.sandbox("globex", ENTITY).get("N1") == "cli", 10)


def test_a_task_that_kills_its_worker_is_dropped_after_max_deliveries(
    tmp_path: Path, redis_url: str, pg_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #14 item 9: was redelivered forever (18 deliveries in 25 s); now 3, then a failed run."""
    from sync.state.store import StateStore

    svc = Service(tmp_path, redis_url, state_url_for(tmp_path, pg_url), ["crashy"])
    try:
        svc.use_here(monkeypatch)
        svc.world.set_erp("crashy", ENTITY, {"K1": "v1"})
        svc.world.set_crash("crashy")
        store = StateStore(svc.settings.state_url)
        store.purge_tenant("crashy")

        def failed() -> list[Any]:
            return [r for r in store.runs("crashy") if r.status == "failed"]

        with running(svc.worker("crashy", 1)) as (worker,):
            tasks.reconcile.apply_async(("crashy",), {"mode": "full"})
            assert wait_until(lambda: bool(failed()), 60, interval=0.2), worker.text()[-3000:]
            time.sleep(3)  # no further delivery
            calls = svc.world.calls("crashy", "reconcile")
            log = worker.text()
        [run] = failed()
        assert calls == svc.settings.celery.max_deliveries == 3
        assert run.kind == "reconcile" and run.error is not None
        assert "dropped after 3 deliveries" in run.error and "-241" not in run.error
        assert "ERROR" in log and "dropped after 3 deliveries" in log
    finally:
        svc.cleanup()
