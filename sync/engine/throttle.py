"""Per-key throttle for ERP change events (design §3: leading edge plus one follow-up).

A lone event must not wait for a debounce timer, and a burst must not cause a write
per event. Each (tenant, entity, key) has a small Redis hash that moves through:

- absent: an event is *admitted*: the caller enqueues a sync now (leading edge);
- ``queued``: a sync task that has not started covers the key; events are absorbed;
- ``running``: the sync has started reading; an event marks the key *dirty*, and the
  task enqueues one follow-up when it finishes (at ``started + window`` at the earliest);
- ``cooldown``: the sync finished less than ``window`` seconds after it started; an event
  re-queues the key for one follow-up at the end of the window.

So within any window a key is synced at most twice (leading sync + one follow-up),
and an event is never lost: it either lands before the read of a sync that is
queued or running, or it schedules one. Every transition is one Lua script (atomic),
time comes from the Redis server, and every hash expires (``ttl``) so a crashed
worker can never wedge a key.

The follow-up's Celery task id is derived from the task it follows (``follow_up_id``),
so every key that a running task's events made dirty lands in the same single
follow-up, and the id can be handed to the client before that task exists.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_NS = uuid.UUID("0f5e5c57-9d2b-4d0e-9a55-6c3f1f0e2a11")

# KEYS: one hash per key. ARGV: new task id, follow-up id (for cooldown), window ms, ttl ms.
# Returns, per key, {action, task id, delay ms}: action 1 admitted (enqueue now),
# 2 folded into a queued/running task, 3 re-queued after cooldown (enqueue with delay).
_ADMIT = """
local out = {}
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i, k in ipairs(KEYS) do
  local st = redis.call('HMGET', k, 'state', 'task', 'started')
  local state, task, started = st[1], st[2], st[3]
  if not state then
    redis.call('HSET', k, 'state', 'queued', 'task', ARGV[1])
    redis.call('PEXPIRE', k, ARGV[4])
    out[i] = {1, ARGV[1], 0}
  elseif state == 'queued' then
    out[i] = {2, task, 0}
  elseif state == 'running' then
    redis.call('HSET', k, 'dirty', '1')
    out[i] = {2, redis.call('HGET', k, 'next'), 0}
  else
    local next_id = redis.call('HGET', k, 'next')
    local delay = tonumber(started) + tonumber(ARGV[3]) - now_ms
    if delay < 0 then delay = 0 end
    redis.call('HSET', k, 'state', 'queued', 'task', next_id)
    redis.call('HDEL', k, 'next', 'dirty')
    redis.call('PEXPIRE', k, ARGV[4])
    out[i] = {3, next_id, delay}
  end
end
return out
"""

# KEYS: hashes. ARGV: task id, its follow-up id, ttl ms. Marks the keys running (clean).
_BEGIN = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for _, k in ipairs(KEYS) do
  redis.call('HSET', k, 'state', 'running', 'task', ARGV[1], 'next', ARGV[2], 'started', now_ms)
  redis.call('HDEL', k, 'dirty')
  redis.call('PEXPIRE', k, ARGV[3])
end
return now_ms
"""

# KEYS: hashes. ARGV: task id, window ms, ttl ms.
# Returns {dirty key indexes (1-based), delay ms}; dirty keys become queued for the follow-up,
# clean ones cool down for the rest of the window (or disappear when it is over).
_FINISH = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local dirty = {}
local delay = 0
for i, k in ipairs(KEYS) do
  local st = redis.call('HMGET', k, 'state', 'task', 'started', 'dirty', 'next')
  if st[1] == 'running' and st[2] == ARGV[1] then
    local left = tonumber(st[3]) + tonumber(ARGV[2]) - now_ms
    if st[4] == '1' then
      redis.call('HSET', k, 'state', 'queued', 'task', st[5])
      redis.call('HDEL', k, 'dirty', 'next')
      redis.call('PEXPIRE', k, ARGV[3])
      table.insert(dirty, i)
      if left > delay then delay = left end
    elseif left > 0 then
      redis.call('HSET', k, 'state', 'cooldown')
      redis.call('PEXPIRE', k, left)
    else
      redis.call('DEL', k)
    end
  end
end
return {dirty, delay}
"""

# KEYS: hashes. ARGV: task id. Forget keys still queued for a task that could not be enqueued.
_RELEASE = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('HGET', k, 'task') == ARGV[1] then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n
"""


def follow_up_id(task_id: str) -> str:
    """The id of the single follow-up of ``task_id`` (deterministic, so it can be promised early)."""
    return str(uuid.uuid5(_NS, task_id))


@dataclass(frozen=True, slots=True)
class Admission:
    """What an intake must do after ``admit``: enqueue ``send`` (task id → (keys, delay s))."""

    send: dict[str, tuple[list[str], float]] = field(default_factory=dict)
    task_ids: dict[str, str] = field(default_factory=dict)  # key → the task that will cover it

    @property
    def primary_task_id(self) -> str | None:
        ids = list(self.send) or list(dict.fromkeys(self.task_ids.values()))
        return ids[0] if ids else None


@dataclass(frozen=True, slots=True)
class FollowUp:
    task_id: str
    keys: list[str]
    delay: float


class KeyThrottle:
    """The atomic state machine above, for one Redis client and key namespace."""

    def __init__(
        self, redis: Any, *, namespace: str = "erpsync", window: float = 2.0, ttl: float = 3600.0
    ) -> None:
        if window < 0 or ttl <= window:
            raise ValueError("window must be >= 0 and ttl greater than window")
        self.redis = redis
        self.namespace = namespace
        self.window_ms = int(window * 1000)
        self.ttl_ms = int(ttl * 1000)
        self._admit = redis.register_script(_ADMIT)
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._release = redis.register_script(_RELEASE)

    def _keys(self, tenant: str, entity: str, keys: Sequence[str]) -> list[str]:
        return [f"{self.namespace}:throttle:{tenant}:{entity}:{k}" for k in keys]

    def admit(self, tenant: str, entity: str, keys: Sequence[str]) -> Admission:
        """Record events for ``keys``; returns the tasks the caller must enqueue (with ids)."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return Admission()
        new_id = str(uuid.uuid4())
        rows = self._admit(
            keys=self._keys(tenant, entity, keys),
            args=[new_id, follow_up_id(new_id), self.window_ms, self.ttl_ms],
        )
        send: dict[str, tuple[list[str], float]] = {}
        grouped: dict[str, list[str]] = defaultdict(list)
        delays: dict[str, float] = {}
        task_ids: dict[str, str] = {}
        for key, (action, task_id, delay_ms) in zip(keys, rows, strict=True):
            task_id = _text(task_id)
            task_ids[key] = task_id
            if int(action) in (1, 3):
                grouped[task_id].append(key)
                delays[task_id] = max(delays.get(task_id, 0.0), int(delay_ms) / 1000)
        for task_id, group in grouped.items():
            send[task_id] = (group, delays[task_id])
        return Admission(send=send, task_ids=task_ids)

    def begin(self, tenant: str, entity: str, keys: Sequence[str], task_id: str) -> None:
        """A sync task starts reading ``keys``: later events need a follow-up."""
        if keys:
            self._begin(
                keys=self._keys(tenant, entity, keys), args=[task_id, follow_up_id(task_id), self.ttl_ms]
            )

    def finish(self, tenant: str, entity: str, keys: Sequence[str], task_id: str) -> FollowUp | None:
        """A sync task is done with ``keys``; returns the follow-up to enqueue, if any."""
        keys = list(keys)
        if not keys:
            return None
        dirty, delay_ms = self._finish(
            keys=self._keys(tenant, entity, keys), args=[task_id, self.window_ms, self.ttl_ms]
        )
        if not dirty:
            return None
        return FollowUp(follow_up_id(task_id), [keys[int(i) - 1] for i in dirty], int(delay_ms) / 1000)

    def release(self, tenant: str, entity: str, keys: Sequence[str], task_id: str) -> None:
        """Undo ``admit``/``finish`` for a task that could not be enqueued (events are not absorbed)."""
        if keys:
            self._release(keys=self._keys(tenant, entity, keys), args=[task_id])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# KEYS: the ledger key. ARGV: started ms. Keeps the newest start of a completed reconcile.
_COMPLETED = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class ReconcileLedger:
    """Coalesces reconcile triggers: a trigger made at T is satisfied by any reconcile that
    *started* after T and *completed* (a full reconcile satisfies fast triggers too).

    Fifty triggers during one run therefore cost one more run, not fifty; a trigger of a
    run that died is not satisfied by it, so a redelivered task still runs. Times are the
    Redis server's, in milliseconds, so workers' clocks need not agree.
    """

    def __init__(self, redis: Any, *, namespace: str = "erpsync") -> None:
        self.redis = redis
        self.namespace = namespace
        self._completed = redis.register_script(_COMPLETED)

    def _key(self, tenant: str, mode: str) -> str:
        return f"{self.namespace}:reconciled:{tenant}:{mode}"

    def now_ms(self) -> int:
        sec, usec = self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def completed(self, tenant: str, mode: str, started_ms: int) -> None:
        self._completed(keys=[self._key(tenant, mode)], args=[started_ms])

    def covered(self, tenant: str, mode: str, requested_ms: int) -> bool:
        modes = ("full",) if mode == "full" else ("full", "fast")
        values = self.redis.mget([self._key(tenant, m) for m in modes])
        return any(v is not None and int(v) >= requested_ms for v in values)
