"""The FastAPI app of ``erpsync serve``: ERP change events, platform webhooks, health.

Dependencies are parameters (``submit``, ``store``, ``redis``) so tests can hand in
fakes; by default the app enqueues on the Celery service configured by ``settings``.
The webhook receiver (``sync.web.webhooks``) is mounted when that module is present;
it stores each event in the state store's inbox and calls ``on_stored``, which enqueues
``apply_inbound`` in one bounded attempt (a relay task picks up anything whose enqueue
was lost), so a webhook is answered in about a second even with Redis down.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from sync.engine.throttle import Admission
from sync.observability import metrics
from sync.redact import install_log_redaction
from sync.settings import Settings
from sync.state.store import StateStore
from sync.web.events import Submit, make_events_router
from sync.web.health import make_health_router

log = logging.getLogger("erpsync.web")


def create_app(
    settings: Settings | None = None,
    *,
    submit: Submit | None = None,
    store: StateStore | None = None,
    redis: Any = None,
) -> FastAPI:
    from sync import celery_app, tasks

    if settings is None:
        settings = celery_app.settings()
    install_log_redaction()
    celery_app.configure(settings)
    runtime = tasks.Runtime(settings, celery_app.namespace())
    if store is not None:
        runtime._cache["store"] = store
    if redis is not None:
        runtime._cache["redis"] = redis
    cached: dict[str, StateStore] = {}

    def get_settings() -> Settings:
        return settings

    def get_store() -> StateStore:
        if store is not None:
            return store
        if "store" not in cached:  # the web app never migrates: `erpsync db upgrade` does
            cached["store"] = StateStore(settings.state_url, migrate=False)
        return cached["store"]

    def default_submit(tenant: str, entity: str, keys: Sequence[str]) -> Admission:
        return tasks.submit_keys(tenant, entity, keys, rt=runtime)

    def check_state_db() -> None:
        with get_store().engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def check_redis() -> None:
        runtime.redis.ping()

    app = FastAPI(title="erpsync", version="0.1.0", docs_url=None, redoc_url=None)
    app.include_router(make_health_router({"state_db": check_state_db, "redis": check_redis}))
    app.include_router(make_events_router(get_settings, submit or default_submit))
    app.include_router(metrics.make_router(get_store))  # GET /metrics (docs/deployment.md)
    webhooks = _optional("sync.web.webhooks")
    if webhooks is not None:
        app.include_router(
            webhooks.make_webhook_router(
                get_settings, get_store, tasks.enqueue_inbound_now, on_verified=_webhook_streak(get_store)
            )
        )
    status = _optional("sync.web.status")  # GET /status (operator_token), docs/deployment.md
    if status is not None:
        app.include_router(status.make_status_router(get_settings, get_store))
    from sync.alerts import watch  # alerts also fire when workers or beat are down

    watch.install(app, get_settings, get_store)
    return app


def _webhook_streak(get_store: Any) -> Any:
    """Signature checks failing in a row, per tenant (the ``webhook_failures`` alert)."""
    from sync.alerts.service import webhook_verified

    return lambda tenant, ok: webhook_verified(get_store(), tenant, ok)


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        log.info("%s is not installed: its routes are not served", module)
        return None
