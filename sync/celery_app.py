"""The Celery application (``celery -A sync.celery_app …`` or ``erpsync worker``).

Configuration is lazy: importing this module (the web app does, to enqueue) reads no
settings; the first use of ``app.conf`` loads them from ``$ERPSYNC_CONFIG`` and the
environment. ``configure(settings)`` sets them explicitly (CLI commands, tests, bench).

``ERPSYNC_NAMESPACE``, when set, prefixes every Redis key of the service (Celery's
queues and results, the throttle, the reconcile bookkeeping), so several deployments or
test sessions can share one Redis database. Unset, Celery uses its stock key names (so
Flower needs no configuration) and erpsync's own keys start with ``erpsync:``.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from celery import Celery

from sync.settings import Settings, deployment_namespace, load_settings


def namespace() -> str:
    """Prefix of erpsync's own Redis keys."""
    return deployment_namespace() or "erpsync"


def celery_namespace() -> str | None:
    """Prefix of Celery's Redis keys: only when a namespace was asked for."""
    return deployment_namespace()


def celeryconfig_module() -> ModuleType:
    """The top-level ``celeryconfig`` module, also when erpsync runs from a source checkout."""
    try:
        return importlib.import_module("celeryconfig")
    except ImportError:
        for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
            if (root / "celeryconfig.py").exists():
                sys.path.append(str(root))
                return importlib.import_module("celeryconfig")
        raise


def build_config(settings: Settings) -> dict[str, Any]:
    return dict(celeryconfig_module().build_config(settings, namespace=celery_namespace()))


_settings: Settings | None = None


def settings() -> Settings:
    """This process's settings (loaded once, unless ``configure`` set them)."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


app = Celery("erpsync", include=["sync.tasks", "sync.alerts.tasks"])
app.add_defaults(lambda: build_config(settings()))


def configure(new: Settings) -> Celery:
    """Use ``new`` settings in this process (before any task is sent or a worker starts).

    Reconfiguring a process that already sent tasks (tests, benchmarks: another broker or
    namespace) drops the broker and result connections that were built for the old one.
    """
    global _settings
    config = build_config(new)
    changed = _settings is not None and any(
        app.conf.get(k) != v for k, v in config.items() if k != "beat_schedule"
    )
    _settings = new
    app.conf.update(config)
    if changed:
        app._after_fork()  # Celery's own reset of the broker and producer pools
        app._backend_cache = None
        app._local = threading.local()
        # Tasks copy the time limits from the config once and put them in every message they
        # send: without this, messages would carry the first configuration's limits.
        for task in list(app.tasks.values()):
            if task.name.startswith("erpsync."):
                task.time_limit = app.conf.task_time_limit
                task.soft_time_limit = app.conf.task_soft_time_limit
                task._exec_options = None
    return app
