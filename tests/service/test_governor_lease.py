"""Issue #14 item 3: rate-limit slots of a dead worker free themselves about when its requests
would have timed out (their lease is the request timeout plus a margin), and a live holder
keeps a slot it holds longer than that lease (renewed while held)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sync.clients.governor import RateLimits, RedisGovernor, make_governor, slot_lease

pytestmark = pytest.mark.services
LIMITS = RateLimits(rate=1000, burst=100, concurrency=2)

HOLDER = """
import asyncio, sys, time
from sync.clients.governor import RateLimits, make_governor

async def main():
    gov = make_governor(RateLimits(rate=1000, burst=100, concurrency=2), key=sys.argv[2],
                        redis_url=sys.argv[1], request_timeout=float(sys.argv[3]))
    async with gov.slot():
        async with gov.slot():
            print("held", flush=True)
            await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
def gov_key(redis_client: Any, namespace: str) -> Iterator[str]:
    yield f"{namespace}:gov:{uuid.uuid4().hex[:8]}"


def test_slots_of_a_worker_killed_9_free_within_about_the_request_timeout(
    redis_url: str, gov_key: str
) -> None:
    timeout = 2.0
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, gov_key, str(timeout)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
    finally:
        child.kill()  # SIGKILL: no finally blocks, no ZREM
        child.wait(timeout=10)
    gov = make_governor(LIMITS, key=gov_key, redis_url=redis_url, request_timeout=timeout)
    assert isinstance(gov, RedisGovernor)

    async def next_request() -> tuple[int, float]:
        try:
            held = await gov.in_flight()
            began = time.monotonic()
            async with gov.slot():
                return held, time.monotonic() - began
        finally:
            await gov.aclose()

    held, waited = asyncio.run(next_request())
    assert held == 2  # the dead process's slots were still there
    assert waited <= slot_lease(timeout) + 1.0, f"waited {waited:.1f} s for a dead worker's slot"


def test_a_live_holder_keeps_its_slots_past_the_lease(redis_url: str, gov_key: str) -> None:
    holder = RedisGovernor(redis_url, gov_key, LIMITS, lease=1.0)
    other = RedisGovernor(redis_url, gov_key, LIMITS, lease=1.0)

    async def go() -> tuple[bool, float]:
        release = asyncio.Event()
        held = asyncio.Event()

        async def hold() -> None:
            async with holder.slot(), holder.slot():
                held.set()
                await release.wait()

        task = asyncio.create_task(hold())
        await held.wait()
        try:
            await asyncio.wait_for(other._acquire_remote("intruder"), timeout=3.0)  # 3 leases
            stolen = True
        except TimeoutError:
            stolen = False
        release.set()
        await task
        began = time.monotonic()
        async with other.slot():  # released slots are free at once
            waited = time.monotonic() - began
        await holder.aclose()
        await other.aclose()
        return stolen, waited

    stolen, waited = asyncio.run(go())
    assert not stolen, "a slot still held by a live process was taken after its lease"
    assert waited < 0.5


def test_settings_refuse_a_slot_lease_longer_than_the_task_soft_time_limit() -> None:
    from sync.errors import ConfigError
    from sync.settings import load_settings, soft_time_limit

    tenant = {
        "erp": {"kind": "files", "directory": "/nonexistent"},
        "mappings": ["m.yaml"],
        "smartepi": {"base_url": "http://127.0.0.1:9", "api_key": "k", "timeout_seconds": 30},
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(
            overrides={"celery": {"task_time_limit": 30, "visibility_timeout": 60}, "tenants": {"a": tenant}}
        )
    message = str(caught.value)
    assert "tenants.a.smartepi.timeout_seconds" in message and "soft time limit" in message
    assert "lower timeout_seconds to at most" in message and "raise celery.task_time_limit" in message
    ok = load_settings(
        overrides={"celery": {"task_time_limit": 60, "visibility_timeout": 90}, "tenants": {"a": tenant}}
    )
    epi = ok.tenants["a"].smartepi
    assert epi is not None and slot_lease(epi.timeout_seconds) <= soft_time_limit(60)
