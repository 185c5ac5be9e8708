"""Platform-agnostic fault injection and request statistics for the sandboxes.

Both sandboxes (SmartEPI, SmartKasa) wrap their ASGI app with one ``FaultInjector``.
It is a pure ASGI middleware (``BaseHTTPMiddleware`` costs too much per request for
the throughput benchmarks) that, in this order, per request:

1. sleeps ``latency_ms`` plus a seeded jitter in ``[0, jitter_ms]``;
2. enforces the per-account token bucket (``quota_rps``/``quota_burst``) -> 429;
3. injects random 429s (``p_429``), 5xx *before* the handler (``p_5xx``, nothing
   committed) and drops *after* the handler committed (``p_drop_after_commit``).

Why decisions are hashes, not an RNG stream: concurrent clients interleave requests
differently on every run; a shared ``random.Random`` would then fault different
requests each time. Each decision is derived from
``hash(seed, fault name, method, path+query, body, occurrence)`` where *occurrence*
counts identical earlier requests, so the n-th replay of the same request meets the
same fate on every run, whatever else is in flight.

Assumptions (the brief is silent):
- ``account_of`` receives the ASGI ``scope`` (a dict with ``headers``, ``path``,
  ``client``…) and returns the quota account, or ``None`` for requests that have no
  account (e.g. a missing key): those are never quota-limited, since a real gateway
  rejects them before metering.
- The quota applies to every method and path (it models the platform's gateway); the
  ``path_regex`` restriction applies to the random faults only (429/5xx/drop).
- Paths under ``exempt_prefixes`` (default ``/_admin``) get no faults and no stats.
- A dropped response is counted under the status key ``"dropped"``; the write it
  carried was committed. 429s are counted under ``"429"`` (quota and random alike),
  and per account under ``rate_limited``.
- ``should_expire_token`` counts occurrences per account; the platform decides what
  expiry means.
- Replacing the config (``PUT /_admin/faults``) resets token buckets and occurrence
  counters so a run with a new config is reproducible from its start.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import fastapi
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.routing import Match

from sync.errors import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
CannedResponse = tuple[int, list[tuple[bytes, bytes]], bytes]

PLATFORMS = ("smartepi", "smartkasa")


class FaultConfig(BaseModel):
    """What to inject; the defaults inject nothing."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    latency_ms: float = Field(0.0, ge=0)
    jitter_ms: float = Field(0.0, ge=0)
    quota_rps: float | None = Field(None, gt=0)
    quota_burst: int = Field(10, ge=1)
    p_429: float = Field(0.0, ge=0, le=1)
    retry_after: float | None = Field(None, ge=0)
    p_5xx: float = Field(0.0, ge=0, le=1)
    p_drop_after_commit: float = Field(0.0, ge=0, le=1)
    p_expire_token: float = Field(0.0, ge=0, le=1)
    write_methods: list[str] = ["POST", "PUT", "PATCH", "DELETE"]
    path_regex: str | None = None

    @field_validator("write_methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value


def decision(seed: int, name: str, *parts: str | bytes) -> float:
    """A reproducible number in [0, 1) from the seed, a fault name and the request parts."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{seed}\x00{name}".encode())
    for part in parts:
        h.update(b"\x00")
        h.update(part.encode() if isinstance(part, str) else part)
    return int.from_bytes(h.digest(), "big") / 2**64


class RequestStats:
    """Thread-safe request counters: per route and status, per second, per account."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._routes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            self._per_second: dict[int, int] = defaultdict(int)
            self._accounts: dict[str, dict[str, Any]] = {}
            self._total = 0

    def record(self, route: str, status: str, account: str | None, now: float | None = None) -> None:
        second = int(time.time() if now is None else now)
        with self._lock:
            self._routes[route][status] += 1
            self._per_second[second] += 1
            self._total += 1
            if account is not None:
                acc = self._accounts.get(account)
                if acc is None:
                    acc = self._accounts[account] = {"total": 0, "rate_limited": 0, "per_second": {}}
                acc["total"] += 1
                acc["per_second"][second] = acc["per_second"].get(second, 0) + 1
                if status == "429":
                    acc["rate_limited"] += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: ``routes``, ``per_second``, ``by_account``, ``total``."""
        with self._lock:
            return {
                "routes": {route: dict(counts) for route, counts in self._routes.items()},
                "per_second": {str(sec): n for sec, n in sorted(self._per_second.items())},
                "by_account": {
                    name: {
                        "total": acc["total"],
                        "rate_limited": acc["rate_limited"],
                        "per_second": {str(s): n for s, n in sorted(acc["per_second"].items())},
                    }
                    for name, acc in self._accounts.items()
                },
                "total": self._total,
            }


class _TokenBuckets:
    """One token bucket per account; refilled lazily on each take."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, account: str, now: float) -> bool:
        with self._lock:
            tokens, last = self._state.get(account, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._state[account] = (tokens - 1.0, now)
                return True
            self._state[account] = (tokens, now)
            return False


class FaultInjector:
    """Wraps an ASGI app with seeded faults, a per-account quota and request statistics."""

    def __init__(
        self,
        platform: str,
        config: FaultConfig,
        *,
        account_of: Callable[[dict[str, Any]], str | None],
        rate_limited: Callable[[float | None], CannedResponse],
        server_error: Callable[[], CannedResponse],
        exempt_prefixes: Sequence[str] = ("/_admin",),
    ) -> None:
        self.platform = platform
        self.stats = RequestStats()
        self._account_of = account_of
        self._rate_limited = rate_limited
        self._server_error = server_error
        self._exempt = tuple(exempt_prefixes)
        self._lock = threading.Lock()
        self.config = config

    @property
    def config(self) -> FaultConfig:
        return self._config

    @config.setter
    def config(self, value: FaultConfig) -> None:
        """Replace the faults at run time; restarts buckets and occurrence counters."""
        with self._lock:
            self._config = value
            self._regex = re.compile(value.path_regex) if value.path_regex else None
            self._buckets = _TokenBuckets(value.quota_rps, value.quota_burst) if value.quota_rps else None
            self._occurrences: dict[tuple[str, str, bytes], int] = {}
            self._token_checks: dict[str, int] = {}

    # -- decisions ---------------------------------------------------------------

    def _occurrence(self, method: str, target: str, body: bytes) -> int:
        key = (method, target, hashlib.blake2b(body, digest_size=16).digest())
        with self._lock:
            n = self._occurrences.get(key, 0)
            self._occurrences[key] = n + 1
        return n

    def should_expire_token(self, account: str) -> bool:
        """Seeded per account and per check: the n-th check for an account is stable."""
        cfg = self._config
        if cfg.p_expire_token <= 0:
            return False
        with self._lock:
            n = self._token_checks.get(account, 0)
            self._token_checks[account] = n + 1
        return decision(cfg.seed, "expire_token", account, str(n)) < cfg.p_expire_token

    # -- middleware ----------------------------------------------------------------

    def wrap(self, app: ASGIApp) -> ASGIApp:
        routes = getattr(app, "routes", None) or []

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith(self._exempt):
                await app(scope, receive, send)
                return
            await self._handle(app, routes, scope, receive, send)

        return middleware

    async def _handle(
        self, app: ASGIApp, routes: Sequence[Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        cfg = self._config
        method: str = scope["method"]
        path: str = scope["path"]
        account = self._account_of(cast(dict[str, Any], scope))
        body, receive = await _buffer_body(receive)
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{path}?{query}" if query else path

        matches = self._regex is None or self._regex.search(path) is not None
        is_write = method in cfg.write_methods
        random_faults = matches and (
            cfg.p_429 > 0 or (is_write and (cfg.p_5xx > 0 or cfg.p_drop_after_commit > 0))
        )
        needs_hash = random_faults or cfg.jitter_ms > 0
        occ = str(self._occurrence(method, target, body)) if needs_hash else "0"

        def roll(name: str) -> float:
            return decision(cfg.seed, name, method, target, body, occ)

        delay = cfg.latency_ms + (cfg.jitter_ms * roll("jitter") if cfg.jitter_ms > 0 else 0.0)
        if delay > 0:
            await anyio.sleep(delay / 1000.0)

        buckets = self._buckets
        if buckets is not None and account is not None and not buckets.take(account, time.monotonic()):
            await self._canned(scope, routes, send, self._rate_limited(cfg.retry_after), account)
            return
        if random_faults:
            if cfg.p_429 > 0 and roll("429") < cfg.p_429:
                await self._canned(scope, routes, send, self._rate_limited(cfg.retry_after), account)
                return
            if is_write and cfg.p_5xx > 0 and roll("5xx") < cfg.p_5xx:
                await self._canned(scope, routes, send, self._server_error(), account)
                return
            if is_write and cfg.p_drop_after_commit > 0 and roll("drop") < cfg.p_drop_after_commit:
                await self._drop_after_commit(app, scope, receive, send, account)
                return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.stats.record(_route_key(scope), str(message["status"]), account)
            await send(message)

        await app(scope, receive, counting_send)

    async def _canned(
        self, scope: Scope, routes: Sequence[Any], send: Send, response: CannedResponse, account: str | None
    ) -> None:
        status, headers, body = response
        self.stats.record(_route_key(scope, routes), str(status), account)
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _drop_after_commit(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, account: str | None
    ) -> None:
        """Run the handler to completion, then send the head and half the body, and stop.

        Returning from an ASGI app with an incomplete body makes the server close the
        connection, so the client sees a protocol/read error, never a clean response.
        """
        start: Message | None = None
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await app(scope, receive, capture)
        self.stats.record(_route_key(scope), "dropped", account)
        if start is None:
            return
        body = b"".join(parts)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(max(len(body), 2)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})

    # -- admin ----------------------------------------------------------------------

    def admin_router(self, dependencies: Sequence[Any] = ()) -> fastapi.APIRouter:
        """``GET/PUT /_admin/faults`` and ``GET/DELETE /_admin/stats``."""
        router = fastapi.APIRouter(prefix="/_admin", dependencies=list(dependencies), tags=["admin"])

        @router.get("/faults")
        def get_faults() -> dict[str, Any]:
            return self.config.model_dump()

        @router.put("/faults")
        def put_faults(config: FaultConfig) -> dict[str, Any]:
            self.config = config
            return self.config.model_dump()

        @router.get("/stats")
        def get_stats() -> dict[str, Any]:
            return self.stats.snapshot()

        @router.delete("/stats")
        def reset_stats() -> dict[str, Any]:
            self.stats.reset()
            return self.stats.snapshot()

        return router


def _route_key(scope: Scope, routes: Sequence[Any] = ()) -> str:
    """``METHOD /route/{template}`` when a route matches, else the raw path.

    After routing, Starlette leaves the matched route in ``scope["route"]``; for
    answers given before the handler (429/5xx) the routes of the wrapped app (or of
    ``scope["app"]`` when installed inside a Starlette middleware stack) are matched here.
    """
    route = scope.get("route")
    if route is None:
        for candidate in routes or getattr(scope.get("app"), "routes", None) or ():
            matches = getattr(candidate, "matches", None)
            if matches is not None and matches(dict(scope))[0] is Match.FULL:
                route = candidate
                break
    template = getattr(route, "path", None) or scope["path"]
    return f"{scope['method']} {template}"


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole request body (needed for the decision hash) and replay it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # Disconnected before the body arrived: replay the disconnect to the app.
            return b"".join(chunks), _replay_once(message, receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replay_once({"type": "http.request", "body": body, "more_body": False}, receive)


def _replay_once(message: Message, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return message
        return await receive()

    return replay


def load_fault_file(path: str | Path) -> dict[str, FaultConfig]:
    """Read ``{"smartepi": {...}, "smartkasa": {...}}`` from a YAML or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read fault file: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping with keys {', '.join(PLATFORMS)}")
    result: dict[str, FaultConfig] = {}
    for key, value in raw.items():
        if key not in PLATFORMS:
            raise ConfigError(f"{path}: {key}: unknown platform (expected one of {', '.join(PLATFORMS)})")
        try:
            result[key] = FaultConfig.model_validate(value or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{key}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"{path}: {problems}") from None
    return result
