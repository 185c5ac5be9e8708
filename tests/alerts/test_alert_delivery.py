"""Alerts end to end against local receivers (HTTP webhooks and SMTP), on SQLite and PostgreSQL:
one message per condition until it clears, then one "resolved" message."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alert_config import API_KEY, HOOK_KEY, SECRETS, SMTP_PASSWORD, alert_settings
from alert_receivers import HttpReceiver, SmtpReceiver, receivers
from fastapi.testclient import TestClient
from sqlalchemy import update

from sync.alerts import service
from sync.alerts.notify import AlertMessage
from sync.core.records import QuarantineEntry
from sync.core.signature import sign
from sync.errors import utcnow
from sync.settings import Settings
from sync.state.models import InboundEvent
from sync.state.store import StateStore


@pytest.fixture
def rx() -> Iterator[tuple[HttpReceiver, SmtpReceiver]]:
    with receivers() as pair:
        yield pair


def _run(
    store: StateStore, tenant: str, status: str, kind: str = "reconcile", error: str | None = None
) -> int:
    run_id = store.start_run(tenant, kind, "fast")
    store.finish_run(run_id, status=status, counts={}, requests={}, error=error)
    return run_id


def _no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_one_firing_then_one_resolved_on_every_channel(
    rx: tuple[HttpReceiver, SmtpReceiver], tmp_path: Path, state_url: str, tenant_id: str
) -> None:
    http, smtp = rx
    settings = alert_settings(
        tmp_path, tenant_id, http_url=http.url, smtp_port=smtp.port, state_url=state_url
    )
    tenant = settings.tenants[tenant_id]
    store = StateStore(state_url)
    run_id = _run(store, tenant_id, "failed", error=f"SmartEPI refused the key {API_KEY}")

    first = service.check_tenant(store, tenant_id, tenant)
    assert [(m.condition, m.state) for m in first] == [("failed_run:reconcile", "firing")]
    for _ in range(3):  # the condition holds: no alert storm
        assert service.check_tenant(store, tenant_id, tenant) == []
    _run(store, tenant_id, "failed", error="still down")  # another failure of the same condition
    assert service.check_tenant(store, tenant_id, tenant) == []

    slack = http.bodies(f"/slack/{HOOK_KEY}")
    generic = http.bodies(f"/json/{HOOK_KEY}")
    assert len(slack) == 1 and set(slack[0]) == {"text"}
    assert f"FIRING: Reconcile run {run_id} failed" in slack[0]["text"]
    assert f"https://erpsync.example.com/status/runs/{run_id}" in slack[0]["text"]
    assert len(generic) == 1
    assert generic[0]["status"] == "firing" and generic[0]["tenant"] == tenant_id
    assert generic[0]["condition"] == "failed_run:reconcile"
    assert len(smtp.messages) == 1 and "FIRING" in str(smtp.messages[0]["Subject"])
    assert smtp.envelopes == [("erpsync@example.com", ["ops@example.com"])]
    assert smtp.logins == [("alerts", SMTP_PASSWORD)]  # the password goes to the server only
    _no_secrets(repr([body for _, body in http.posts]) + smtp.messages[0].as_string())
    assert "***" in generic[0]["detail"]  # the API key in the run's error was masked

    _run(store, tenant_id, "ok")
    done = service.check_tenant(store, tenant_id, tenant)
    assert [(m.condition, m.state) for m in done] == [("failed_run:reconcile", "resolved")]
    assert service.check_tenant(store, tenant_id, tenant) == []
    slack = http.bodies(f"/slack/{HOOK_KEY}")
    assert len(slack) == 2 and "RESOLVED: Reconcile run" in slack[1]["text"]
    assert [b["status"] for b in http.bodies(f"/json/{HOOK_KEY}")] == ["firing", "resolved"]
    assert len(smtp.messages) == 2 and "RESOLVED" in str(smtp.messages[1]["Subject"])
    assert store.alert_states(tenant_id) == []

    _run(store, tenant_id, "failed", error="down again")  # a new episode: a new message
    assert [m.state for m in service.check_tenant(store, tenant_id, tenant)] == ["firing"]
    assert len(http.bodies(f"/slack/{HOOK_KEY}")) == 3


def test_failed_delivery_is_retried_once_its_claim_lapses(
    rx: tuple[HttpReceiver, SmtpReceiver], tmp_path: Path, state_url: str, tenant_id: str
) -> None:
    http, _ = rx
    settings = alert_settings(
        tmp_path, tenant_id, http_url=http.url, smtp_port=None, state_url=state_url, formats=("json",)
    )
    tenant = settings.tenants[tenant_id]
    store = StateStore(state_url)
    _run(store, tenant_id, "failed", error="boom")
    now = utcnow()
    http.status = 500
    assert service.check_tenant(store, tenant_id, tenant, now=now) == []
    http.status = 200
    assert service.check_tenant(store, tenant_id, tenant, now=now + dt.timedelta(seconds=5)) == []  # claimed
    later = now + dt.timedelta(seconds=service.CLAIM_SECONDS + 1)
    assert [m.state for m in service.check_tenant(store, tenant_id, tenant, now=later)] == ["firing"]
    assert service.check_tenant(store, tenant_id, tenant, now=later) == []
    assert len(http.bodies(f"/json/{HOOK_KEY}")) == 1


def test_a_condition_that_clears_before_it_was_announced_sends_nothing(
    rx: tuple[HttpReceiver, SmtpReceiver], tmp_path: Path, state_url: str, tenant_id: str
) -> None:
    http, _ = rx
    settings = alert_settings(
        tmp_path, tenant_id, http_url=http.url, smtp_port=None, state_url=state_url, formats=("json",)
    )
    tenant = settings.tenants[tenant_id]
    store = StateStore(state_url)
    _run(store, tenant_id, "failed", error="boom")
    now = utcnow()
    http.status = 503
    service.check_tenant(store, tenant_id, tenant, now=now)
    _run(store, tenant_id, "ok")
    http.status = 200
    later = now + dt.timedelta(seconds=service.CLAIM_SECONDS + 1)
    assert service.check_tenant(store, tenant_id, tenant, now=later) == []
    assert http.posts == [] and store.alert_states(tenant_id) == []


def test_every_condition_from_the_state_store(tmp_path: Path, state_url: str, tenant_id: str) -> None:
    settings = alert_settings(
        tmp_path,
        tenant_id,
        http_url="http://127.0.0.1:9",
        smtp_port=None,
        state_url=state_url,
        thresholds={"rejected_rows": 1, "webhook_failures": 2, "backlog_minutes": 5, "stale_intervals": 2},
    )
    tenant = settings.tenants[tenant_id]
    store = StateStore(state_url)
    sent: list[AlertMessage] = []

    def send(m: AlertMessage) -> bool:
        sent.append(m)
        return True

    now = utcnow()
    assert service.check_tenant(store, tenant_id, tenant, now=now, send=send) == []  # starts watching
    store.quarantine(
        tenant_id,
        [
            QuarantineEntry("smartepi", "employees", k, "cpf", "cpf_invalid", "bad cpf", None, "h")
            for k in ("E1", "E2")
        ],
    )
    store.alert_count(tenant_id, service.WEBHOOK_FAILURES)
    store.alert_count(tenant_id, service.WEBHOOK_FAILURES)
    store.inbox_add(tenant_id, "smartepi", "evt-1", "transaction.created", {"id": "evt-1"})
    with store.session() as s:
        s.execute(
            update(InboundEvent)
            .where(InboundEvent.tenant == tenant_id)  # type: ignore[arg-type]
            .values(received_at=now - dt.timedelta(minutes=6))
        )
        s.commit()
    stale = now + dt.timedelta(seconds=2 * 300 + 1)
    fired = service.check_tenant(store, tenant_id, tenant, now=stale, send=send)
    assert sorted(m.condition for m in fired) == [
        "inbox_backlog",
        "rejected_rows",
        "stale_reconcile",
        "webhook_failures",
    ]
    assert all(m.state == "firing" for m in fired)

    store.release_many(tenant_id, "smartepi", "employees", ["E1"])  # 1 row left: at the threshold
    store.alert_count(tenant_id, service.WEBHOOK_FAILURES, reset=True)
    store.inbox_mark([e.id for e in store.inbox_pending(tenant_id) if e.id is not None], "done")
    _run(store, tenant_id, "partial")  # a reconcile that completed (some rows failed) is not stale
    cleared = service.check_tenant(store, tenant_id, tenant, now=utcnow(), send=send)
    assert sorted((m.condition, m.state) for m in cleared) == [
        ("inbox_backlog", "resolved"),
        ("rejected_rows", "resolved"),
        ("stale_reconcile", "resolved"),
        ("webhook_failures", "resolved"),
    ]
    assert len(sent) == 8 and store.alert_states(tenant_id) == []


def test_concurrent_evaluators_send_one_message(tmp_path: Path, pg_url: str | None, tenant_id: str) -> None:
    if pg_url is None:
        pytest.skip("PostgreSQL not reachable here")
    settings = alert_settings(
        tmp_path, tenant_id, http_url="http://127.0.0.1:9", smtp_port=None, state_url=pg_url
    )
    tenant = settings.tenants[tenant_id]
    store = StateStore(pg_url)
    _run(store, tenant_id, "failed", error="boom")
    sent: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def send(m: AlertMessage) -> bool:
        time.sleep(0.05)
        with lock:
            sent.append(m.state)
        return True

    def evaluate() -> None:
        start.wait()
        service.check_tenant(store, tenant_id, tenant, send=send)

    threads = [threading.Thread(target=evaluate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sent == ["firing"]


def test_webhook_signature_failures_in_a_row_through_the_app(
    rx: tuple[HttpReceiver, SmtpReceiver],
    tmp_path: Path,
    redis_url: str,
    tenant_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    namespace = f"erpsync-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("ERPSYNC_NAMESPACE", namespace)
    try:
        _webhook_streak(rx, tmp_path, redis_url, tenant_id)
    finally:
        import redis as redis_lib

        r = redis_lib.Redis.from_url(redis_url)
        for key in r.scan_iter(f"{namespace}*", count=1000):  # the enqueued apply task
            r.delete(key)
        r.close()


def _webhook_streak(
    rx: tuple[HttpReceiver, SmtpReceiver], tmp_path: Path, redis_url: str, tenant_id: str
) -> None:
    from sync.web import create_app

    http, _ = rx
    state_url = f"sqlite:///{tmp_path}/state.db"
    settings = alert_settings(
        tmp_path,
        tenant_id,
        http_url=http.url,
        smtp_port=None,
        state_url=state_url,
        redis_url=redis_url,
        thresholds={"webhook_failures": 3},
        formats=("json",),
    )
    store = StateStore(state_url)
    client = TestClient(create_app(settings, store=store))
    body = b'{"id": "evt-1", "type": "transaction.created"}'
    url = f"/webhooks/smartepi/{tenant_id}"

    def post(secret: str) -> int:
        header = sign(body, secret, timestamp=int(time.time()))
        return client.post(url, content=body, headers={"X-SmartEPI-Signature": header}).status_code

    for _ in range(3):
        assert post("whsec_wrong_secret_000000000000") == 401
    counter = store.alert_counter(tenant_id, service.WEBHOOK_FAILURES)
    assert counter is not None and counter.value == 3
    tenant = settings.tenants[tenant_id]
    assert [m.condition for m in service.check_tenant(store, tenant_id, tenant)] == ["webhook_failures"]

    from alert_config import WEBHOOK_SECRET

    assert post(WEBHOOK_SECRET) == 200
    counter = store.alert_counter(tenant_id, service.WEBHOOK_FAILURES)
    assert counter is not None and counter.value == 0
    assert [m.state for m in service.check_tenant(store, tenant_id, tenant)] == ["resolved"]
    assert [b["status"] for b in http.bodies(f"/json/{HOOK_KEY}")] == ["firing", "resolved"]


def test_beat_task_and_the_check_after_a_run(
    rx: tuple[HttpReceiver, SmtpReceiver], tmp_path: Path, redis_url: str, tenant_id: str
) -> None:
    from celery.signals import task_postrun

    from celeryconfig import build_beat_schedule
    from sync import celery_app, tasks
    from sync.alerts.tasks import check_alerts

    http, _ = rx
    state_url = f"sqlite:///{tmp_path}/state.db"
    settings: Settings = alert_settings(
        tmp_path,
        tenant_id,
        http_url=http.url,
        smtp_port=None,
        state_url=state_url,
        redis_url=redis_url,
        formats=("json",),
    )
    entry = build_beat_schedule(settings)["check-alerts"]
    assert entry["task"] == "erpsync.check_alerts" and entry["schedule"] == settings.alerts_check_seconds
    assert "erpsync.check_alerts" in celery_app.app.tasks

    celery_app.configure(settings)
    tasks.configure_runtime()  # this process's runtime is rebuilt from the new settings
    try:
        store = tasks.runtime().store
        _run(store, tenant_id, "failed", error="boom")
        # what a worker does when a reconcile task ends
        task_postrun.send(
            sender=tasks.reconcile, task_id="t1", task=tasks.reconcile, args=(tenant_id,), kwargs={}
        )
        # a change-event sync that ended ok does not evaluate (they are many)
        before = len(http.posts)
        _run(store, tenant_id, "ok")
        task_postrun.send(
            sender=tasks.sync_keys,
            task_id="t2",
            task=tasks.sync_keys,
            args=(tenant_id,),
            retval={"status": "ok"},
        )
        assert len(http.posts) == before == 1
        assert check_alerts.run() == {tenant_id: 1}  # beat: the resolved message
        assert [b["status"] for b in http.bodies(f"/json/{HOOK_KEY}")] == ["firing", "resolved"]
    finally:
        tasks.configure_runtime()


@pytest.mark.parametrize(
    ("base", "why"),
    [
        ("http://hooks.example.com", "must be https"),
        ("https://169.254.169.254", "metadata"),
        ("https://user:pw@hooks.example.com", "user:password"),
    ],
)
def test_settings_refuse_bad_alert_targets(tmp_path: Path, base: str, why: str) -> None:
    from sync.errors import ConfigError

    with pytest.raises(ConfigError, match=why) as err:
        alert_settings(tmp_path, "acme", http_url=base, smtp_port=None, state_url="sqlite://")
    assert HOOK_KEY not in str(err.value)  # the URL (a credential) is not echoed


def test_the_web_process_evaluates_alerts_while_it_serves(
    rx: tuple[HttpReceiver, SmtpReceiver],
    tmp_path: Path,
    redis_url: str,
    tenant_id: str,
) -> None:
    """With no worker at all, `erpsync serve` still reports (here: a failed run)."""
    from sync.web import create_app

    http, _ = rx
    state_url = f"sqlite:///{tmp_path}/state.db"
    settings = alert_settings(
        tmp_path,
        tenant_id,
        http_url=http.url,
        smtp_port=None,
        state_url=state_url,
        redis_url=redis_url,
        formats=("json",),
    )
    store = StateStore(state_url)
    _run(store, tenant_id, "failed", error="boom")
    app = create_app(settings, store=store)
    TestClient(app).get("/health/live")  # no lifespan (no `with`): no evaluation
    assert http.posts == [] and store.alert_states(tenant_id) == []
    with TestClient(app) as client:  # the lifespan of a served app
        deadline = time.monotonic() + 20
        while not http.posts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/health/live").status_code == 200
    assert [b["status"] for b in http.bodies(f"/json/{HOOK_KEY}")] == ["firing"]


def test_an_unusable_state_store_is_logged_not_raised(
    tmp_path: Path, tenant_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import text

    state_url = f"sqlite:///{tmp_path}/state.db"
    settings = alert_settings(
        tmp_path, tenant_id, http_url="http://127.0.0.1:9", smtp_port=None, state_url=state_url
    )
    store = StateStore(state_url)
    with store.engine.begin() as conn:  # a store not upgraded to the alerts migration
        conn.execute(text("DROP TABLE alert_states"))
    with caplog.at_level("ERROR", logger="erpsync.alerts"):
        assert service.check_all(settings, store) == {}
        service.after_run(settings, store, tenant_id)
    assert len(caplog.records) == 2
    assert all("erpsync db upgrade" in r.getMessage() and r.exc_info is None for r in caplog.records)
