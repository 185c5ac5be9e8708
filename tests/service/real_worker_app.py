"""Celery app for the real-engine tests and ``bench/service.py --real``: the production tasks
with the production engine (``sync.engine.api.Engine``), only the lease TTL shortened.

Started as ``celery -A real_worker_app worker`` (tests/service on PYTHONPATH); the
configuration comes from $ERPSYNC_CONFIG and $ERPSYNC_NAMESPACE like a production worker.
"""

import os

from sync import tasks
from sync.celery_app import app

tasks.configure_runtime(
    engine_factory=tasks.default_engine,
    lease_seconds=float(os.environ.get("REAL_LEASE_SECONDS", "10")),
)

__all__ = ["app"]
