"""Celery configuration, built from erpsync's typed settings (``build_config``).

The invariants that make tasks safe to redeliver (design §3), checked by
tests/service/test_celeryconfig.py:

- ``acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged only after it
  ran, so a worker that dies mid-task (kill -9, OOM, lost machine) leaves it to be
  redelivered; every task is idempotent, so running it twice is harmless;
- prefetch multiplier 1: a worker reserves no more than it runs, so a long reconcile
  does not sit on events that another worker could take;
- one visibility timeout (``celery.visibility_timeout``), the same for the broker, the
  result backend and the unacked-restore sweep, and greater than the hard time limit
  (the settings model enforces it), so a running task is never redelivered as lost;
  the sweep's mutex expires after a quarter of it, so a worker killed inside the sweep
  delays redelivery by that much, not by kombu's five minutes;
- JSON only (no pickle from a shared Redis);
- three queues: ``events`` (change events, latency-sensitive), ``reconcile`` (long
  runs), ``inbound`` (webhook inbox, pulls), so a full reconcile never blocks events;
- with a namespace (``$ERPSYNC_NAMESPACE``), every Redis key of Celery carries it
  (``global_keyprefix``), so several deployments or test sessions can share one Redis
  database; without one, Celery's keys are the stock ones (Flower works unconfigured).

The beat schedule is built per tenant from ``tenants.<id>.schedule``, plus the inbox relay
and ``maintenance`` (stale runs, retention; every ``celery.maintenance_seconds``).

A task that kills its worker is redelivered by the invariants above; ``sync.tasks`` counts
deliveries per task id and drops it after ``celery.max_deliveries`` (a failed run says why).
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from sync.errors import ConfigError
from sync.settings import Settings, TenantSettings, soft_time_limit

QUEUES = ("events", "reconcile", "inbound")

TASK_ROUTES = {
    "erpsync.sync_keys": {"queue": "events"},
    "erpsync.poll_watermarks": {"queue": "events"},
    "erpsync.advance_watermark": {"queue": "events"},
    "erpsync.clear_watermark_claim": {"queue": "events"},
    "erpsync.reconcile": {"queue": "reconcile"},
    "erpsync.resolve_intents": {"queue": "reconcile"},
    "erpsync.apply_inbound": {"queue": "inbound"},
    "erpsync.relay_inbox": {"queue": "inbound"},
    "erpsync.pull_inbound": {"queue": "inbound"},
    "erpsync.maintenance": {"queue": "inbound"},
    "erpsync.check_alerts": {"queue": "inbound"},
}


def restore_interval(visibility_timeout: int) -> int:
    """How often a worker sweeps for messages whose consumer died (a twentieth of the timeout)."""
    return max(1, min(60, visibility_timeout // 20))


def restore_mutex_expire(visibility_timeout: int) -> int:
    """How long the restore sweep's Redis mutex outlives a worker killed while holding it.

    kombu's default is 300 s. A worker that is killed -9 (OOM, lost machine) inside its
    sweep leaves the mutex behind, and no worker can restore a lost task until it expires,
    on top of the visibility timeout. One sweep takes milliseconds, so a quarter of the
    timeout (5 s to 300 s) keeps redelivery after a crash within 1.25 × the timeout.
    """
    return max(5, min(300, visibility_timeout // 4))


def is_sql_source(erp: Any) -> bool:
    """SQL sources have an ``updated_at`` column the watermark poll can use; Tryton sources
    poll ``last_modified_at`` of every contributing model (sync.sources.tryton)."""
    kind = erp.get("kind") if isinstance(erp, dict) else getattr(erp, "kind", None)
    return kind in ("sql", "tryton")


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per tenant: fast and full reconciles, pulls, the watermark poll (SQL sources); one inbox relay."""
    schedule: dict[str, dict[str, Any]] = {}
    for tenant_id, tenant in sorted(settings.tenants.items()):
        schedule.update(_tenant_schedule(tenant_id, tenant))
    if settings.tenants:
        every = float(min(t.schedule.pull_seconds for t in settings.tenants.values()))
        schedule["relay-inbox"] = {
            "task": "erpsync.relay_inbox",
            "schedule": every,
            "args": (),
            "kwargs": {},
            "options": {**TASK_ROUTES["erpsync.relay_inbox"], "expires": every},
        }
        # Runs of dead workers marked failed, history past its retention purged.
        maintain = float(settings.celery.maintenance_seconds)
        schedule["maintenance"] = {
            "task": "erpsync.maintenance",
            "schedule": maintain,
            "args": (),
            "kwargs": {},
            "options": {**TASK_ROUTES["erpsync.maintenance"], "expires": maintain},
        }
    if any(t.alerts is not None for t in settings.tenants.values()):  # sync/alerts/tasks.py
        check = float(settings.alerts_check_seconds)
        schedule["check-alerts"] = {
            "task": "erpsync.check_alerts",
            "schedule": check,
            "args": (),
            "kwargs": {},
            "options": {**TASK_ROUTES["erpsync.check_alerts"], "expires": check},
        }
    return schedule


def _tenant_schedule(tenant_id: str, tenant: TenantSettings) -> dict[str, dict[str, Any]]:
    s = tenant.schedule

    def entry(task: str, every: int, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        # A trigger older than its own interval is stale: the next one supersedes it.
        return {
            "task": task,
            "schedule": float(every),
            "args": (tenant_id,),
            "kwargs": kwargs or {},
            "options": {**TASK_ROUTES[task], "expires": float(every)},
        }

    out = {
        f"{tenant_id}:reconcile-fast": entry("erpsync.reconcile", s.fast_reconcile_seconds, {"mode": "fast"}),
        f"{tenant_id}:reconcile-full": entry("erpsync.reconcile", s.full_reconcile_seconds, {"mode": "full"}),
        f"{tenant_id}:pull": entry("erpsync.pull_inbound", s.pull_seconds),
    }
    if is_sql_source(tenant.erp):
        out[f"{tenant_id}:watermarks"] = entry("erpsync.poll_watermarks", s.watermark_seconds)
    return out


def build_config(settings: Settings, *, namespace: str | None = None) -> dict[str, Any]:
    """The Celery configuration mapping (``app.conf.update(build_config(...))``)."""
    c = settings.celery
    broker = c.broker_url or settings.redis_url
    if not broker:
        raise ConfigError("redis_url is not set", hint="the Celery service needs Redis: set redis_url")
    backend = c.result_backend or broker
    vt = c.visibility_timeout
    prefixed = {"global_keyprefix": f"{namespace}:"} if namespace else {}
    exchange = Exchange("erpsync", type="direct")
    return {
        "broker_url": broker,
        "result_backend": backend,
        "broker_transport_options": {
            "visibility_timeout": vt,
            "unacked_restore_interval": restore_interval(vt),
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": restore_mutex_expire(vt),
            **prefixed,
        },
        "result_backend_transport_options": {"visibility_timeout": vt, **prefixed},
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": c.task_time_limit,
        "task_soft_time_limit": soft_time_limit(c.task_time_limit),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accepted_content": ["json"],
        "result_expires": 24 * 3600,
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_queues": [Queue(q, exchange, routing_key=q) for q in QUEUES],
        "task_default_queue": "events",
        "task_default_exchange": "erpsync",
        "task_default_routing_key": "events",
        "task_create_missing_queues": False,
        "task_routes": TASK_ROUTES,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": build_beat_schedule(settings),
        "worker_hijack_root_logger": False,
    }
