"""``/metrics`` of a real worker and of ``serve`` after a real reconcile against the sandboxes.

A real ``celery worker`` (prefork, 2 pool processes, the production tasks and engine) with
``$ERPSYNC_METRICS_PORT`` reconciles a generated ERP into the SmartEPI sandbox while the
sandbox answers some requests 429 and drops some answers after committing the write (so
retries, ambiguous writes and their lookups really happen); then a change event goes
through the web app and a pull runs. Both endpoints are scraped and every family of the
issue's list is looked for, with values that fit what was done.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from processes import wait_until
from real_service import RealService

from sync import tasks
from sync.sandbox.faults import FaultConfig
from sync.web import create_app

pytestmark = [pytest.mark.services, pytest.mark.slow]

SOURCE = "funcionarios"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _match(lb: dict[str, str], labels: dict[str, str]) -> bool:
    return all(lb.get(k) == v for k, v in labels.items())


def parse_named(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → [(labels, value)] (histograms give _bucket/_sum/_count samples)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, [])
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(named: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lb, v in named.get(name, []) if _match(lb, labels))


@pytest.fixture
def service(tmp_path: Path, redis_url: str, pg_url: str | None) -> Iterator[RealService]:
    state_url = pg_url or f"sqlite:///{tmp_path}/state.db"
    svc = RealService(tmp_path, redis_url, state_url, employees=12)
    try:
        yield svc
    finally:
        svc.cleanup()


def test_worker_and_serve_expose_every_family_after_a_real_reconcile(
    service: RealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service
    port = free_port()
    monkeypatch.setenv("ERPSYNC_METRICS_PORT", str(port))
    monkeypatch.setenv("ERPSYNC_METRICS_ADDR", "127.0.0.1")
    svc.worker("metrics", concurrency=2)
    svc.use_here(monkeypatch)
    tenant = svc.tenant

    # A reconcile that meets 429s and lost answers of committed creates.
    svc.pg.set_faults(
        "smartepi",
        FaultConfig(seed=3, p_429=0.15, retry_after=0, p_drop_after_commit=0.3, write_methods=["POST"]),
    )
    result = tasks.reconcile.apply_async((tenant,)).get(timeout=120)
    svc.pg.set_faults("smartepi", FaultConfig())
    assert result["status"] in ("ok", "partial"), result

    # A change event through the web app (serve), synced by the worker.
    http = TestClient(create_app(svc.settings()))
    keys = sorted(svc.erp_employees())[:2]
    svc.erp_update_names(keys, " Metricas")
    token = svc.event_token(tenant)
    r = http.post(
        "/erp/events",
        json={"tenant": tenant, "entity": SOURCE, "keys": keys},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 202, r.text
    r = http.post(  # the same keys again at once: coalesced by the throttle
        "/erp/events",
        json={"tenant": tenant, "entity": SOURCE, "keys": keys},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 202 and r.json()["coalesced"] == 2, r.text

    def landed() -> bool:
        names = {e["name"] for e in svc.epi_records("employees")}
        return all(svc.erp_employees()[k]["nome"] in names for k in keys)

    assert wait_until(landed, 30, interval=0.2)
    # A pull (inbound streams) and a webhook with a wrong signature, through serve.
    tasks.pull_inbound.apply_async((tenant,)).get(timeout=60)
    bad = http.post(
        f"/webhooks/smartepi/{tenant}",
        content=b'{"id": "x", "type": "t"}',
        headers={"X-SmartEPI-Signature": "t=1,v1=00"},
    )
    assert bad.status_code in (400, 401)

    def scrape_worker() -> dict[str, list[tuple[dict[str, str], float]]]:
        got = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        (svc.root / "worker-metrics.txt").write_text(got.text)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
        return parse_named(got.text)

    # the event's run finishes a moment after its write is visible
    assert wait_until(
        lambda: value(scrape_worker(), "erpsync_event_write_latency_seconds_count", tenant=tenant) >= 1,
        20,
        0.5,
    )
    w = scrape_worker()
    now = time.time()
    t = {"tenant": tenant}
    epi = {"tenant": tenant, "platform": "smartepi"}

    # requests, 429s, retries, ambiguous writes and how they resolved, latency
    assert value(w, "erpsync_http_requests_total", **epi, status_class="2xx") >= 12
    routes = {lb["route"] for lb, _ in w["erpsync_http_requests_total"] if _match(lb, epi)}
    assert "/employees" in routes and not any("{" not in r and r.count("/") > 2 for r in routes), routes
    assert value(w, "erpsync_http_requests_total", **epi, method="POST") >= 1
    assert value(w, "erpsync_http_rate_limited_total", **epi) >= 1
    assert value(w, "erpsync_http_retries_total", **epi, reason="429") >= 1
    assert value(w, "erpsync_ambiguous_writes_total", **epi, method="POST") >= 1
    assert value(w, "erpsync_ambiguous_resolutions_total", **epi, resolution="found") >= 1
    count = value(w, "erpsync_http_request_duration_seconds_count", **epi)
    assert count >= 12 and 0 < value(w, "erpsync_http_request_duration_seconds_sum", **epi) / count < 5
    # governor: wait, in flight (nothing now), quota
    assert value(w, "erpsync_governor_wait_seconds_count", **epi) == count
    assert "erpsync_governor_in_flight" in w and value(w, "erpsync_governor_in_flight", **epi) == 0
    assert value(w, "erpsync_governor_quota", **epi, limit="concurrency") >= 1
    # runs by kind and outcome, their duration; records per outcome
    assert value(w, "erpsync_runs_total", **t, kind="full") == 1
    assert value(w, "erpsync_runs_total", **t, kind="event") >= 1
    assert value(w, "erpsync_runs_total", **t, kind="pull") == 1
    assert 0 < value(w, "erpsync_run_duration_seconds_sum", **t, kind="full") < 120
    created = value(w, "erpsync_records_total", **epi, entity="employees", action="create", outcome="ok")
    adopted = value(w, "erpsync_records_total", **epi, entity="employees", action="adopt", outcome="ok")
    assert created + adopted >= 10  # 12 employees, a few may be quarantined by the generator's bad rows
    assert value(w, "erpsync_records_total", **epi, entity="employees", action="update", outcome="ok") >= 2
    # change event → write latency
    latency = value(w, "erpsync_event_write_latency_seconds_sum", **t) / value(
        w, "erpsync_event_write_latency_seconds_count", **t
    )
    assert 0 < latency < 30
    # the state store's gauges
    assert value(w, "erpsync_state_up") == 1
    assert now - 300 < value(w, "erpsync_last_successful_reconcile_timestamp_seconds", **t) <= now + 5 or (
        result["status"] == "partial"
    )
    for family in (
        "erpsync_quarantine_records",
        "erpsync_intents_open",
        "erpsync_inbox_events",
        "erpsync_inbox_oldest_pending_age_seconds",
        "erpsync_pull_lag_seconds",
    ):
        assert family in w, family
    assert any(lb.get("tenant") == tenant for lb, _ in w["erpsync_pull_lag_seconds"])
    assert all(v >= 0 for _, v in w["erpsync_pull_lag_seconds"])

    # serve: events queued and coalesced, webhooks by reason, and the same state gauges
    s = parse_named(http.get("/metrics").text)
    assert value(s, "erpsync_event_keys_total", **t, result="queued") == 2
    assert value(s, "erpsync_event_keys_total", **t, result="coalesced") == 2
    assert value(s, "erpsync_webhooks_total", **epi, result="rejected", reason="signature") == 1
    assert value(s, "erpsync_webhook_verification_failures_in_a_row", **epi) == 1
    assert value(s, "erpsync_state_up") == 1
    assert "erpsync_inbox_events" in s and "erpsync_last_successful_reconcile_timestamp_seconds" in s
