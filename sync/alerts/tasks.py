"""Celery side of alerts: the beat task ``erpsync.check_alerts`` and the check after runs.

After each run task (reconcile, pull, inbound apply, intent resolution, maintenance, and a
change-event sync that did not end ok) the worker evaluates that tenant's alerts, so a
failed run is reported at once; beat runs ``check_alerts`` every ``alerts_check_seconds``
for the conditions no run ends (no reconcile at all, an inbox backlog, webhook failures).
Registered through ``sync.celery_app``'s ``include``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_postrun

from sync.alerts import service
from sync.celery_app import app
from sync.redact import scrub

log = logging.getLogger("erpsync.alerts")

CHECK_TASK = "erpsync.check_alerts"
# Tasks whose end is a run's end, with the tenant as first argument.
AFTER_RUN = frozenset(
    {
        "erpsync.reconcile",
        "erpsync.pull_inbound",
        "erpsync.apply_inbound",
        "erpsync.resolve_intents",
    }
)


@app.task(name=CHECK_TASK, ignore_result=True)
def check_alerts() -> dict[str, int]:
    """Beat: evaluate the alerts of every tenant that has an ``alerts`` section."""
    from sync.tasks import runtime

    rt = runtime()
    return service.check_all(rt.settings, rt.store)


def _tenant_of(args: Any, kwargs: Any) -> str | None:
    tenant = (args[0] if args else None) or (kwargs or {}).get("tenant")
    return tenant if isinstance(tenant, str) else None


@task_postrun.connect
def _after_run(
    sender: Any = None, args: Any = None, kwargs: Any = None, retval: Any = None, **_: Any
) -> None:
    name = getattr(sender, "name", "")
    if name == "erpsync.maintenance":  # it may have marked runs of dead workers failed
        check_alerts()
        return
    ended_badly = name == "erpsync.sync_keys" and not (
        isinstance(retval, dict) and retval.get("status") == "ok"
    )
    if name not in AFTER_RUN and not ended_badly:
        return
    tenant = _tenant_of(args, kwargs)
    if tenant is None:
        return
    try:
        from sync.tasks import runtime

        rt = runtime()
        service.after_run(rt.settings, rt.store, tenant)
    except Exception as exc:  # alerting never fails a task
        log.error("alerts after %s of %s could not be evaluated: %s", name, tenant, scrub(str(exc))[:500])
