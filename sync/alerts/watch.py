"""Alerts evaluated by ``erpsync serve`` too, so they fire when the workers or beat are down.

Beat's ``check_alerts`` runs on a worker: with every worker (or beat) stopped, nothing would
report that no reconcile succeeds any more. So the web process, which runs apart from them,
also evaluates every tenant's alerts every ``alerts_check_seconds``, in one daemon thread
started by the app's lifespan (uvicorn; a bare ``TestClient(app)`` without ``with`` starts
none). Several evaluators are safe: each message is sent once (``sync.alerts.service``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from sync.alerts.service import check_all
from sync.redact import scrub
from sync.settings import Settings
from sync.state.store import StateStore

log = logging.getLogger("erpsync.alerts")


class Watcher:
    def __init__(self, get_settings: Callable[[], Settings], get_store: Callable[[], StateStore]) -> None:
        self.get_settings = get_settings
        self.get_store = get_store
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if not any(t.alerts is not None for t in self.get_settings().tenants.values()):
            return
        self.thread = threading.Thread(target=self._loop, name="erpsync-alerts", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                check_all(self.get_settings(), self.get_store())
            except Exception as exc:  # an unreachable state store: try again next interval
                log.warning("alerts could not be evaluated by the web process: %s", scrub(str(exc))[:500])
            self.stop.wait(self.get_settings().alerts_check_seconds)

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)


def install(app: Any, get_settings: Callable[[], Settings], get_store: Callable[[], StateStore]) -> Watcher:
    """Run a ``Watcher`` for the app's lifetime (wraps its lifespan)."""
    watcher = Watcher(get_settings, get_store)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        watcher.start()
        try:
            async with inner(application) as state:
                yield state
        finally:
            watcher.close()

    app.router.lifespan_context = lifespan
    return watcher
