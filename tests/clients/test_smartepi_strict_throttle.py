"""Audit finding 4: a SmartEPI quota lower than ours, throttled without Retry-After (contract
§2.9: "the burst throttle sends none. Use your own exponential backoff"). With the client's
default retry policy every request gets through; the old ~4 s budget gave up (RateLimited)."""

from __future__ import annotations

import asyncio
import time

import httpx
from pydantic import SecretStr

from sync.clients.governor import InProcessGovernor, RateLimits
from sync.clients.smartepi import SmartEPIClient
from sync.sandbox.faults import FaultConfig
from sync.sandbox.smartepi.app import SmartEPISandboxConfig, TenantConfig, create_app

KEY = "sk_throttle_test_key_0001"


def test_a_quota_below_ours_without_retry_after_is_outlasted() -> None:
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key=SecretStr(KEY), id="t1")])
    # 5 requests per second, no burst to speak of, no Retry-After (the sandbox's default)
    app = create_app(config, FaultConfig(quota_rps=5, quota_burst=1))
    requests = 16  # 5 s of quota at once: far more than the old schedule could wait

    async def go() -> tuple[dict[tuple[str, str, str], int], float]:
        async with SmartEPIClient(
            "http://smartepi.test/v1",
            KEY,
            account="t1",
            transport=httpx.ASGITransport(app=app),
            governor=InProcessGovernor(RateLimits(rate=1000, burst=1000, concurrency=requests)),
            rng=lambda: 0.5,  # deterministic jitter: the old schedule waited at most 1.875 s here
        ) as c:
            started = time.monotonic()
            await asyncio.gather(*(c.request("GET", "/sectors") for _ in range(requests)))
            return c.counters.snapshot(), time.monotonic() - started

    counts, elapsed = asyncio.run(go())
    assert counts[("GET", "/sectors", "200")] == requests
    assert counts.get(("GET", "/sectors", "429"), 0) > 0  # the throttle did bite
    assert elapsed < 60
