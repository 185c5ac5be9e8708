"""The Celery service with the REAL engine against the REAL sandboxes (the issue "The Celery service").

Real Redis, real ``celery worker``/``beat`` processes (``real_worker_app``: the production
tasks and ``sync.engine.api.Engine``), never eager mode. Both sandboxes run in this
process (``sync.playground``), so they survive a worker's ``kill -9``; the workers load
the configuration through ``$ERPSYNC_CONFIG``, share the state store with the test
(PostgreSQL when the ``pg_url`` fixture has one, else a SQLite file) and use a Redis
namespace of their own (``$ERPSYNC_NAMESPACE``). Every tenant id is unique per run.

What is checked, as the issue asks:

1. events posted to ``POST /erp/events`` reach the sandbox; 100 events for one key
   within the throttle window give one write (sandbox request stats and record versions);
2. a beat-triggered reconcile runs and converges (the sandbox holds the ERP rows, and a
   fresh full plan is empty);
3. ``kill -9`` of the worker in the middle of a 2,000-employee reconcile, a new worker:
   after redelivery and at most one more reconcile, 0 duplicates and 0 missing;
4. 50 concurrent reconcile triggers for tenant A across two workers: never two A runs at
   once (runs table timestamps), while tenant B's runs overlap A's.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from processes import wait_until
from real_service import RealService

from sync import tasks
from sync.engine.api import Engine
from sync.web import create_app

pytestmark = [pytest.mark.services, pytest.mark.slow]

SOURCE = "funcionarios"  # the ERP entity of SmartEPI employees in the shipped mappings


def state_url_for(root: Path, pg_url: str | None) -> str:
    # PostgreSQL when reachable: the lease's row lock is what several processes rely on.
    return pg_url or f"sqlite:///{root}/state.db"


def by_remote_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in records}


def assert_sandbox_matches_erp(svc: RealService, tenant: str) -> None:
    """Every ERP employee is bound to its own live sandbox record with the ERP's name; no extras."""
    erp = svc.erp_employees(tenant)
    live = svc.epi_records("employees", tenant)
    bound = svc.store.bindings(tenant, "smartepi", "employees")
    records = by_remote_id(live)
    missing = sorted(k for k in erp if bound.get(k) not in records)
    assert not missing, f"{len(missing)} ERP employees missing from the sandbox, e.g. {missing[:5]}"
    assert len(set(bound.values())) == len(bound), "two ERP keys bound to one record"
    idents = Counter(r["identification"] for r in live)
    assert [i for i, n in idents.items() if n > 1] == [], "duplicate employees (same identification)"
    assert len(live) == len(erp), f"{len(live)} live sandbox employees for {len(erp)} ERP rows"
    wrong = [k for k, row in erp.items() if records[bound[k]]["name"] != row["nome"].strip()]
    assert not wrong, f"names differ for {wrong[:5]}"


def drained(svc: RealService, tenant: str, key: str) -> bool:
    """No sync of ``key`` queued, running or cooling down (the throttle forgot it)."""
    return not svc.redis.exists(f"{svc.namespace}:throttle:{tenant}:{SOURCE}:{key}")


# --- a service with two tenants and two workers (tests 1 and 4) ------------------------------------


@pytest.fixture(scope="module")
def svc(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, pg_url: str | None
) -> Iterator[RealService]:
    root = tmp_path_factory.mktemp("real-service")
    service = RealService(root, redis_url, state_url_for(root, pg_url), employees=30)
    try:
        service.tenant_b = service.add_tenant(employees=30)  # type: ignore[attr-defined]
        service.worker("w1", concurrency=2)
        service.worker("w2", concurrency=2)
        with pytest.MonkeyPatch.context() as mp:
            service.use_here(mp)
            first = [tasks.reconcile.apply_async((t,)) for t in (service.tenant, service.tenant_b)]  # type: ignore[attr-defined]
            assert [r.get(timeout=90)["status"] for r in first] == ["ok", "ok"]
        yield service
    finally:
        service.cleanup()


def test_events_posted_to_erp_events_reach_the_sandbox(
    svc: RealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.use_here(monkeypatch)
    keys = sorted(svc.erp_employees())[:2]
    svc.erp_update_names(keys, " Evento")
    new_key = f"EV{uuid.uuid4().hex[:6]}"
    svc.erp_insert_employee(new_key, f"Nova Pessoa {new_key}")
    http = TestClient(create_app(svc.settings()))
    t0 = time.monotonic()
    r = http.post(
        "/erp/events",
        json={"tenant": svc.tenant, "entity": SOURCE, "keys": [*keys, new_key], "op": "upsert"},
        headers={"Authorization": f"Bearer {svc.event_token(svc.tenant)}"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 3 and r.json()["task_id"]

    def landed() -> bool:
        names = {e["name"] for e in svc.epi_records("employees")}
        erp = svc.erp_employees()
        return all(erp[k]["nome"] in names for k in [*keys, new_key])

    assert wait_until(landed, 20, interval=0.1)
    assert time.monotonic() - t0 < 10  # leading edge: nothing waits for the 2 s window
    assert_sandbox_matches_erp(svc, svc.tenant)
    # The other tenant's account was not touched by tenant A's events.
    assert not any("Evento" in e["name"] for e in svc.epi_records("employees", svc.tenant_b))  # type: ignore[attr-defined]


def _burst(http: TestClient, svc: RealService, key: str, n: int = 100) -> float:
    """Post ``n`` events for one key; returns how long the burst took (seconds)."""
    token = svc.event_token(svc.tenant)
    began = time.monotonic()
    for _ in range(n):  # 100 events over about 1 s: inside the 2 s throttle window
        r = http.post(
            "/erp/events",
            json={"tenant": svc.tenant, "entity": SOURCE, "keys": [key]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 202, r.text
        time.sleep(0.01)
    return time.monotonic() - began


def test_100_events_for_one_key_within_the_window_give_one_write(
    svc: RealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.use_here(monkeypatch)
    http = TestClient(create_app(svc.settings()))
    key = f"BU{uuid.uuid4().hex[:6]}"
    name = f"Rajada {key}"
    svc.erp_insert_employee(key, name)
    runs_before = len(svc.runs(svc.tenant, "sync_keys"))
    posts, writes = svc.epi_writes("/v1/employees"), svc.epi_writes("/v1/")

    # A create (a non-idempotent POST): one POST for 100 events.
    took = _burst(http, svc, key)
    assert wait_until(lambda: drained(svc, svc.tenant, key), 30, interval=0.1)
    created = [e for e in svc.epi_records("employees") if e["name"] == name]
    assert len(created) == 1 and created[0]["_version"] == 1
    assert svc.epi_writes("/v1/employees") - posts == 1
    assert svc.epi_writes("/v1/") - writes == 1  # nothing else was written either
    syncs = len(svc.runs(svc.tenant, "sync_keys")) - runs_before
    # The leading sync and at most one follow-up per throttle window the burst spanned (one
    # window when it took about 1 s; a loaded machine can stretch 100 posts past it).
    window = svc.settings().celery.debounce_seconds
    assert 1 <= syncs <= 1 + max(1, math.ceil(took / window)), (syncs, took)

    # An update: one PUT for 100 events, the record's version moves by exactly one.
    svc.erp_update_names([key], " Atualizada")
    _burst(http, svc, key)
    assert wait_until(lambda: drained(svc, svc.tenant, key), 30, interval=0.1)
    (record,) = [e for e in svc.epi_records("employees") if e["id"] == created[0]["id"]]
    assert record["name"] == f"{name} Atualizada" and record["_version"] == 2
    assert svc.epi_writes("/v1/") - writes == 2
    assert len([e for e in svc.epi_records("employees") if e["name"].startswith(name)]) == 1


def test_50_reconcile_triggers_run_one_at_a_time_per_tenant_and_tenants_in_parallel(
    svc: RealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.use_here(monkeypatch)
    a, b = svc.tenant, svc.tenant_b  # type: ignore[attr-defined]
    seen_a = {r.id for r in svc.runs(a)}
    seen_b = {r.id for r in svc.runs(b)}
    svc.set_latency(40)  # each SmartEPI request takes 40 ms: a reconcile lasts about a second
    try:
        results = []
        for i in range(50):
            if i % 25 == 0:
                results.append(("b", tasks.reconcile.apply_async((b,))))
            results.append(("a", tasks.reconcile.apply_async((a,))))
        outcomes = [(who, r.get(timeout=120)["status"]) for who, r in results]
    finally:
        svc.set_latency(0)
    runs_a = [r for r in svc.runs(a) if r.id not in seen_a]
    runs_b = [r for r in svc.runs(b) if r.id not in seen_b]
    statuses_a = Counter(s for who, s in outcomes if who == "a")
    assert set(statuses_a) <= {"ok", "coalesced"}, statuses_a
    assert statuses_a["ok"] == len(runs_a) and 1 <= len(runs_a) <= 5  # 50 triggers, a handful of runs
    assert all(r.status == "ok" and r.finished_at is not None for r in runs_a + runs_b)
    spans_a = sorted((r.started_at, r.finished_at) for r in runs_a)
    for (_, end), (start, _) in itertools.pairwise(spans_a):
        assert end <= start, "two reconciles of tenant A overlapped"
    assert any(
        sa < eb and sb < ea
        for sa, ea in spans_a
        for sb, eb in ((r.started_at, r.finished_at) for r in runs_b)
    ), "tenant B never ran while tenant A ran"
    assert_sandbox_matches_erp(svc, a)
    assert_sandbox_matches_erp(svc, b)


# --- beat ------------------------------------------------------------------------------------------


def test_a_beat_triggered_reconcile_converges(
    tmp_path: Path, redis_url: str, pg_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = {"fast_reconcile_seconds": 5, "full_reconcile_seconds": 3600, "pull_seconds": 3600}
    service = RealService(
        tmp_path,
        redis_url,
        state_url_for(tmp_path, pg_url),
        employees=40,
        tenant_extra={"schedule": schedule},
    )
    try:
        service.worker("bw", concurrency=2)
        t0 = time.monotonic()
        service.beat()
        erp = service.erp_employees()
        assert wait_until(lambda: len(service.epi_records("employees")) >= len(erp), 40, interval=0.25)
        assert wait_until(lambda: any(r.status == "ok" for r in service.runs(service.tenant)), 20)
        service.stop_processes()
        (run, *_) = [r for r in service.runs(service.tenant) if r.status == "ok"]
        assert run.mode == "fast" and time.monotonic() - t0 >= 4  # beat's 5 s entry, not a startup task
        assert_sandbox_matches_erp(service, service.tenant)
        plan = Engine(service.settings(), store=service.store).plan(service.tenant, mode="full")
        assert plan.is_empty(), plan.counts
    finally:
        service.cleanup()


# --- kill -9 in the middle of a reconcile ---------------------------------------------------------


def test_kill_9_mid_reconcile_then_redelivery_converges_without_duplicates(
    tmp_path: Path, redis_url: str, pg_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = RealService(
        tmp_path,
        redis_url,
        state_url_for(tmp_path, pg_url),
        employees=2000,
        # The longest run we accept: a whole 2,000-record reconcile by one worker process on this
        # 2-core machine takes about 40 s; the rescuer only finishes the second half.
        celery={"task_time_limit": 45, "visibility_timeout": 50},
        lease_seconds=8,
    )
    try:
        service.use_here(monkeypatch)
        tenant = service.tenant

        def created() -> int:
            routes = service.pg.stats("smartepi")["routes"]
            return int(routes.get("POST /v1/employees", {}).get("201", 0))

        victim = service.worker("victim", concurrency=1)
        tasks.reconcile.apply_async((tenant,), {"mode": "full"})
        assert wait_until(lambda: created() >= 1000, 90, interval=0.1)  # in the middle
        victim.kill9()
        at_kill = created()
        killed_at = time.monotonic()
        assert 1000 <= at_kill < 2000, at_kill
        (dead,) = service.runs(tenant)
        assert dead.status == "running" and dead.finished_at is None  # it really died mid-run

        service.worker("rescuer", concurrency=1)
        # Redelivered once the visibility timeout (50 s after the first delivery) passed; the dead
        # holder's lease (8 s) lapsed long before.
        assert wait_until(lambda: any(r.status == "ok" for r in service.runs(tenant)), 120, interval=0.5)
        redelivery = time.monotonic() - killed_at
        service.stop_processes()
        later = [r for r in service.runs(tenant) if r.id != dead.id]
        assert 1 <= len(later) <= 2, [(r.id, r.status) for r in later]  # redelivery + at most one more
        assert_sandbox_matches_erp(service, tenant)  # 0 duplicates, 0 missing
        live = service.epi_records("employees")
        assert len(live) == 2000 and len({e["identification"] for e in live}) == 2000
        assert created() == 2000  # every successful POST made one of the 2,000 records
        assert service.store.open_intents(tenant) == []
        print(f"killed after {at_kill} creates; redelivered and converged {redelivery:.1f} s after the kill")
    finally:
        service.cleanup()
