"""Audit finding 19: the revision-A gateway answers (§2.2 A, §5.1) against the client: 401 for
a bad key, 403 problem+json for an IP block, 429 ``{"message":"Limit Exceeded"}``. The client
branches on the status code, so each maps to the same typed error as under revision B."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from sync.clients.governor import InProcessGovernor, RateLimits
from sync.clients.retry import RetryPolicy
from sync.clients.smartepi import SmartEPIClient
from sync.errors import Forbidden, Unauthorized
from sync.sandbox.faults import FaultConfig
from sync.sandbox.smartepi.app import SmartEPISandboxConfig, TenantConfig, create_app

KEY = "sk_gateway_a_key_0001"
FAST = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05)


def app_for(**tenant: object) -> object:
    config = SmartEPISandboxConfig(
        tenants=[TenantConfig(api_key=SecretStr(KEY), id="t1", **tenant)],  # type: ignore[arg-type]
        gateway_style="A",
    )
    return create_app(config, FaultConfig(p_429=0.5, seed=4))


def client(app: object, key: str = KEY) -> SmartEPIClient:
    return SmartEPIClient(
        "http://smartepi.test/v1",
        key,
        account="t1",
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        retry=FAST,
        governor=InProcessGovernor(RateLimits(rate=1000, burst=1000, concurrency=4)),
    )


def test_revision_a_answers_map_to_the_same_errors() -> None:
    app = app_for()

    async def go() -> None:
        async with client(app) as c:  # 429 "Limit Exceeded" half the time: absorbed by retries
            for _ in range(5):
                assert [r async for r in c.sectors.list()] == []
            assert c.counters.snapshot().get(("GET", "/sectors", "429"), 0) > 0
        async with client(app, "sk_wrong_key_000") as wrong:  # 401 at once: no activation wait
            with pytest.raises(Unauthorized) as info:
                await wrong.sectors.get("x")
            assert info.value.kind == "terminal" and "sk_wrong_key_000" not in str(info.value)

    asyncio.run(go())


def test_revision_a_ip_block_is_a_problem_json_403() -> None:
    app = app_for(allowed_ips=["10.9.9.9"])

    async def go() -> Forbidden:
        async with client(app) as c:
            c.key_activation_wait = 0.0
            with pytest.raises(Forbidden) as info:
                await c.sectors.get("x")
            return info.value

    err = asyncio.run(go())
    assert err.code == "forbidden" and err.request_id is not None and "source IP" in str(err)


def test_retry_after_as_an_http_date_is_honoured() -> None:
    """Audit finding 22: Retry-After may be an HTTP date (§2.9 A: "retry after the indicated
    window"); the client waits about that long, not its own backoff, and gets through."""
    config = SmartEPISandboxConfig(
        tenants=[TenantConfig(api_key=SecretStr(KEY), id="t1")], retry_after_format="http_date"
    )
    app = create_app(config, FaultConfig(p_429=0.3, retry_after=1, seed=2))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> dict[tuple[str, str, str], int]:
        async with SmartEPIClient(
            "http://smartepi.test/v1",
            KEY,
            account="t1",
            transport=httpx.ASGITransport(app=app),
            retry=RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.002),
            governor=InProcessGovernor(RateLimits(rate=1000, burst=1000, concurrency=4)),
            sleep=sleep,
        ) as c:
            for _ in range(10):
                assert [r async for r in c.sectors.list()] == []
            return c.counters.snapshot()

    counts = asyncio.run(go())
    assert counts.get(("GET", "/sectors", "429"), 0) == len(slept) > 0
    assert all(0.5 <= s <= 2.0 for s in slept)  # the header's (1 s or a little more), not backoff's
