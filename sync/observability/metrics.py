"""Prometheus metrics of erpsync (issue #17 item 1): what to watch, and how it gets out.

Instrumented code calls one plain function or method per event (``run_finished``,
``event_keys``, ``webhook_answered``, or a client's ``ClientMetrics``), so a hook is one line.
Every family is prefixed ``erpsync_`` and labelled only with bounded values: tenant (from the
configuration, never from a URL: an unknown tenant is ``"unknown"``), platform, entity, a route
*template*, a status class, small enums. Never a record key, a remote id or a request id.

Cost: the request loop's children (one set per client and per ``(method, route, outcome)``)
are looked up in a dict, never rebuilt per call; ``ERPSYNC_METRICS=off`` turns every hook into
a no-op (``bench/service.py --overhead`` measures on against off).

Two sources of samples:

- **events** counted by the process that saw them (requests, runs, webhooks, ...);
- **state** read from the state store at scrape time by ``StateCollector`` (quarantine by
  rule, open intents, inbox, pull lag, the last successful reconcile), cached for
  ``STATE_TTL`` seconds, so nothing is counted on write and a restart loses nothing.

Where they are served:

- ``erpsync serve``: ``GET /metrics`` (``make_router``).
- a Celery worker: prometheus-client's *multiprocess mode*, one endpoint per worker on
  ``$ERPSYNC_METRICS_PORT`` (``serve_worker``, started by the worker's main process before
  the pool forks). Chosen over a port per pool process because prefork children come and go
  (``max_tasks_per_child``, a killed child is replaced) and their number changes with
  ``--concurrency``: one stable target per worker is what a Prometheus scrape config can
  name, and counters of a replaced child are kept (its file stays) instead of resetting.
  The samples go through per-process files in ``$PROMETHEUS_MULTIPROC_DIR`` (a fresh
  temporary folder when unset, emptied at start).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

log = logging.getLogger("erpsync.metrics")

ENABLED_ENV = "ERPSYNC_METRICS"
PORT_ENV = "ERPSYNC_METRICS_PORT"
ADDR_ENV = "ERPSYNC_METRICS_ADDR"
TOKEN_ENV = "ERPSYNC_METRICS_TOKEN"  # set: serve's /metrics asks for "Authorization: Bearer <token>"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STATE_TTL = 10.0  # seconds a scrape reuses the state store's answers
SENT_AT_HEADER = "erpsync_event_at"  # Celery message header: when the change event was admitted

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)
RUN_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
EVENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

RUN_KINDS = {"sync_keys": "event", "pull": "pull", "apply": "apply", "resolve_intents": "resolve"}


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "on").strip().lower() not in ("0", "off", "false", "no")


_on = enabled()


def set_enabled(on: bool) -> None:
    """Turn the hooks on or off in this process (tests; ``ERPSYNC_METRICS`` sets the default)."""
    global _on
    _on = on


# --- the families (created on first use, after multiprocess mode was chosen) ---------------------


class _Families:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        tp = ("tenant", "platform")
        self.requests = Counter(
            "erpsync_http_requests",
            "Platform API attempts by method, route template and status class (or transport failure).",
            [*tp, "method", "route", "status_class"],
        )
        self.rate_limited = Counter("erpsync_http_rate_limited", "Attempts answered 429.", tp)
        self.retries = Counter(
            "erpsync_http_retries", "Attempts retried by the request loop, by reason.", [*tp, "reason"]
        )
        self.latency = Histogram(
            "erpsync_http_request_duration_seconds",
            "Time of one attempt on the wire (governor wait excluded).",
            [*tp, "method"],
            buckets=REQUEST_BUCKETS,
        )
        self.ambiguous = Counter(
            "erpsync_ambiguous_writes",
            "Writes whose outcome is unknown (5xx, failure after sending, unreadable answer).",
            [*tp, "method"],
        )
        self.resolutions = Counter(
            "erpsync_ambiguous_resolutions",
            "How creates of unknown outcome were settled by lookup: found, absent, held, several.",
            [*tp, "entity", "resolution"],
        )
        self.wait = Histogram(
            "erpsync_governor_wait_seconds",
            "Time an attempt waited for the rate governor (token and in-flight slot).",
            tp,
            buckets=WAIT_BUCKETS,
        )
        self.in_flight = Gauge(
            "erpsync_governor_in_flight",
            "Attempts holding a governor slot now.",
            tp,
            multiprocess_mode="livesum",
        )
        self.quota = Gauge(
            "erpsync_governor_quota",
            "The account's quota: rate (requests/s), burst and concurrency (in-flight cap).",
            [*tp, "limit"],
            multiprocess_mode="max",
        )
        self.records = Counter(
            "erpsync_records",
            "Records handled by runs, by action (create, update, adopt, ...) and outcome "
            "(ok, failed, quarantined, deferred, held, skipped, conflict).",
            [*tp, "entity", "action", "outcome"],
        )
        self.runs = Counter(
            "erpsync_runs", "Finished runs by kind and outcome.", ["tenant", "kind", "outcome"]
        )
        self.run_seconds = Histogram(
            "erpsync_run_duration_seconds", "Run duration by kind.", ["tenant", "kind"], buckets=RUN_BUCKETS
        )
        self.run_last = Gauge(
            "erpsync_run_last_finished_timestamp_seconds",
            "When this process last finished a run of that kind and outcome (Unix time).",
            ["tenant", "kind", "outcome"],
            multiprocess_mode="max",
        )
        self.event_latency = Histogram(
            "erpsync_event_write_latency_seconds",
            "ERP change event admitted → its sync run finished (the platform writes are done).",
            ["tenant", "entity"],
            buckets=EVENT_BUCKETS,
        )
        self.event_keys = Counter(
            "erpsync_event_keys",
            "Keys of ERP change events: queued (a sync was enqueued) or coalesced (already covered).",
            ["tenant", "entity", "result"],
        )
        self.webhooks = Counter(
            "erpsync_webhooks",
            "Webhook deliveries: accepted (stored, duplicate) or rejected (signature, body, too_large).",
            [*tp, "result", "reason"],
        )
        self.webhook_streak = Gauge(
            "erpsync_webhook_verification_failures_in_a_row",
            "Consecutive webhook signature failures since the last verified delivery.",
            tp,
            multiprocess_mode="livemax",
        )


_lock = threading.Lock()
_families: _Families | None = None


def families() -> _Families:
    global _families
    if _families is None:
        with _lock:
            if _families is None:
                _families = _Families()
    return _families


# --- the request loop and the governor (hot path) --------------------------------------------


def status_class(outcome: int | str) -> str:
    """``2xx``..``5xx`` for a status, the failure name (connect, timeout, sent) otherwise."""
    if isinstance(outcome, int):
        return f"{outcome // 100}xx"
    return outcome


def _retry_reason(outcome: int | str) -> str:
    if outcome == 429:
        return "429"
    return status_class(outcome)


class ClientMetrics:
    """The metrics of one platform client (one tenant's account): children cached per call shape."""

    __slots__ = ("_f", "_in_flight", "_platform", "_requests", "_tenant", "_wait")

    def __init__(self, platform: str, tenant: str) -> None:
        self._platform = platform
        self._tenant = tenant
        self._f = families()
        self._wait = self._f.wait.labels(tenant, platform)
        self._in_flight = self._f.in_flight.labels(tenant, platform)
        self._requests: dict[tuple[str, str, int | str], tuple[Any, Any, Any]] = {}

    def quota(self, limits: Any) -> None:
        """Publish the governor's limits (``RateLimits``; anything else is ignored)."""
        for name in ("rate", "burst", "concurrency"):
            value = getattr(limits, name, None)
            if isinstance(value, int | float):
                self._f.quota.labels(self._tenant, self._platform, name).set(value)

    def slot_taken(self, asked_at: float) -> float:
        """An attempt got its governor slot: observe the wait; returns the send time."""
        now = time.perf_counter()
        self._wait.observe(now - asked_at)
        self._in_flight.inc()
        return now

    def slot_freed(self) -> None:
        self._in_flight.dec()

    def request(self, method: str, route: str, outcome: int | str, seconds: float) -> None:
        """One attempt ended with ``outcome`` (a status, or connect/timeout/sent)."""
        key = (method, route, outcome)
        found = self._requests.get(key)
        if found is None:
            found = self._children(key)
        found[0].inc()
        found[1].observe(seconds)
        if found[2] is not None:
            found[2].inc()

    def _children(self, key: tuple[str, str, int | str]) -> tuple[Any, Any, Any]:
        method, route, outcome = key
        t, p = self._tenant, self._platform
        found = (
            self._f.requests.labels(t, p, method, route, status_class(outcome)),
            self._f.latency.labels(t, p, method),
            self._f.rate_limited.labels(t, p) if outcome == 429 else None,
        )
        self._requests[key] = found
        return found

    def retry(self, outcome: int | str) -> None:
        self._f.retries.labels(self._tenant, self._platform, _retry_reason(outcome)).inc()

    def ambiguous(self, method: str) -> None:
        self._f.ambiguous.labels(self._tenant, self._platform, method).inc()


class _NoClientMetrics:
    __slots__ = ()

    def quota(self, limits: Any) -> None:
        pass

    def slot_taken(self, asked_at: float) -> float:
        return time.perf_counter()

    def slot_freed(self) -> None:
        pass

    def request(self, method: str, route: str, outcome: int | str, seconds: float) -> None:
        pass

    def retry(self, outcome: int | str) -> None:
        pass

    def ambiguous(self, method: str) -> None:
        pass


_NO_CLIENT = _NoClientMetrics()


def client(platform: str, tenant: str, limits: Any = None) -> ClientMetrics | _NoClientMetrics:
    """The metrics of a platform client (``RequestLoop``); a no-op when metrics are off."""
    if not _on:
        return _NO_CLIENT
    found = ClientMetrics(platform, tenant)
    if limits is not None:
        found.quota(limits)
    return found


# --- runs, events, webhooks -------------------------------------------------------------------


def run_kind(kind: str, mode: str) -> str:
    """The ``kind`` label: event (change events), fast, full (reconciles), pull, apply (CLI)."""
    if kind == "reconcile":
        return mode if mode in ("fast", "full") else "full"
    return RUN_KINDS.get(kind, "other")


def run_finished(
    tenant: str,
    kind: str,
    mode: str,
    status: str,
    seconds: float,
    counts: Mapping[Any, int] | None = None,
) -> None:
    """A run ended (``ok``, ``partial`` or ``failed``); ``counts`` by (platform, entity, action, outcome)."""
    if not _on:
        return
    f = families()
    label = run_kind(kind, mode)
    f.runs.labels(tenant, label, status).inc()
    f.run_seconds.labels(tenant, label).observe(seconds)
    f.run_last.labels(tenant, label, status).set(time.time())
    for key, n in (counts or {}).items():
        if len(key) == 4 and n:
            platform, entity, action, outcome = key
            f.records.labels(tenant, platform, entity, action, outcome).inc(n)


def pull_finished(tenant: str, summary: Any, seconds: float) -> None:
    """A pull ended: its run outcome, and the records it brought per stream."""
    if not _on:
        return
    status = "partial" if getattr(summary, "errors", None) else "ok"
    counts: dict[tuple[str, ...], int] = {}
    for s in getattr(summary, "streams", ()):
        for outcome, n in (("ok", s.written), ("failed", s.failed), ("deferred", s.parked)):
            counts[(s.platform, s.stream, "pull", outcome)] = (
                counts.get((s.platform, s.stream, "pull", outcome), 0) + n
            )
    run_finished(tenant, "pull", "full", status, seconds, counts)


def ambiguous_resolved(tenant: str, platform: str, entity: str, got: Any) -> None:
    """A create of unknown outcome was looked up: ``got`` is the lookup's answer."""
    if not _on:
        return
    if isinstance(got, str):
        resolution = {"absent": "absent", "unsearchable": "held"}.get(got, "other")
    else:
        resolution = {"RawRemote": "found", "Several": "several"}.get(type(got).__name__, "other")
    families().resolutions.labels(tenant, platform, entity, resolution).inc()


def event_keys(tenant: str, entity: str, accepted: int, queued: int) -> None:
    """A change event named ``accepted`` keys; ``queued`` of them started a sync, the rest coalesced."""
    if not _on:
        return
    f = families()
    if queued:
        f.event_keys.labels(tenant, entity, "queued").inc(queued)
    if accepted > queued:
        f.event_keys.labels(tenant, entity, "coalesced").inc(accepted - queued)


def event_headers() -> dict[str, float]:
    """Celery message headers of a sync enqueued for a change event (its admission time)."""
    return {SENT_AT_HEADER: time.time()} if _on else {}


def event_written(tenant: str, entity: str, request: Any) -> None:
    """A change event's sync finished: observe admission → now (the task's ``request``)."""
    if not _on:
        return
    get = getattr(request, "get", None)
    sent = get(SENT_AT_HEADER) if get is not None else None
    if isinstance(sent, int | float) and sent > 0:
        families().event_latency.labels(tenant, entity).observe(max(0.0, time.time() - sent))


_streaks: dict[tuple[str, str], int] = {}


def webhook_answered(
    tenant: str, known_tenants: Iterable[str], platform: str, status: int, verified: bool, body: bytes = b""
) -> None:
    """A webhook was answered ``status``; ``verified`` when its signature checked out."""
    if not _on:
        return
    label = tenant if tenant in known_tenants else "unknown"  # a URL never makes a new series
    if status < 300:
        result, reason = "accepted", ("duplicate" if b'"duplicate"' in body else "stored")
    elif status == 413:
        result, reason = "rejected", "too_large"
    elif not verified:
        result, reason = "rejected", "signature"
    else:
        result, reason = "rejected", "body"
    f = families()
    f.webhooks.labels(label, platform, result, reason).inc()
    if reason == "signature" or verified:
        key = (label, platform)
        streak = _streaks[key] = _streaks.get(key, 0) + 1 if reason == "signature" else 0
        f.webhook_streak.labels(label, platform).set(streak)


# --- the state store, read at scrape time ---------------------------------------------------------


class StateCollector:
    """Gauges read from the state store when scraped (cached ``ttl`` seconds).

    ``get_store`` returns a ``StateStore``; a failing read yields ``erpsync_state_up 0`` and the
    last good samples are not repeated (a stale gauge would hide the failure)."""

    def __init__(
        self, get_store: Callable[[], Any], *, ttl: float = STATE_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        self._get_store = get_store
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None

    def describe(self) -> list[Any]:
        return []  # no registration-time query of the store

    def collect(self) -> Iterator[Any]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._ttl:
                self._cached = (now, self._read())
            yield from self._cached[1]

    def _read(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("erpsync_state_up", "1 when the state store answered the last scrape.")
        try:
            out = self._families(self._get_store())
        except Exception as exc:
            log.warning("metrics: reading the state store failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *out]

    def _families(self, store: Any) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        rows = store.gauge_rows()  # sync.state.gauges: the queries live with the tables
        now = self._clock()
        quarantine = GaugeMetricFamily(
            "erpsync_quarantine_records",
            "Records held in quarantine, by rule.",
            labels=["tenant", "platform", "entity", "rule"],
        )
        intents = GaugeMetricFamily(
            "erpsync_intents_open",
            "Creates not settled yet: pending (in flight) or unknown (outcome unknown, to look up).",
            labels=["tenant", "platform", "state"],
        )
        inbox = GaugeMetricFamily(
            "erpsync_inbox_events",
            "Webhook inbox rows by status: pending, waiting (for a binding), failed, dead.",
            labels=["tenant", "platform", "status"],
        )
        oldest = GaugeMetricFamily(
            "erpsync_inbox_oldest_pending_age_seconds",
            "Age of the oldest pending inbox row (0 when none is pending).",
            labels=["tenant", "platform"],
        )
        lag = GaugeMetricFamily(
            "erpsync_pull_lag_seconds",
            "Now minus a pull stream's cursor (everything before the cursor is in the ERP sink).",
            labels=["tenant", "platform", "stream"],
        )
        last_ok = GaugeMetricFamily(
            "erpsync_last_successful_reconcile_timestamp_seconds",
            "When the tenant's last completed reconcile (ok or partial, as the stale_reconcile "
            "alert counts it) finished (Unix time).",
            labels=["tenant"],
        )
        for tenant, platform, entity, rule, n in rows.quarantine:
            quarantine.add_metric([tenant, platform, entity, rule], n)
        for tenant, platform, state, n in rows.intents:
            intents.add_metric([tenant, platform, state], n)
        for tenant, platform, status, n, first in rows.inbox:
            inbox.add_metric([tenant, platform, status], n)
            if status == "pending" and first is not None:
                oldest.add_metric([tenant, platform], max(0.0, now - _epoch(first)))
        for tenant, platform, stream, value in rows.cursors:
            stamp = _instant(value) if value is not None else None
            if stamp is not None:
                lag.add_metric([tenant, platform, stream], max(0.0, now - stamp))
        for tenant, finished in rows.last_ok_reconcile:
            if finished is not None:
                last_ok.add_metric([tenant], _epoch(finished))
        return [quarantine, intents, inbox, oldest, lag, last_ok]


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return float(value.timestamp())


def _instant(text: str) -> float | None:
    try:
        return _epoch(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (ValueError, TypeError, AttributeError):
        return None


# --- exposition ------------------------------------------------------------------------------------


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition(state: StateCollector | None = None) -> bytes:
    """This process's (or, in multiprocess mode, all processes') samples, plus the state gauges."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client.multiprocess is untyped
        out = generate_latest(registry)
    else:
        out = generate_latest(REGISTRY)
    if state is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(state)
        out += generate_latest(extra)
    return out


def make_router(get_store: Callable[[], Any] | None = None, *, token: str | None = None) -> Any:
    """``GET /metrics`` for the web app (state gauges from ``get_store``'s state store).

    With a ``token`` (default ``$ERPSYNC_METRICS_TOKEN``) a scrape must send it as a bearer
    token (Prometheus: ``authorization: {credentials_file: ...}``); else 401."""
    import hmac

    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST
    from starlette.concurrency import run_in_threadpool

    router = APIRouter()
    state = StateCollector(get_store) if get_store is not None else None
    expected = (token if token is not None else os.environ.get(TOKEN_ENV, "")).encode()

    async def metrics(request: Request) -> Response:
        if expected:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                return JSONResponse(
                    {"error": f"send the metrics token (${TOKEN_ENV}) as a bearer token"}, 401
                )
        body = await run_in_threadpool(exposition, state)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    metrics.__annotations__.update({"request": Request, "return": Response})  # not postponed strings
    router.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return router


def use_multiprocess_dir(path: str | None = None) -> str:
    """Switch this process (and the processes it forks) to multiprocess mode in ``path``
    (``$PROMETHEUS_MULTIPROC_DIR``, else a new temporary folder), emptied first.

    Must run before any metric is created (``serve_worker`` runs at worker start)."""
    from prometheus_client import values

    if _families is not None:
        raise RuntimeError("metrics were created before multiprocess mode was chosen")
    folder = path or os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="erpsync-metrics-")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
    os.environ[MULTIPROC_ENV] = folder
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]  # prometheus_client.multiprocess is untyped
    return folder


_server: Any = None


def port_setting() -> str:
    return os.environ.get(PORT_ENV, "").strip()


def serve_worker(get_store: Callable[[], Any] | None = None, *, port: int | None = None) -> int | None:
    """In a worker's main process, before its pool forks: multiprocess mode, and ``/metrics`` on
    ``port`` (``$ERPSYNC_METRICS_PORT``; none: nothing is served). Returns the bound port."""
    global _server
    if port is None:
        raw = os.environ.get(PORT_ENV, "").strip()
        if not raw or not _on:
            return None
        port = int(raw)
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import CONTENT_TYPE_LATEST

    created = tempfile.mkdtemp(prefix="erpsync-metrics-") if not os.environ.get(MULTIPROC_ENV) else None
    folder = use_multiprocess_dir(created)
    state = StateCollector(get_store) if get_store is not None else None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            try:
                body = exposition(state)
            except Exception:
                log.exception("metrics: exposition failed")
                self.send_error(500)
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((os.environ.get(ADDR_ENV, "0.0.0.0"), port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="erpsync-metrics", daemon=True).start()
    _server = (server, created)
    log.info("metrics: serving /metrics on port %d (multiprocess files in %s)", server.server_port, folder)
    return int(server.server_port)


def stop_worker_server() -> None:
    """The worker is shutting down: stop serving and remove a folder this process created."""
    global _server
    found, _server = _server, None
    if found is None:
        return
    server, created = found
    server.shutdown()
    server.server_close()
    if created:
        shutil.rmtree(created, ignore_errors=True)


def process_exited(pid: int | None = None) -> None:
    """A pool process exits: drop its live gauges (in-flight, streaks) from the aggregate."""
    if not multiprocess():
        return
    from prometheus_client import multiprocess as mp

    with contextlib.suppress(OSError):
        mp.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]  # prometheus_client.multiprocess is untyped
