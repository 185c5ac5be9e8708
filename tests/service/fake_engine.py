"""A stand-in for ``sync.engine.api.Engine`` that keeps the ERP and the "sandbox" in Redis.

It is idempotent the way the real engine is (a record is written only when the sandbox
differs from the ERP, atomically), and it is instrumented: every write is logged, and
every reconcile records how many reconciles of its tenant run at that moment. Worker
processes load it through ``worker_app`` (``tasks.configure_runtime``), never by patching.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from sync.clients.governor import RateLimits, RedisGovernor

# KEYS: erp hash, sandbox hash, writes list, write times (ms). ARGV: key. Writes when the sandbox differs.
_WRITE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) == v then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], v)
redis.call('RPUSH', KEYS[3], ARGV[1])
local t = redis.call('TIME')
redis.call('HSET', KEYS[4], ARGV[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return 1
"""

# KEYS: active counter, max counter. Enter a reconcile and keep the maximum concurrency seen.
_ENTER = """
local n = redis.call('INCR', KEYS[1])
local m = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > m then redis.call('SET', KEYS[2], n) end
return n
"""


@dataclass
class Summary:
    status: str
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "counts": dict(self.counts)}


class FakeWorld:
    """The Redis keys of one test namespace (used by the engine and by the tests)."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.r = client
        self.ns = namespace

    def key(self, *parts: str) -> str:
        return ":".join([self.ns, "fake", *parts])

    def set_erp(self, tenant: str, entity: str, values: dict[str, str]) -> None:
        self.r.hset(self.key("erp", tenant, entity), mapping=values)
        now = int(time.time() * 1000)  # ms: survives the datetime round trip exactly
        self.r.zadd(self.key("updated", tenant, entity), {k: now for k in values})

    def sandbox(self, tenant: str, entity: str) -> dict[str, str]:
        raw = self.r.hgetall(self.key("sandbox", tenant, entity))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def writes(self, tenant: str, entity: str) -> list[str]:
        return [k.decode() for k in self.r.lrange(self.key("writes", tenant, entity), 0, -1)]

    def calls(self, tenant: str, what: str) -> int:
        return int(self.r.get(self.key("calls", tenant, what)) or 0)

    def max_active(self, tenant: str) -> int:
        return int(self.r.get(self.key("max", tenant)) or 0)

    def intervals(self, tenant: str) -> list[tuple[float, float]]:
        out = []
        for raw in self.r.lrange(self.key("runs", tenant), 0, -1):
            start, end = raw.decode().split(",")
            out.append((float(start), float(end)))
        return out

    def written_at(self, tenant: str, entity: str) -> dict[str, int]:
        raw = self.r.hgetall(self.key("written_at", tenant, entity))
        return {k.decode(): int(float(v)) for k, v in raw.items()}

    def set_quota(self, requests_per_second: float) -> None:
        """Every FakeEngine started afterwards shares this quota through the Redis governor."""
        self.r.set(self.key("quota"), requests_per_second)

    def set_delay(self, tenant: str, seconds: float) -> None:
        self.r.set(self.key("delay", tenant), seconds)

    def set_crash(self, tenant: str) -> None:
        """Every reconcile of ``tenant`` kills its own worker process (SIGKILL), like the OOM killer."""
        self.r.set(self.key("crash", tenant), 1)


class FakeEngine:
    ENTITY = "employees"

    def __init__(self, settings: Any, store: Any = None) -> None:
        self.world = FakeWorld(
            redis.Redis.from_url(settings.redis_url), os.environ.get("ERPSYNC_NAMESPACE", "erpsync")
        )
        r = self.world.r
        self._write = r.register_script(_WRITE)
        self._enter = r.register_script(_ENTER)
        rate = float(r.get(self.world.key("quota")) or 0)
        self._quota = (
            RedisGovernor(
                settings.redis_url, self.world.key("governor"), RateLimits(rate=rate, burst=1, concurrency=8)
            )
            if rate
            else None
        )

    def _sync(self, tenant: str, entity: str, key: str) -> int:
        """One "request" to the sandbox: governed by the shared quota when one is set."""
        w = self.world
        if self._quota is not None:
            asyncio.run(self._take_slot())
        keys = [w.key(part, tenant, entity) for part in ("erp", "sandbox", "writes", "written_at")]
        return int(self._write(keys=keys, args=[key]))

    async def _take_slot(self) -> None:
        assert self._quota is not None
        async with self._quota.slot():
            pass

    def _delay(self, tenant: str) -> float:
        return float(self.world.r.get(self.world.key("delay", tenant)) or 0)

    def sync_keys(
        self, tenant_id: str, entity: str, keys: list[str], *, fence: Callable[[], None] | None = None
    ) -> Summary:
        self.world.r.incr(self.world.key("calls", tenant_id, "sync_keys"))
        delay = self._delay(tenant_id)
        written = 0
        for key in keys:
            if delay:
                time.sleep(delay)  # the sandbox's latency per request
            written += self._sync(tenant_id, entity, key)
        return Summary("ok", {"written": written})

    def reconcile(
        self, tenant_id: str, *, mode: str = "full", fence: Callable[[], None] | None = None
    ) -> Summary:
        w = self.world
        w.r.incr(w.key("calls", tenant_id, "reconcile"))
        if w.r.get(w.key("crash", tenant_id)):
            os.kill(os.getpid(), signal.SIGKILL)
        self._enter(keys=[w.key("active", tenant_id), w.key("max", tenant_id)])
        start = time.time()
        written = 0
        try:
            delay = self._delay(tenant_id)
            keys = sorted(k.decode() for k in w.r.hkeys(w.key("erp", tenant_id, self.ENTITY)))
            for key in keys:
                if fence is not None:
                    fence()
                written += self._sync(tenant_id, self.ENTITY, key)
                if delay:
                    time.sleep(delay)
            if not keys and delay:
                time.sleep(delay)
        finally:
            w.r.decr(w.key("active", tenant_id))
            w.r.rpush(w.key("runs", tenant_id), f"{start},{time.time()}")
        return Summary("ok", {"written": written})

    def resolve_intents(self, tenant_id: str, *, fence: Callable[[], None] | None = None) -> int:
        return 0

    def source_entities(self, tenant_id: str) -> list[str]:
        return [self.ENTITY]

    def erp_changes_since(
        self, tenant_id: str, entity: str, since: dt.datetime | None
    ) -> tuple[list[str], dt.datetime | None]:
        low = "-inf" if since is None else f"({round(since.timestamp() * 1000)}"
        rows = self.world.r.zrangebyscore(
            self.world.key("updated", tenant_id, entity), low, "+inf", withscores=True
        )
        if not rows:
            return [], since
        newest = dt.datetime.fromtimestamp(max(s for _, s in rows) / 1000, dt.UTC)
        return [k.decode() for k, _ in rows], newest
