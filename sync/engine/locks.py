"""One reconcile per tenant: a lease with a fencing token in the state store (design §3).

Why a state-store lease and not a Redis lock:

- the state store is where a reconcile commits what it did (bindings, intents, runs), so
  the fence is checked against the same database that makes its writes durable; a Redis
  lock can vanish on a Redis restart or failover without the holder noticing, and then
  two reconciles would interleave writes to the platforms;
- the CLI (``erpsync apply``) runs without Redis and must still exclude workers;
- the cost, one short transaction per renewal and per fence check, is small next to
  one platform request.

A ``TenantLease`` is held for one attempt of one task (its holder id is unique per
attempt, never the Celery task id, so a redelivered copy of a task that is in fact still
running cannot pass the fence of the original). A daemon thread renews it every
``ttl / 3``; ``fence()`` (handed to the engine, which calls it before writes) raises
``LockLost`` once the lease was taken over or lapsed. A worker killed with ``-9`` stops
renewing, so its lease frees itself after at most ``ttl`` seconds.

A fence check narrows, but cannot close, the window between the check and the write it
guards (a pause right after the check): the intent log's per-record claim and natural-key
lookups are what make such a late write harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from types import TracebackType

from sync.errors import LockLost
from sync.state.store import StateStore

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0


def lease_name(tenant: str) -> str:
    """The lease name ``StateStore.purge_tenant`` knows about."""
    return f"reconcile:{tenant}"


def new_holder() -> str:
    """A holder id unique to this attempt; host and pid make the lease table readable."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


class TenantLease:
    """Context manager: ``with TenantLease(store, tenant) as lease:`` (``lease.acquired`` tells)."""

    def __init__(
        self, store: StateStore, tenant: str, *, ttl: float = DEFAULT_LEASE_SECONDS, holder: str | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.store = store
        self.name = lease_name(tenant)
        self.ttl = ttl
        self.holder = holder or new_holder()
        self.token: int | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def acquired(self) -> bool:
        return self.token is not None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def acquire(self) -> bool:
        """Try once; on success start the renewal thread."""
        self.token = self.store.acquire_lease(self.name, self.holder, self.ttl)
        if self.token is None:
            return False
        self._stop.clear()
        self._lost.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return True

    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            try:
                token = self.store.acquire_lease(self.name, self.holder, self.ttl)
            except Exception:  # a DB blip: keep trying until the lease would have lapsed
                log.warning("lease %s: renewal failed, retrying", self.name, exc_info=True)
                continue
            if token != self.token:
                log.warning("lease %s: lost (taken over by another holder)", self.name)
                self._lost.set()
                if token is not None:  # we re-took a lapsed lease under a new token: give it back
                    self.store.release_lease(self.name, self.holder)
                return

    def fence(self) -> None:
        """Raise ``LockLost`` unless this attempt still holds the lease (checked in the state DB)."""
        if self.token is None or self._lost.is_set():
            raise LockLost(f"{self.name}: lease not held")
        if not self.store.check_fence(self.name, self.holder, self.token):
            self._lost.set()
            raise LockLost(f"{self.name}: lease lost")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.token is not None:
            try:
                self.store.release_lease(self.name, self.holder)
            finally:
                self.token = None

    def __enter__(self) -> TenantLease:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
