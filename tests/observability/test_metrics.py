"""Metrics (issue #17 item 1): the hooks count what happened, labels stay bounded, the state
store's gauges are read at scrape time, and alerts.yml names only families that exist."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sync.clients.governor import InProcessGovernor, RateLimits
from sync.clients.http import RequestLoop
from sync.clients.retry import RetryPolicy
from sync.core.records import QuarantineEntry
from sync.engine.adapters.base import RawRemote
from sync.engine.apply import Several
from sync.errors import AmbiguousWrite
from sync.observability import metrics
from sync.state.models import InboundEvent
from sync.state.store import StateStore

ROOT = Path(__file__).resolve().parents[2]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def tenant() -> str:
    return f"m{uuid.uuid4().hex[:8]}"


def scripted(*steps: httpx.Response | Exception) -> httpx.MockTransport:
    script = list(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handler)


def loop_for(account: str, transport: httpx.MockTransport) -> RequestLoop:
    async def no_sleep(_: float) -> None:
        return None

    return RequestLoop(
        "https://api.test/v1",
        account=account,
        transport=transport,
        governor=InProcessGovernor(RateLimits(rate=1000, burst=100, concurrency=3)),
        retry=RetryPolicy(max_attempts=4, max_total_delay=100, base_delay=1, max_delay=8),
        sleep=no_sleep,
        rng=lambda: 0.5,
    )


def test_request_loop_counts_attempts_429s_retries_latency_and_the_governor() -> None:
    t = tenant()
    transport = scripted(
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503),
        httpx.Response(200, json={"data": {}}),
    )

    async def go() -> None:
        async with loop_for(t, transport) as c:
            await c.request("GET", "/things/{id}", path_params={"id": "secret-key-42"})

    asyncio.run(go())
    base = {"tenant": t, "platform": "platform"}
    req = "erpsync_http_requests_total"
    # the route is the template: a record key never becomes a label value
    assert value(req, **base, method="GET", route="/things/{id}", status_class="4xx") == 1
    assert value(req, **base, method="GET", route="/things/{id}", status_class="5xx") == 1
    assert value(req, **base, method="GET", route="/things/{id}", status_class="2xx") == 1
    assert value("erpsync_http_rate_limited_total", **base) == 1
    assert value("erpsync_http_retries_total", **base, reason="429") == 1
    assert value("erpsync_http_retries_total", **base, reason="5xx") == 1
    assert value("erpsync_http_request_duration_seconds_count", **base, method="GET") == 3
    assert value("erpsync_governor_wait_seconds_count", **base) == 3
    assert value("erpsync_governor_in_flight", **base) == 0  # every slot was given back
    assert value("erpsync_governor_quota", **base, limit="concurrency") == 3
    assert value("erpsync_governor_quota", **base, limit="rate") == 1000
    for family in REGISTRY.collect():
        for sample in family.samples:
            assert "secret-key-42" not in sample.labels.values()


def test_an_ambiguous_post_is_counted_once() -> None:
    t = tenant()

    async def go() -> None:
        async with loop_for(t, scripted(httpx.Response(502))) as c:
            await c.request("POST", "/things", json={"a": 1})

    with pytest.raises(AmbiguousWrite):
        asyncio.run(go())
    labels = {"tenant": t, "platform": "platform", "method": "POST"}
    assert value("erpsync_ambiguous_writes_total", **labels) == 1
    assert value("erpsync_http_retries_total", tenant=t, platform="platform", reason="5xx") == 0


def test_runs_records_and_resolutions() -> None:
    t = tenant()
    counts = {("smartepi", "employees", "create", "ok"): 3, ("smartepi", "employees", "update", "failed"): 1}
    metrics.run_finished(t, "reconcile", "fast", "partial", 2.0, counts)
    metrics.run_finished(t, "sync_keys", "fast", "ok", 0.2)
    metrics.run_finished(t, "reconcile", "full", "failed", 1.0)
    assert value("erpsync_runs_total", tenant=t, kind="fast", outcome="partial") == 1
    assert value("erpsync_runs_total", tenant=t, kind="event", outcome="ok") == 1
    assert value("erpsync_runs_total", tenant=t, kind="full", outcome="failed") == 1
    assert value("erpsync_run_duration_seconds_sum", tenant=t, kind="fast") == 2.0
    rec = {"tenant": t, "platform": "smartepi", "entity": "employees"}
    assert value("erpsync_records_total", **rec, action="create", outcome="ok") == 3
    assert value("erpsync_records_total", **rec, action="update", outcome="failed") == 1
    for got, name in ((RawRemote("r1", {}), "found"), (Several(2), "several"), ("absent", "absent")):
        metrics.ambiguous_resolved(t, "smartepi", "employees", got)
        assert value("erpsync_ambiguous_resolutions_total", **rec, resolution=name) == 1
    metrics.ambiguous_resolved(t, "smartepi", "employees", "unsearchable")
    assert value("erpsync_ambiguous_resolutions_total", **rec, resolution="held") == 1


def test_events_and_their_latency() -> None:
    t = tenant()
    metrics.event_keys(t, "funcionarios", accepted=5, queued=2)
    assert value("erpsync_event_keys_total", tenant=t, entity="funcionarios", result="queued") == 2
    assert value("erpsync_event_keys_total", tenant=t, entity="funcionarios", result="coalesced") == 3
    headers = metrics.event_headers()

    class Request(dict):  # what a Celery task's request offers: .get(name)
        pass

    request = Request(headers)
    request[metrics.SENT_AT_HEADER] -= 1.5  # admitted 1.5 s ago
    metrics.event_written(t, "funcionarios", request)
    metrics.event_written(t, "funcionarios", Request())  # a follow-up without the header: not observed
    count = value("erpsync_event_write_latency_seconds_count", tenant=t, entity="funcionarios")
    total = value("erpsync_event_write_latency_seconds_sum", tenant=t, entity="funcionarios")
    assert count == 1 and 1.5 <= total < 10


def test_webhook_labels_are_bounded_and_failures_in_a_row_reset() -> None:
    t = tenant()
    known = {t: object()}
    for _ in range(3):
        metrics.webhook_answered(t, known, "smartepi", 401, False)
    streak = "erpsync_webhook_verification_failures_in_a_row"
    assert value(streak, tenant=t, platform="smartepi") == 3
    metrics.webhook_answered(t, known, "smartepi", 400, True)  # signed, bad body: not a signature failure
    assert value(streak, tenant=t, platform="smartepi") == 0
    metrics.webhook_answered(t, known, "smartepi", 200, True, b'{"message": "duplicate"}')
    metrics.webhook_answered(t, known, "smartepi", 413, False)
    hooks = {"tenant": t, "platform": "smartepi"}
    assert value("erpsync_webhooks_total", **hooks, result="rejected", reason="signature") == 3
    assert value("erpsync_webhooks_total", **hooks, result="rejected", reason="body") == 1
    assert value("erpsync_webhooks_total", **hooks, result="accepted", reason="duplicate") == 1
    assert value("erpsync_webhooks_total", **hooks, result="rejected", reason="too_large") == 1
    probe = f"probe-{uuid.uuid4().hex}"  # a tenant from the URL that the configuration does not know
    metrics.webhook_answered(probe, known, "smartepi", 401, False)
    assert all(probe not in s.labels.values() for f in REGISTRY.collect() for s in f.samples)


def test_metrics_off_makes_every_hook_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    t = tenant()
    monkeypatch.setattr(metrics, "_on", False)
    metrics.run_finished(t, "reconcile", "full", "ok", 1.0)
    metrics.event_keys(t, "funcionarios", 1, 1)
    assert metrics.event_headers() == {}
    c = metrics.client("smartepi", t, RateLimits())
    c.request("GET", "/x", 200, 0.1)
    assert value("erpsync_runs_total", tenant=t, kind="full", outcome="ok") == 0
    assert value("erpsync_event_keys_total", tenant=t, entity="funcionarios", result="queued") == 0
    assert value("erpsync_governor_quota", tenant=t, platform="smartepi", limit="rate") == 0


def scrape(state: metrics.StateCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = metrics.exposition(state).decode()
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_state_gauges_are_read_at_scrape_time_and_cached(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path}/state.db")
    t = tenant()
    entries = [
        QuarantineEntry("smartepi", "employees", f"E{i}", "cpf", "invalid_cpf", "bad check digit")
        for i in range(2)
    ]
    store.quarantine(
        t, [*entries, QuarantineEntry("smartepi", "employees", "E9", None, "required", "no name")]
    )
    store.open_intent(t, "smartepi", "employees", "E1", {"cpf": "1"}, {"name": "x"})
    unknown = store.open_intent(t, "smartepi", "employees", "E2", {"cpf": "2"}, {"name": "y"})
    store.set_intent(unknown, "unknown", error="502")
    received = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=7)
    with store.session() as s:
        s.add(InboundEvent(tenant=t, platform="smartepi", event_id="ev1", type="t", received_at=received))
        s.add(InboundEvent(tenant=t, platform="smartepi", event_id="ev2", type="t", status="failed"))
        s.commit()
    cursor = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    store.set_cursor(t, "smartkasa", "shifts", cursor.isoformat().replace("+00:00", "Z"))
    store.set_cursor(t, "smartkasa", "shifts:late_check", "2020-01-01T00:00:00Z")  # bookkeeping: no lag
    run = store.start_run(t, "reconcile", "full")
    store.finish_run(run, status="ok", counts={}, requests={})
    calls = []

    def get_store() -> StateStore:
        calls.append(1)
        return store

    state = metrics.StateCollector(get_store, ttl=60)
    got = scrape(state)
    assert got["erpsync_state_up"] == [({}, 1.0)]
    mine = {k: [(lb, v) for lb, v in rows if lb.get("tenant") == t] for k, rows in got.items()}
    q = {lb["rule"]: v for lb, v in mine["erpsync_quarantine_records"]}
    assert q == {"invalid_cpf": 2, "required": 1}
    assert {lb["state"]: v for lb, v in mine["erpsync_intents_open"]} == {"pending": 1, "unknown": 1}
    assert {lb["status"]: v for lb, v in mine["erpsync_inbox_events"]} == {"pending": 1, "failed": 1}
    ((_, age),) = mine["erpsync_inbox_oldest_pending_age_seconds"]
    assert 6 * 60 < age < 60 * 60
    ((labels, lag),) = mine["erpsync_pull_lag_seconds"]
    assert labels["stream"] == "shifts" and 29 * 60 < lag < 60 * 60
    ((_, last),) = mine["erpsync_last_successful_reconcile_timestamp_seconds"]
    assert abs(last - dt.datetime.now(dt.UTC).timestamp()) < 120
    scrape(state)
    assert len(calls) == 1  # the second scrape within the TTL did not query the store


def test_a_state_store_that_fails_says_so_and_shows_no_stale_gauges() -> None:
    def broken() -> StateStore:
        raise OSError("database is down")

    got = scrape(metrics.StateCollector(broken))
    assert got["erpsync_state_up"] == [({}, 0.0)]
    assert "erpsync_quarantine_records" not in got


FAMILY = re.compile(r'(?:Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*"(erpsync_[a-z_]+)"')


def family_names() -> set[str]:
    return set(FAMILY.findall((ROOT / "sync/observability/metrics.py").read_text()))


def defined_families() -> set[str]:
    names = family_names()
    assert len(names) >= 24
    out = set()
    for name in names:
        out |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return out


def test_alert_rules_name_only_metric_families_the_module_defines() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    known = defined_families()
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    names = {r["alert"] for r in alerts}
    assert {"ErpsyncRunFailed", "ErpsyncRejectedRecords", "ErpsyncSyncStale"} <= names
    assert {"ErpsyncWebhookVerificationFailing", "ErpsyncInboxBacklog"} <= names
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used = set(re.findall(r"\b(erpsync_[a-z_]+)", rule["expr"]))
        assert used, rule["alert"]
        assert used <= known, f"{rule['alert']}: unknown {used - known}"


def test_the_dashboard_charts_only_metric_families_the_module_defines() -> None:
    import json

    board = json.loads((ROOT / "deploy/grafana/dashboards/erpsync.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    used = {n for e in exprs for n in re.findall(r"\b(erpsync_[a-z_]+)", e)}
    assert used <= defined_families(), used - defined_families()
    # every family of the list is on the dashboard
    bases = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    wanted = family_names()
    assert wanted - bases <= {"erpsync_run_last_finished_timestamp_seconds", "erpsync_governor_quota"}


def test_metrics_endpoint_of_the_web_app_and_its_optional_token(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    store = StateStore(f"sqlite:///{tmp_path}/state.db")
    t = tenant()
    metrics.event_keys(t, "funcionarios", 3, 1)
    open_app = FastAPI()
    open_app.include_router(metrics.make_router(lambda: store, token=""))
    r = TestClient(open_app).get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert f'erpsync_event_keys_total{{entity="funcionarios",result="coalesced",tenant="{t}"}} 2.0' in r.text
    assert "erpsync_state_up 1.0" in r.text
    locked = FastAPI()
    locked.include_router(metrics.make_router(lambda: store, token="s3cret-metrics"))
    client = TestClient(locked)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-metrics"}):
        denied = client.get("/metrics", headers=headers)
        assert denied.status_code == 401 and "s3cret" not in denied.text
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"}).status_code == 200
