"""Celery app for test workers: the real tasks, with the fake engine and a short lease.

Started as ``celery -A worker_app worker`` (tests/service on PYTHONPATH); configuration
comes from $ERPSYNC_CONFIG and $ERPSYNC_NAMESPACE like a production worker.
"""

import os

from fake_engine import FakeEngine

from sync import tasks
from sync.celery_app import app

tasks.configure_runtime(
    engine_factory=FakeEngine, lease_seconds=float(os.environ.get("FAKE_LEASE_SECONDS", "3"))
)

__all__ = ["app"]
