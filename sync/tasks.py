"""Celery tasks: thin wrappers that take ids and call the engine (design §2, §3).

Every task is safe to run twice (the engine's intent log, bindings and bases make a
repeat a no-op), because ``acks_late`` redelivers a task whose worker died.

Retries: only for errors whose ``kind`` is ``transient`` or ``ambiguous`` (an ambiguous
write is resolved by lookup on the next attempt, never blindly resent), with
exponential backoff, jitter and at most ``MAX_RETRIES`` attempts more. Anything else
(a bad config, a contract breach) fails the task at once: retrying cannot fix it.

Each worker process builds one ``Runtime`` (settings, state store, engine, Redis) on
first use, after the pool forked, so no connection is shared across processes.
``configure_runtime`` swaps the engine factory or the lease TTL (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from celery import Task
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from sync import celery_app
from sync.celery_app import app
from sync.engine.changes import parse_stamp, watermark_stream
from sync.engine.locks import DEFAULT_LEASE_SECONDS, TenantLease
from sync.engine.throttle import Admission, KeyThrottle, ReconcileLedger
from sync.errors import ErpsyncError, utcnow
from sync.observability import metrics
from sync.settings import CelerySettings, Settings
from sync.state.store import StateStore

log = logging.getLogger("erpsync.tasks")

MAX_RETRIES = 5
MODES = ("fast", "full")


class SummaryLike(Protocol):
    status: str

    def to_dict(self) -> dict[str, Any]: ...


class EngineLike(Protocol):
    """What the tasks need from ``sync.engine.api.Engine``."""

    def reconcile(
        self, tenant_id: str, *, mode: Any = "full", fence: Callable[[], None] | None = None
    ) -> SummaryLike: ...

    def sync_keys(
        self, tenant_id: str, entity: str, keys: list[str], *, fence: Callable[[], None] | None = None
    ) -> SummaryLike: ...

    def resolve_intents(self, tenant_id: str, *, fence: Callable[[], None] | None = None) -> int: ...

    def erp_changes_since(
        self, tenant_id: str, entity: str, since: dt.datetime | None
    ) -> tuple[list[str], dt.datetime | None]: ...

    def source_entities(self, tenant_id: str) -> list[str]: ...


EngineFactory = Callable[[Settings, StateStore], EngineLike]


def default_engine(settings: Settings, store: StateStore) -> EngineLike:
    from sync.engine.api import Engine

    # One loop and one set of platform clients per worker process: a change event then
    # costs no new loop, TCP/TLS connection, Redis handshake or SmartKasa login.
    return Engine(settings, store=store, keep_clients=True)


# --- per-process runtime ---------------------------------------------------------------


@dataclass
class Runtime:
    settings: Settings
    namespace: str
    engine_factory: EngineFactory = default_engine
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> StateStore:
        if "store" not in self._cache:
            self._cache["store"] = StateStore(self.settings.state_url)
        return self._cache["store"]  # type: ignore[no-any-return]

    @property
    def engine(self) -> EngineLike:
        if "engine" not in self._cache:
            self._cache["engine"] = self.engine_factory(self.settings, self.store)
        return self._cache["engine"]  # type: ignore[no-any-return]

    @property
    def redis(self) -> Any:
        if "redis" not in self._cache:
            import redis

            url = self.settings.redis_url or self.settings.celery.broker_url
            if not url:
                raise ErpsyncError("redis_url is not set", hint="the Celery service needs Redis")
            self._cache["redis"] = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        return self._cache["redis"]

    @property
    def throttle(self) -> KeyThrottle:
        if "throttle" not in self._cache:
            c = self.settings.celery
            self._cache["throttle"] = KeyThrottle(
                self.redis, namespace=self.namespace, window=c.debounce_seconds, ttl=throttle_ttl(c)
            )
        return self._cache["throttle"]  # type: ignore[no-any-return]

    @property
    def ledger(self) -> ReconcileLedger:
        if "ledger" not in self._cache:
            self._cache["ledger"] = ReconcileLedger(self.redis, namespace=self.namespace)
        return self._cache["ledger"]  # type: ignore[no-any-return]


def throttle_ttl(c: CelerySettings) -> float:
    """How long a throttle mark may absorb a key's events: as long as its sync task can live.

    The hard time limit kills a sync task after ``task_time_limit``, so a mark of a task
    that died (kill -9 mid-sync) lapses then, not after an hour: later events are admitted
    and synced. (A mark that lapses while its task still waits in the queue costs one extra
    sync, never a lost event.)"""
    return float(c.task_time_limit) + max(5.0, c.debounce_seconds + 1.0)


_lock = threading.Lock()
_runtime: Runtime | None = None
_overrides: dict[str, Any] = {}


def configure_runtime(
    *, engine_factory: EngineFactory | None = None, lease_seconds: float | None = None
) -> None:
    """Replace the engine factory and/or the lease TTL for this process (and its forks)."""
    global _runtime
    with _lock:
        if engine_factory is not None:
            _overrides["engine_factory"] = engine_factory
        if lease_seconds is not None:
            _overrides["lease_seconds"] = lease_seconds
        _runtime = None


def runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(celery_app.settings(), celery_app.namespace(), **_overrides)
        return _runtime


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    """A forked pool process must open its own connections."""
    global _runtime
    _runtime = None


@worker_process_shutdown.connect
def _close_runtime_on_exit(**_: Any) -> None:
    """Close the kept platform clients of this pool process (best effort: it is exiting)."""
    global _runtime
    metrics.process_exited()
    rt, _runtime = _runtime, None
    engine = rt._cache.get("engine") if rt is not None else None
    close = getattr(engine, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # never block the shutdown of a worker process
            log.debug("closing the engine's clients failed", exc_info=True)


_metrics_store: list[StateStore] = []


def _state_for_metrics() -> StateStore:
    if not _metrics_store:  # the main process never migrates: its pool processes do
        _metrics_store.append(StateStore(celery_app.settings().state_url, migrate=False))
    return _metrics_store[0]


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """``$ERPSYNC_METRICS_PORT`` set: this worker's ``/metrics`` (all pool processes, multiprocess
    mode, set up here before the pool forks) with the state store's gauges."""
    try:
        metrics.serve_worker(_state_for_metrics)
    except (OSError, ValueError) as exc:  # a worker without metrics beats no worker; say so loudly
        log.error("metrics: cannot serve /metrics on port %s: %s", metrics.port_setting(), exc)


@worker_shutdown.connect
def _stop_metrics(**_: Any) -> None:
    metrics.stop_worker_server()


@worker_ready.connect
def _resolve_intents_on_start(**_: Any) -> None:
    """Design §3: on start-up, resolve open intents before anything else writes."""
    for tenant in celery_app.settings().tenants:
        resolve_intents.apply_async((tenant,))


@worker_ready.connect
def _say_what_is_not_polled(**_: Any) -> None:
    """An ERP entity without a change column is invisible to the watermark poll: say so at
    start, in the worker's log, instead of silently waiting for the next reconcile."""
    from sync.engine.entities import unpolled

    for tenant_id, tenant in celery_app.settings().tenants.items():
        try:
            names = unpolled(tenant)
        except ErpsyncError as exc:
            log.warning("%s: cannot read the mappings to check change columns: %s", tenant_id, exc)
            continue
        for entity in names:
            log.warning(
                "%s: ERP entity %r has no change column (erp.entities.%s.updated_at): the poll "
                "cannot see its edits; only reconciles (every %d s) sync them",
                tenant_id,
                entity,
                entity,
                tenant.schedule.fast_reconcile_seconds,
            )


# --- retry policy (pure) ---------------------------------------------------------------


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ErpsyncError) and exc.kind in ("transient", "ambiguous")


def retry_delay(
    attempt: int, *, base: float = 2.0, cap: float = 300.0, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with jitter: uniform in [half, full] of ``min(cap, base·2^attempt)``."""
    ceiling = min(cap, base * (1 << min(max(0, attempt), 64)))
    return ceiling * (0.5 + 0.5 * rng())


def busy_delay(attempt: int, lease_seconds: float, *, rng: Callable[[], float] = random.random) -> float:
    """Wait for a tenant lease held by another run: poll at most every half TTL."""
    return retry_delay(attempt, base=1.0, cap=max(1.0, lease_seconds / 2), rng=rng)


def busy_limit(time_limit: float, lease_seconds: float) -> int:
    """Enough polls to outlast the longest run plus a dead holder's lease (then give up)."""
    slowest_poll = max(0.5, lease_seconds / 4)
    return 8 + math.ceil((time_limit + 2 * lease_seconds) / slowest_poll)


# --- deliveries of tasks that kill their worker ------------------------------------------


STALE_RUN_KINDS = ("reconcile", "sync_keys")  # the engine runs these kinds in worker tasks


def _deaths_key(rt: Runtime, task: Task) -> str:
    return f"{rt.namespace}:deaths:{task.request.id}"


@contextlib.contextmanager
def survivable(task: Task, tenant: str, kind: str, mode: str = "full") -> Iterator[bool]:
    """Yield False (the work must not run) when this task's worker died too often running it.

    ``acks_late`` + ``task_reject_on_worker_lost`` redeliver a task whose worker died, which
    is right for a lost machine and wrong for a task that itself kills the worker (out of
    memory on one tenant's data, a crash in a C extension): that one would be redelivered
    forever. So each start of the work increments a counter per task id (retries share the
    id) that only a surviving process clears (any Python exit: success, error or retry); a
    counter past ``celery.max_deliveries`` means that many deliveries in a row died. That
    delivery is then acknowledged without running, its run recorded ``failed`` with a reason
    an operator can act on, and an ERROR logged. Best effort: with Redis unreachable the
    task runs (its broker is Redis too)."""
    task_id = task.request.id
    if not task_id:  # called directly (tests, CLI), not delivered by a broker
        yield True
        return
    rt = runtime()
    limit = rt.settings.celery.max_deliveries
    key = _deaths_key(rt, task)
    try:
        pipe = rt.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, rt.settings.celery.visibility_timeout * (limit + 2))
        count = int(pipe.execute()[0])
    except Exception:
        log.warning("could not count deliveries of task %s; running it", task_id, exc_info=True)
        count = 0
    try:
        if count <= limit:
            yield True
        else:
            _drop(rt, task_id, tenant, kind, mode, limit)
            yield False
    finally:
        with contextlib.suppress(Exception):  # this process survived the work: not a death
            rt.redis.delete(key)


def _drop(rt: Runtime, task_id: str, tenant: str, kind: str, mode: str, limit: int) -> None:
    reason = (
        f"dropped after {limit} deliveries: the worker running this {kind} of tenant {tenant!r} "
        f"died each time (killed for memory, crashed, or kill -9) before it finished. Look at the "
        f"worker's log and the host's kernel log (OOM killer) for task {task_id}; the next "
        f"scheduled reconcile tries again, or run `erpsync apply --yes --tenant {tenant}` to see it fail"
    )
    log.error("task %s (%s of %s): %s", task_id, kind, tenant, reason)
    try:
        run_id = rt.store.start_run(tenant, kind, mode)
        rt.store.finish_run(run_id, status="failed", counts={}, requests={}, error=reason)
    except Exception:
        log.exception("could not record the dropped %s of %s", kind, tenant)


DROPPED = "dropped: its worker died on every delivery (see erpsync status)"


def fail_stale_runs(rt: Runtime, tenant: str | None = None) -> int:
    """Runs of worker tasks still ``running`` after the hard time limit: their worker died."""
    c = rt.settings.celery
    cutoff = utcnow() - dt.timedelta(seconds=c.task_time_limit + 60)
    reason = (
        "its worker stopped (killed, crashed or restarted) before the run finished; what it did "
        "is kept, the next reconcile completes the rest"
    )
    n = rt.store.fail_stale_runs(cutoff, reason, kinds=STALE_RUN_KINDS, tenant=tenant)
    if n:
        log.warning("marked %d run(s) whose worker died as failed%s", n, f" for {tenant}" if tenant else "")
    return n


# --- intake ----------------------------------------------------------------------------


def submit_keys(tenant: str, entity: str, keys: Sequence[str], *, rt: Runtime | None = None) -> Admission:
    """Throttle and enqueue a change event; returns the tasks that cover its keys."""
    rt = rt or runtime()
    admission = rt.throttle.admit(tenant, entity, [str(k) for k in keys])
    metrics.event_keys(tenant, entity, len(set(keys)), sum(len(g) for g, _ in admission.send.values()))
    for task_id, (group, delay) in admission.send.items():
        try:
            sync_keys.apply_async(
                (tenant, entity, group),
                task_id=task_id,
                countdown=delay or None,
                headers=metrics.event_headers(),  # its admission time: event → write latency
            )
        except Exception:
            rt.throttle.release(tenant, entity, group, task_id)  # do not absorb events nobody will sync
            raise
    return admission


def _follow_up(rt: Runtime, tenant: str, entity: str, keys: Sequence[str], task_id: str) -> None:
    follow = rt.throttle.finish(tenant, entity, keys, task_id)
    if follow is None:
        return
    try:
        sync_keys.apply_async(
            (tenant, entity, follow.keys), task_id=follow.task_id, countdown=follow.delay or None
        )
    except Exception:
        rt.throttle.release(tenant, entity, follow.keys, follow.task_id)
        log.exception(
            "could not enqueue the follow-up sync of %d key(s) of %s/%s", len(follow.keys), tenant, entity
        )


# --- tasks -----------------------------------------------------------------------------


# ignore_result: change events are many and small; their outcome is in the state store's
# runs (``erpsync status``) and, through task events, in Flower. Storing a result (and a
# STARTED state) per event would cost two Redis writes per event and a key kept for a day.
@app.task(bind=True, name="erpsync.sync_keys", max_retries=MAX_RETRIES, ignore_result=True)
def sync_keys(self: Task, tenant: str, entity: str, keys: list[str]) -> dict[str, Any]:
    """Sync a few ERP rows now (change events); a burst for one key folds into one follow-up."""
    rt = runtime()
    task_id = self.request.id or ""
    keys = [str(k) for k in keys]
    with survivable(self, tenant, "sync_keys", "fast") as allowed:
        if not allowed:
            rt.throttle.release(tenant, entity, keys, task_id)  # later events for these keys are admitted
            return {"tenant": tenant, "status": "failed", "reason": DROPPED}
        rt.throttle.begin(tenant, entity, keys, task_id)
        final = True
        try:
            summary = rt.engine.sync_keys(tenant, entity, keys).to_dict()
            metrics.event_written(tenant, entity, self.request)
            return summary
        except Exception as exc:
            if is_retryable(exc) and self.request.retries < MAX_RETRIES:
                final = False  # the retry keeps the keys: events meanwhile fold into it or its follow-up
                raise self.retry(exc=exc, countdown=retry_delay(self.request.retries)) from exc
            raise
        finally:
            if final:
                _follow_up(rt, tenant, entity, keys, task_id)


@app.task(bind=True, name="erpsync.reconcile", max_retries=None)
def reconcile(
    self: Task, tenant: str, mode: str = "full", requested_at: int | None = None, busy: int = 0
) -> dict[str, Any]:
    """One reconcile of ``tenant`` under its lease; triggers that a later run covers are dropped."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    rt = runtime()
    requested = requested_at if requested_at is not None else rt.ledger.now_ms()
    state = {"mode": mode, "requested_at": requested, "busy": busy}
    if rt.ledger.covered(tenant, mode, requested):
        return {"tenant": tenant, "status": "coalesced"}
    lease = TenantLease(rt.store, tenant, ttl=rt.lease_seconds)
    if not lease.acquire():
        if busy >= busy_limit(rt.settings.celery.task_time_limit, rt.lease_seconds):
            log.warning("reconcile %s: lease still held after %d polls, giving up", tenant, busy)
            return {"tenant": tenant, "status": "busy"}
        raise self.retry(
            args=(tenant,),
            kwargs={**state, "busy": busy + 1},
            max_retries=None,
            countdown=busy_delay(busy, rt.lease_seconds),
        )
    try:
        if rt.ledger.covered(tenant, mode, requested):  # a run finished while we waited
            return {"tenant": tenant, "status": "coalesced"}
        try:
            fail_stale_runs(rt, tenant)
        except Exception:  # bookkeeping only: never stops the reconcile
            log.warning("could not check for stale runs of %s", tenant, exc_info=True)
        with survivable(self, tenant, "reconcile", mode) as allowed:
            if not allowed:
                return {"tenant": tenant, "status": "failed", "reason": DROPPED}
            started = rt.ledger.now_ms()
            summary = rt.engine.reconcile(tenant, mode=mode, fence=lease.fence)
            if summary.status == "ok":
                rt.ledger.completed(tenant, mode, started)
            return summary.to_dict()
    except Exception as exc:
        used = self.request.retries - busy
        if is_retryable(exc) and used < MAX_RETRIES:
            raise self.retry(
                exc=exc, args=(tenant,), kwargs=state, max_retries=None, countdown=retry_delay(used)
            ) from exc
        raise
    finally:
        lease.release()


@app.task(bind=True, name="erpsync.resolve_intents", max_retries=MAX_RETRIES)
def resolve_intents(self: Task, tenant: str) -> dict[str, Any]:
    """Resolve pending/unknown creates by lookup; skipped while a reconcile (which does it too) runs."""
    rt = runtime()
    lease = TenantLease(rt.store, tenant, ttl=rt.lease_seconds)
    if not lease.acquire():
        return {"tenant": tenant, "status": "busy"}
    try:
        with survivable(self, tenant, "resolve_intents") as allowed:
            if not allowed:
                return {"tenant": tenant, "status": "failed", "reason": DROPPED}
            resolved = rt.engine.resolve_intents(tenant, fence=lease.fence)
            return {"tenant": tenant, "status": "ok", "resolved": resolved}
    except Exception as exc:
        if is_retryable(exc) and self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=retry_delay(self.request.retries)) from exc
        raise
    finally:
        lease.release()


# --- SQL watermark polling ---------------------------------------------------------------


def _claim_key(rt: Runtime, tenant: str, entity: str) -> str:
    return f"{rt.namespace}:watermark-claim:{tenant}:{entity}"


@app.task(name="erpsync.poll_watermarks")
def poll_watermarks(tenant: str) -> dict[str, int]:
    """Emit ``sync_keys`` for SQL rows updated past each entity's watermark.

    The watermark advances (``advance_watermark``, linked to the sync) only after that sync
    succeeded; a claim in Redis keeps the next poll from emitting the same rows again while
    it runs. The first poll of an entity only sets the watermark: the existing rows are
    the full reconcile's job.
    """
    rt = runtime()
    emitted: dict[str, int] = {}
    for entity in rt.engine.source_entities(tenant):
        claim = _claim_key(rt, tenant, entity)
        if rt.redis.exists(claim):
            continue
        since = parse_stamp(rt.store.get_cursor(tenant, "erp", watermark_stream(entity)))
        keys, newest = rt.engine.erp_changes_since(tenant, entity, since)
        if since is None:
            if newest is not None:
                rt.store.set_cursor(tenant, "erp", watermark_stream(entity), newest.isoformat())
            continue
        if not keys or newest is None:
            continue
        value = newest.isoformat()
        if not rt.redis.set(claim, value, nx=True, ex=rt.settings.celery.visibility_timeout):
            continue
        try:
            sync_keys.apply_async(
                (tenant, entity, sorted(set(keys))),
                link=advance_watermark.si(tenant, entity, value),
                link_error=clear_watermark_claim.si(tenant, entity),
            )
        except Exception:
            rt.redis.delete(claim)
            raise
        emitted[entity] = len(set(keys))
    return emitted


@app.task(name="erpsync.advance_watermark")
def advance_watermark(tenant: str, entity: str, value: str) -> str | None:
    """Move the watermark forward (never back) once the sync it covers has committed."""
    rt = runtime()
    stream = watermark_stream(entity)
    current = parse_stamp(rt.store.get_cursor(tenant, "erp", stream))
    new = parse_stamp(value)
    if new is not None and (current is None or new > current):
        rt.store.set_cursor(tenant, "erp", stream, value)
    rt.redis.delete(_claim_key(rt, tenant, entity))
    return rt.store.get_cursor(tenant, "erp", stream)


@app.task(name="erpsync.clear_watermark_claim")
def clear_watermark_claim(tenant: str, entity: str) -> None:
    """The sync failed for good: let the next poll emit the same rows again."""
    runtime().redis.delete(_claim_key(runtime(), tenant, entity))


# --- inbound (webhook inbox, pulls) --------------------------------------------------------

RELAY_AFTER_SECONDS = 60.0


def _with_sink(tenant: str, work: Callable[[Any, Any], Any]) -> Any:
    """Run ``work(tenant_settings, sink)`` with the tenant's ERP sink, closed afterwards."""
    from sync.engine.runtime import build_runtime
    from sync.sinks import open_sink

    rt = runtime()
    _, tenant_settings = rt.settings.tenant(tenant)
    clients = build_runtime(rt.settings, tenant, store=rt.store).new_client
    sink = open_sink(tenant_settings, tenant_id=tenant, store=rt.store, clients=clients)
    try:
        return work(tenant_settings, sink)
    finally:
        sink.close()


def _retrying(task: Task, work: Callable[[], Any]) -> Any:
    try:
        return work()
    except Exception as exc:
        if is_retryable(exc) and task.request.retries < MAX_RETRIES:
            raise task.retry(exc=exc, countdown=retry_delay(task.request.retries)) from exc
        raise


@app.task(bind=True, name="erpsync.apply_inbound", max_retries=MAX_RETRIES)
def apply_inbound(self: Task, tenant: str, event_ids: list[int]) -> Any:
    """Apply stored webhook events to the ERP sink (idempotent: records upsert by remote id)."""
    from sync.engine.inbound import process_inbox

    with survivable(self, tenant, "inbound") as allowed:
        if not allowed:
            return {"tenant": tenant, "status": "failed", "reason": DROPPED}
        return _retrying(
            self,
            lambda: _jsonable(
                _with_sink(
                    tenant,
                    lambda conf, sink: process_inbox(runtime().store, tenant, conf, sink, list(event_ids)),
                )
            ),
        )


@app.task(bind=True, name="erpsync.pull_inbound", max_retries=MAX_RETRIES)
def pull_inbound(self: Task, tenant: str) -> Any:
    """Beat: pull platform transactions, shifts, receipts, Z-reports and stock into the ERP sink."""
    from sync.engine.pull import pull
    from sync.engine.runtime import build_runtime

    with survivable(self, tenant, "pull") as allowed:
        if not allowed:
            return {"tenant": tenant, "status": "failed", "reason": DROPPED}
        return _retrying(
            self,
            lambda: _jsonable(
                _with_sink(
                    tenant,
                    lambda conf, sink: pull(
                        runtime().store,
                        tenant,
                        conf,
                        sink,
                        clients=build_runtime(runtime().settings, tenant, store=runtime().store).new_client,
                    ),
                )
            ),
        )


@app.task(bind=True, name="erpsync.relay_inbox", max_retries=MAX_RETRIES)
def relay_inbox(self: Task, older_than: float = RELAY_AFTER_SECONDS) -> dict[str, int]:
    """Beat: re-enqueue inbox events still pending after ``older_than`` s (a lost enqueue, a wait)."""
    from sync.engine.inbound import relay

    def work() -> dict[str, int]:
        out: dict[str, int] = {}
        for tenant, ids in relay(runtime().store, older_than):
            enqueue_inbound(tenant, ids)
            out[tenant] = len(ids)
        return out

    return _retrying(self, work)  # type: ignore[no-any-return]


@app.task(name="erpsync.maintenance")
def maintenance() -> dict[str, int]:
    """Beat: mark runs of dead workers failed, then purge history past its retention."""
    rt = runtime()
    r = rt.settings.retention
    out = {"stale_runs": fail_stale_runs(rt)}
    out.update(
        rt.store.purge_history(
            utcnow(),
            events_days=r.events_days,
            inbound_records_days=r.inbound_records_days,
            run_items_days=r.run_items_days,
            runs_days=r.runs_days,
            keep_runs=r.keep_runs,
        )
    )
    if any(out.values()):
        log.info("maintenance: %s", ", ".join(f"{k} {v}" for k, v in out.items() if v))
    return out


def enqueue_inbound(tenant: str, event_ids: Iterable[int]) -> str:
    """Apply stored inbox events soon (the relay's path: Celery's usual publish retries)."""
    return str(apply_inbound.apply_async((tenant, list(event_ids))).id)


PUBLISH_TIMEOUT = 1.0  # seconds per socket connect/read on the webhook's hot path


def enqueue_inbound_now(tenant: str, event_ids: Iterable[int]) -> str:
    """``on_stored`` callback of the webhook receiver: one bounded attempt to enqueue.

    The event is already committed to the inbox, so a failed enqueue costs only latency
    (the relay re-enqueues it); the sender's timeout (10 s for SmartEPI) does not wait for
    Celery's publish retries. Hence: no publish retry, connection retries off, socket
    timeouts of ``PUBLISH_TIMEOUT``, and no result-backend subscription (``ignore_result``;
    with Redis down, that subscription alone retried for ~19 s before failing)."""
    options = {
        "max_retries": 0,
        "socket_connect_timeout": PUBLISH_TIMEOUT,
        "socket_timeout": PUBLISH_TIMEOUT,
        "retry_on_timeout": False,
    }
    with app.connection_for_write(transport_options=options) as conn:
        result = apply_inbound.apply_async(
            (tenant, list(event_ids)), retry=False, ignore_result=True, connection=conn
        )
    return str(result.id)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return repr(value)
