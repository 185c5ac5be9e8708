"""Evaluate a tenant's alerts against the state store and send what is due.

One message per condition each way: a firing condition gets a row in ``alert_states``
(unique per tenant and condition, so two evaluating processes open it once), its message
is sent under a delivery claim, and when the condition clears the row turns ``resolved``
and one "resolved" message is sent before the row goes. A delivery that failed on every
channel is retried when its claim lapses (``CLAIM_SECONDS``); a condition that clears
before its firing message was delivered goes silently.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from sync.alerts.conditions import Firing, Known, RunFacts, TenantFacts, evaluate, transitions
from sync.alerts.notify import AlertMessage, Notifier
from sync.alerts.settings import AlertSettings
from sync.errors import utcnow
from sync.redact import scrub
from sync.settings import Settings, TenantSettings
from sync.state.models import AlertState
from sync.state.store import StateStore

log = logging.getLogger("erpsync.alerts")

CLAIM_SECONDS = 60
SUCCESSFUL_RECONCILE = ("ok", "partial")
WEBHOOK_FAILURES = "webhook_failures"

Send = Callable[[AlertMessage], bool]


def gather(store: StateStore, tenant_id: str, tenant: TenantSettings, now: dt.datetime) -> TenantFacts:
    """The facts the conditions read, from the state store."""
    last = store.last_run_with(tenant_id, "reconcile", SUCCESSFUL_RECONCILE)
    counter = store.alert_counter(tenant_id, WEBHOOK_FAILURES)
    return TenantFacts(
        tenant=tenant_id,
        now=now,
        watch_since=store.alert_watch_since(tenant_id, now),
        reconcile_interval_seconds=min(
            tenant.schedule.fast_reconcile_seconds, tenant.schedule.full_reconcile_seconds
        ),
        last_runs={
            kind: RunFacts(int(r.id or 0), r.kind, r.status, r.error, r.finished_at)
            for kind, r in store.last_runs_by_kind(tenant_id).items()
        },
        last_reconcile_ok=(last.finished_at or last.started_at) if last is not None else None,
        quarantined=sum(store.quarantine_by_rule(tenant_id).values()),
        webhook_failures=counter.value if counter is not None else 0,
        oldest_pending=store.inbox_oldest_pending(tenant_id),
    )


def _summary(firing: Firing, tenant_id: str, conf: AlertSettings) -> str:
    url = None
    if conf.status_url:
        url = f"{conf.status_url}/status/tenants/{tenant_id}"
        if firing.run_id is not None:
            url = f"{conf.status_url}/status/runs/{firing.run_id}"
    return json.dumps({"title": scrub(firing.title), "detail": scrub(firing.detail), "url": url})


def _message(row: AlertState, state: str, now: dt.datetime) -> AlertMessage:
    try:
        data: dict[str, Any] = json.loads(row.summary)
    except ValueError:
        data = {"title": row.condition, "detail": row.summary}
    return AlertMessage(
        tenant=row.tenant,
        condition=row.condition,
        state="firing" if state == "firing" else "resolved",
        title=str(data.get("title") or row.condition),
        detail=str(data.get("detail") or ""),
        since=row.since,
        at=now,
        url=data.get("url"),
    )


def check_tenant(
    store: StateStore,
    tenant_id: str,
    tenant: TenantSettings,
    *,
    now: dt.datetime | None = None,
    send: Send | None = None,
) -> list[AlertMessage]:
    """Evaluate one tenant and deliver what is due; returns the messages delivered."""
    conf = tenant.alerts
    if conf is None:
        return []
    now = now or utcnow()
    send = send or Notifier(conf).send
    free_before = now - dt.timedelta(seconds=CLAIM_SECONDS)
    firing = evaluate(gather(store, tenant_id, tenant, now), conf.thresholds)
    known = [Known(int(r.id or 0), r.condition, r.state, r.announced) for r in store.alert_states(tenant_id)]
    todo = transitions(firing, known)
    for f in todo.open:
        store.alert_open(tenant_id, f.key, _summary(f, tenant_id, conf))
    for alert_id in todo.resolve:
        store.alert_transition(alert_id, "firing", "resolved", free_before=free_before)
    for alert_id in todo.refire:
        store.alert_transition(alert_id, "resolved", "firing", free_before=free_before)

    delivered: list[AlertMessage] = []
    for row in store.alert_states(tenant_id):
        alert_id = int(row.id or 0)
        if row.state == "firing" and not row.announced:
            if store.alert_claim(alert_id, "firing", now=now, free_before=free_before):
                message = _message(row, "firing", now)
                if send(message):
                    store.alert_announced(alert_id)
                    delivered.append(message)
        elif row.state == "resolved" and not row.announced:
            store.alert_close(alert_id)  # never announced: nothing to take back
        elif row.state == "resolved" and store.alert_claim(
            alert_id, "resolved", now=now, free_before=free_before
        ):
            message = _message(row, "resolved", now)
            if send(message):
                store.alert_close(alert_id)
                delivered.append(message)
    for m in delivered:
        log.info("alert %s/%s %s: %s", m.tenant, m.condition, m.state, m.headline)
    return delivered


def check_all(settings: Settings, store: StateStore, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Every tenant with an ``alerts`` section; one tenant's error never stops the others."""
    out: dict[str, int] = {}
    for tenant_id, tenant in settings.tenants.items():
        if tenant.alerts is None:
            continue
        try:
            out[tenant_id] = len(check_tenant(store, tenant_id, tenant, now=now))
        except Exception as exc:
            _failed(tenant_id, exc)
    return out


def after_run(settings: Settings, store: StateStore, tenant_id: str) -> None:
    """Best effort, after a run ended: never raises (alerting must not fail a run)."""
    tenant = settings.tenants.get(tenant_id)
    if tenant is None or tenant.alerts is None:
        return
    try:
        check_tenant(store, tenant_id, tenant)
    except Exception as exc:
        _failed(tenant_id, exc)


def _failed(tenant_id: str, exc: Exception) -> None:
    """Log why, scrubbed and without a traceback (a driver's text may hold a URL)."""
    log.error(
        "alerts of tenant %s could not be evaluated: %s: %s (check the state store; after an "
        "upgrade run `erpsync db upgrade`)",
        tenant_id,
        type(exc).__name__,
        scrub(str(exc))[:500],
    )


def webhook_verified(store: StateStore, tenant_id: str, ok: bool) -> None:
    """The webhook receiver's hook: a failed signature check adds one to the streak, a good
    one ends it. Never raises (the answer to the sender must not depend on it)."""
    try:
        store.alert_count(tenant_id, WEBHOOK_FAILURES, reset=ok)
    except Exception as exc:
        log.warning(
            "could not count a webhook signature check of tenant %s: %s", tenant_id, scrub(str(exc))[:300]
        )
