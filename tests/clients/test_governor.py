"""Rate governor: token bucket + in-flight cap, in-process and shared through real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import redis

from sync.clients.governor import InProcessGovernor, RateLimits, RedisGovernor, make_governor


def assert_within_quota(stamps: list[float], limits: RateLimits, slack: float = 0.05) -> None:
    """No window [a, b] holds more acquisitions than burst + rate·(b - a + slack)."""
    stamps = sorted(stamps)
    for i in range(len(stamps)):
        for j in range(i, len(stamps)):
            allowed = limits.burst + limits.rate * (stamps[j] - stamps[i] + slack)
            assert j - i + 1 <= allowed, (j - i + 1, stamps[j] - stamps[i])


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted(
        [(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1])
    )
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


async def hammer(governor, n: int, workers: int, hold: float = 0.002):
    stamps: list[float] = []
    intervals: list[tuple[float, float]] = []

    async def worker(count):
        for _ in range(count):
            async with governor.slot():
                start = time.monotonic()
                stamps.append(start)
                await asyncio.sleep(hold)
                intervals.append((start, time.monotonic()))

    await asyncio.gather(*(worker(n // workers) for _ in range(workers)))
    return stamps, intervals


@pytest.fixture
def redis_key(redis_url):
    key = f"erpsync:test:gov:{uuid.uuid4().hex}"
    yield key
    client = redis.Redis.from_url(redis_url)
    for k in client.scan_iter(f"{key}*"):
        client.delete(k)
    client.close()


def test_limits_are_validated():
    with pytest.raises(ValueError):
        RateLimits(rate=0)
    with pytest.raises(ValueError):
        RateLimits(concurrency=0)


def test_in_process_rate_and_concurrency():
    limits = RateLimits(rate=100, burst=5, concurrency=3)
    gov = InProcessGovernor(limits)
    began = time.monotonic()
    stamps, intervals = asyncio.run(hammer(gov, 30, 6))
    assert time.monotonic() - began >= (30 - 5) / 100 * 0.9
    assert_within_quota(stamps, limits)
    assert max_overlap(intervals) <= 3
    assert gov.in_flight == 0


def test_in_process_penalty_pauses_the_account():
    gov = InProcessGovernor(RateLimits(rate=1000, burst=100, concurrency=4))

    async def go():
        await gov.penalize(0.15)
        began = time.monotonic()
        async with gov.slot():
            return time.monotonic() - began

    assert asyncio.run(go()) >= 0.14


def test_in_process_cancelled_waiter_does_not_leak_a_slot():
    gov = InProcessGovernor(RateLimits(rate=1000, burst=100, concurrency=1))

    async def go():
        entered = asyncio.Event()
        release = asyncio.Event()

        async def holder():
            async with gov.slot():
                entered.set()
                await release.wait()

        h = asyncio.create_task(holder())
        await entered.wait()
        waiter = asyncio.create_task(_enter(gov))
        await asyncio.sleep(0.01)
        waiter.cancel()
        release.set()
        await h
        await asyncio.wait_for(_enter(gov), 1)  # the slot is free again
        return gov.in_flight

    assert asyncio.run(go()) == 0


async def _enter(gov):
    async with gov.slot():
        pass


def test_in_process_governor_is_shared_across_event_loops_in_threads():
    import threading

    limits = RateLimits(rate=1000, burst=1000, concurrency=2)
    gov = InProcessGovernor(limits)
    results: list[list[tuple[float, float]]] = []

    def run_loop():
        results.append(asyncio.run(hammer(gov, 20, 4, hold=0.003))[1])

    threads = [threading.Thread(target=run_loop) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert max_overlap([iv for r in results for iv in r]) <= 2 and gov.in_flight == 0


def test_make_governor_picks_by_configuration(redis_url):
    assert isinstance(make_governor(RateLimits(), key="k"), InProcessGovernor)
    assert isinstance(make_governor(RateLimits(), key="k", redis_url=redis_url), RedisGovernor)


@pytest.mark.services
def test_redis_rate_and_concurrency_across_two_instances(redis_url, redis_key):
    limits = RateLimits(rate=100, burst=5, concurrency=3)
    a, b = RedisGovernor(redis_url, redis_key, limits), RedisGovernor(redis_url, redis_key, limits)

    async def go():
        try:
            (s1, i1), (s2, i2) = await asyncio.gather(hammer(a, 20, 3), hammer(b, 20, 3))
        finally:
            await a.aclose()
            await b.aclose()
        return s1 + s2, i1 + i2

    stamps, intervals = asyncio.run(go())
    assert len(stamps) == 36
    assert_within_quota(stamps, limits)
    assert max_overlap(intervals) <= 3


@pytest.mark.services
def test_redis_penalty_is_shared(redis_url, redis_key):
    limits = RateLimits(rate=1000, burst=100, concurrency=4)
    a, b = RedisGovernor(redis_url, redis_key, limits), RedisGovernor(redis_url, redis_key, limits)

    async def go():
        try:
            await a.penalize(0.2)
            began = time.monotonic()
            async with b.slot():
                return time.monotonic() - began
        finally:
            await a.aclose()
            await b.aclose()

    assert asyncio.run(go()) >= 0.18


@pytest.mark.services
def test_redis_slot_of_a_dead_process_expires(redis_url, redis_key):
    """A process that died holding slots leaks them only until their lease runs out."""
    limits = RateLimits(rate=1000, burst=100, concurrency=2)
    dead = RedisGovernor(redis_url, redis_key, limits, lease=0.3)
    alive = RedisGovernor(redis_url, redis_key, limits)

    async def go():
        try:
            # Take both slots and never release them, as a killed process would.
            for _ in range(2):
                await dead._acquire_remote(uuid.uuid4().hex)
            assert await alive.in_flight() == 2
            began = time.monotonic()
            async with alive.slot():
                waited = time.monotonic() - began
            return waited, await alive.in_flight()
        finally:
            await dead.aclose()
            await alive.aclose()

    waited, after = asyncio.run(go())
    assert 0.2 <= waited < 2.0
    assert after == 0


@pytest.mark.services
def test_redis_release_frees_the_slot_on_error(redis_url, redis_key):
    gov = RedisGovernor(redis_url, redis_key, RateLimits(rate=1000, burst=100, concurrency=1))

    async def go():
        try:
            with pytest.raises(RuntimeError):
                async with gov.slot():
                    raise RuntimeError("request failed")
            return await gov.in_flight()
        finally:
            await gov.aclose()

    assert asyncio.run(go()) == 0


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from sync.clients.governor import RateLimits, RedisGovernor

    url, key, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    limits = RateLimits(rate=40, burst=4, concurrency=3)

    async def main():
        gov = RedisGovernor(url, key, limits)
        out = []

        async def worker():
            for _ in range(8):
                async with gov.slot():
                    t0 = time.time()
                    await asyncio.sleep(0.01)
                    out.append((t0, time.time()))

        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(worker() for _ in range(4)))
        await gov.aclose()
        print(json.dumps(out))

    asyncio.run(main())
    """
)


@pytest.mark.services
def test_two_processes_share_one_budget(redis_url, redis_key, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start_at = time.time() + 1.5  # both interpreters are up and connected by then
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), redis_url, redis_key, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    intervals = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        intervals += [tuple(x) for x in json.loads(out)]
    assert len(intervals) == 64
    limits = RateLimits(rate=40, burst=4, concurrency=3)
    assert_within_quota([a for a, _ in intervals], limits)
    assert max_overlap(intervals) <= 3
    # The pair together is held to the shared rate: 64 requests need (64 - 4) / 40 s at least.
    span = max(b for _, b in intervals) - min(a for a, _ in intervals)
    assert span >= (64 - 4) / 40 * 0.95


class _SwallowingRedis:
    """A Redis client whose script call swallows a cancellation that lands as its reply
    arrives, as ``asyncio.wait_for`` does on Python < 3.12 (CPython gh-86296) and redis-py 8
    sends every command through it. The cap is always full, so acquiring never succeeds."""

    def __init__(self) -> None:
        self.calls = 0
        self.removed: list[str] = []

    def register_script(self, _source: str):
        async def script(keys, args):
            self.calls += 1
            with contextlib.suppress(asyncio.CancelledError):  # the reply "arrived" at once
                await asyncio.sleep(0.01)
            return [0, "-1"]

        return script

    async def zrem(self, _key: str, member: str) -> int:
        self.removed.append(member)
        return 1

    async def aclose(self) -> None:
        return None


def test_redis_acquire_honours_a_cancellation_the_redis_client_swallowed():
    fake = _SwallowingRedis()
    gov = RedisGovernor(lambda: fake, "k", RateLimits(rate=100, burst=10, concurrency=1), lease=5.0)

    async def go() -> None:
        waiter = asyncio.create_task(gov._acquire_remote("me"))
        while fake.calls == 0:
            await asyncio.sleep(0)
        waiter.cancel()
        done, _ = await asyncio.wait({waiter}, timeout=5.0)
        assert done, "a cancelled acquire kept looping after the client swallowed the cancellation"
        assert waiter.cancelled()

    asyncio.run(go())
