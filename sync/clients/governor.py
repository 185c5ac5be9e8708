"""Rate governor: a token bucket plus an in-flight cap per platform account (design §3).

Usage, by the request loop around every HTTP attempt (never around backoff sleeps)::

    async with governor.slot():
        response = await client.send(...)
    ...
    await governor.penalize(seconds)   # on a 429: the whole account waits, not a failure

Two implementations of the ``Governor`` protocol:

- ``InProcessGovernor``: for one process (no Redis configured). Thread-safe, so one
  instance may be shared by several event loops (e.g. sync facades on threads).
- ``RedisGovernor``: every process of a deployment shares one budget. Acquisition is
  one Lua script (atomic): it honours the penalty, drops expired slot leases, checks the
  in-flight cap and takes a token, all or nothing. In-flight slots are members of a
  sorted set scored by their lease expiry, so a process that dies mid-request (kill -9)
  leaks its slot for at most ``lease`` seconds. Time comes from the Redis server
  (``TIME``), so process clocks need not agree.

Slot leases (issue #14 item 3: a 90 s lease let a dead worker's slots stall everyone for
90 s): the lease is the request timeout plus a small margin (``slot_lease``), so a dead
process's slots free themselves about when its requests would have timed out. An attempt
can outlive its timeout (httpx's timeouts are per phase, a slow body resets the read
timer), so a slot still held after half its lease is renewed by a timer on the holder's
loop (``ZADD XX``); a live holder keeps its slot, a dead one stops renewing. Most requests
end long before the timer fires, so it costs nothing on the fast path.

Waiting for a slot another *process* holds is polled every 5–20 ms, waiting for a token
or a penalty sleeps exactly as long as needed. A penalty also empties the bucket to one
token, so the account restarts gently instead of bursting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

SLOT_MARGIN = 5.0  # seconds a slot lease outlives the request timeout (at most)
DEFAULT_REQUEST_TIMEOUT = 30.0


def slot_lease(request_timeout: float) -> float:
    """A slot's lease for requests of ``request_timeout`` seconds (renewed while held):
    the timeout plus ``SLOT_MARGIN``, or plus half the timeout when that is smaller."""
    return request_timeout + min(SLOT_MARGIN, request_timeout / 2)


def max_request_timeout(lease_limit: float) -> float:
    """The longest request timeout whose ``slot_lease`` is at most ``lease_limit``."""
    return max(lease_limit - SLOT_MARGIN, lease_limit / 1.5)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-tenant quota of one platform account."""

    rate: float = 5.0  # tokens (requests) per second
    burst: int = 10  # bucket size
    concurrency: int = 8  # in-flight cap

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.concurrency < 1:
            raise ValueError("rate must be > 0, burst and concurrency >= 1")


class Governor(Protocol):
    def slot(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def penalize(self, seconds: float) -> None: ...


class _SlotGate:
    """A counting semaphore usable from any thread and any event loop (FIFO hand-over)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._used = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def in_use(self) -> int:
        return self._used

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._used < self._size and not self._waiters:
                self._used += 1
                return
            fut: asyncio.Future[None] = loop.create_future()
            entry = (loop, fut)
            self._waiters.append(entry)
        try:
            await fut
        except BaseException:
            with self._lock:
                try:
                    self._waiters.remove(entry)
                    handed = False
                except ValueError:
                    handed = True
            if handed:  # the slot was handed to us as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if loop is running:
                    # Same loop, same thread: resolve directly (the waiter's task is woken by
                    # the loop's own call_soon) instead of call_soon_threadsafe, which also
                    # writes to the loop's self-pipe and costs an extra wake-up per request.
                    _resolve(fut)
                    return  # ownership handed over; _used unchanged
                try:
                    loop.call_soon_threadsafe(_resolve, fut)
                    return  # ownership handed over; _used unchanged
                except RuntimeError:  # that loop is closed; try the next waiter
                    continue
            self._used -= 1


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
    # A cancelled future's owner releases the slot itself (see acquire).


class InProcessGovernor:
    """Token bucket + in-flight cap for one process."""

    def __init__(self, limits: RateLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(limits.burst)
        self._stamp = clock()
        self._penalty_until = 0.0
        self._gate = _SlotGate(limits.concurrency)

    @property
    def in_flight(self) -> int:
        return self._gate.in_use

    def _try_token(self) -> float:
        """Take a token; return 0, or the seconds to wait before trying again."""
        with self._lock:
            now = self._clock()
            if now < self._penalty_until:
                return self._penalty_until - now
            self._tokens = min(self.limits.burst, self._tokens + (now - self._stamp) * self.limits.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.limits.rate

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._gate.acquire()
        try:
            while (wait := self._try_token()) > 0:
                await asyncio.sleep(wait)
            yield
        finally:
            self._gate.release()

    async def penalize(self, seconds: float) -> None:
        with self._lock:
            until = self._clock() + max(seconds, 0.0)
            if until > self._penalty_until:
                self._penalty_until = until
                self._tokens = min(self._tokens, 1.0)
                self._stamp = until


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local pen = tonumber(redis.call('GET', KEYS[3]) or '0')
if now < pen then return {0, string.format('%.6f', pen - now)} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.6f', now))
if redis.call('ZCARD', KEYS[2]) >= cap then return {0, '-1'} end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
if tokens < 1 then return {0, string.format('%.6f', (1 - tokens) / rate)} end
tokens = tokens - 1
local keep = math.ceil(burst / rate) + 60
local stamp = string.format('%.6f', math.max(now, ts))
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', stamp)
redis.call('EXPIRE', KEYS[1], keep)
redis.call('ZADD', KEYS[2], string.format('%.6f', now + lease), ARGV[5])
redis.call('EXPIRE', KEYS[2], math.ceil(lease) + 60)
return {1, '0'}
"""

# KEYS: slots. ARGV: lease seconds, slot id. Renew a slot still held (never re-add a dropped one).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%.6f', now + tonumber(ARGV[1])), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 60)
return n
"""

_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untl = now + tonumber(ARGV[1])
local pen = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl <= pen then return 0 end
local ms = math.ceil((untl - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', untl), 'PX', ms)
local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens = math.min(tonumber(b[1]) or 1, 1)
redis.call('HSET', KEYS[2], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', untl))
redis.call('PEXPIRE', KEYS[2], ms + 60000)
return 1
"""


class RedisGovernor:
    """Token bucket + in-flight cap shared by every process through Redis (see module doc).

    ``key`` names the platform account, e.g. ``"erpsync:gov:smartepi:acme"``. ``redis``
    is a URL or a factory returning a ``redis.asyncio.Redis``; one client is created per
    event loop because asyncio Redis connections are bound to their loop.
    """

    def __init__(
        self,
        redis: str | Callable[[], Any],
        key: str,
        limits: RateLimits,
        *,
        lease: float = slot_lease(DEFAULT_REQUEST_TIMEOUT),
    ) -> None:
        if lease <= 0:
            raise ValueError("lease must be positive")
        self.key = key
        self.limits = limits
        self.lease = lease
        self._factory: Callable[[], Any]
        if isinstance(redis, str):
            url = redis

            def factory() -> Any:
                import redis.asyncio as aioredis

                return aioredis.Redis.from_url(url)

            self._factory = factory
        else:
            self._factory = redis
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any, Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._local = _SlotGate(limits.concurrency)  # a process never holds more than the cap
        self._keys = [f"{key}:bucket", f"{key}:slots", f"{key}:penalty"]

    def __repr__(self) -> str:
        return f"RedisGovernor(key={self.key!r}, limits={self.limits!r})"

    def _conn(self) -> tuple[Any, Any, Any, Any]:
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            client = self._factory()
            found = (
                client,
                client.register_script(_ACQUIRE),
                client.register_script(_PENALIZE),
                client.register_script(_RENEW),
            )
            self._clients[loop] = found
        return found

    def _keep_alive(self, slot_id: str, holder: dict[str, Any]) -> None:
        """Timer callback: renew a slot held past half its lease, then re-arm the timer."""
        loop = asyncio.get_running_loop()
        _, _, _, renew = self._conn()

        async def beat() -> None:
            with contextlib.suppress(Exception):  # a Redis blip: the next beat (or the lease) settles it
                await renew(keys=[self._keys[1]], args=[self.lease, slot_id])

        holder["task"] = loop.create_task(beat())
        holder["timer"] = loop.call_later(self.lease / 2, self._keep_alive, slot_id, holder)

    async def _acquire_remote(self, slot_id: str) -> None:
        client, acquire, _, _ = self._conn()
        lim = self.limits
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        while True:
            ok, wait = await acquire(
                keys=self._keys, args=[lim.rate, lim.burst, lim.concurrency, self.lease, slot_id]
            )
            if task is not None and task.cancelling() > asked:
                # redis-py 8 sends every command through ``asyncio.wait_for``, which on Python
                # < 3.12 can swallow a cancellation that lands as the reply arrives (CPython
                # gh-86296): without this check a cancelled caller would loop here forever.
                if int(ok) == 1:
                    await asyncio.shield(client.zrem(self._keys[1], slot_id))
                raise asyncio.CancelledError
            if int(ok) == 1:
                return
            seconds = float(wait)
            await asyncio.sleep(random.uniform(0.005, 0.02) if seconds < 0 else seconds)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._local.acquire()
        try:
            slot_id = uuid.uuid4().hex
            await self._acquire_remote(slot_id)
            holder: dict[str, Any] = {}
            holder["timer"] = asyncio.get_running_loop().call_later(
                self.lease / 2, self._keep_alive, slot_id, holder
            )
            try:
                yield
            finally:
                holder["timer"].cancel()
                client, _, _, _ = self._conn()
                # Shielded: a cancelled request must still free its slot promptly.
                await asyncio.shield(client.zrem(self._keys[1], slot_id))
        finally:
            self._local.release()

    async def penalize(self, seconds: float) -> None:
        _, _, penalize, _ = self._conn()
        await penalize(keys=[self._keys[2], self._keys[0]], args=[max(seconds, 0.0)])

    async def in_flight(self) -> int:
        client, _, _, _ = self._conn()
        now = (await client.time())[0]
        return int(await client.zcount(self._keys[1], now, "+inf"))

    async def aclose(self) -> None:
        """Close the Redis client of the running loop (others close with their loop)."""
        loop = asyncio.get_running_loop()
        found = self._clients.pop(loop, None)
        if found is not None:
            await found[0].aclose()


def make_governor(
    limits: RateLimits,
    *,
    key: str,
    redis_url: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> InProcessGovernor | RedisGovernor:
    """The deployment's governor: Redis-backed when a URL is configured, else in-process.

    ``request_timeout`` is the client's timeout: slot leases are tied to it (``slot_lease``)."""
    if redis_url:
        return RedisGovernor(redis_url, key, limits, lease=slot_lease(request_timeout))
    return InProcessGovernor(limits)
