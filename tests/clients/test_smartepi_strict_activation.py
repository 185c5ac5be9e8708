"""Audit finding 2: a new SmartEPI key answers 403 for about a minute (contract §2.2 [B]). Until
the client's first answer from behind the gateway, a 403 is retried with backoff for up to
``key_activation_wait``; after any answer a 403 is final. Against the in-process sandbox with a
short ``key_activation_s``."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from pydantic import SecretStr

from sync.clients.smartepi import SmartEPIClient
from sync.errors import Forbidden
from sync.sandbox.smartepi.app import SmartEPISandboxConfig, TenantConfig, create_app

KEY = "sk_new_key_activating_0001"


def sandbox(activation_s: float):  # type: ignore[no-untyped-def]
    config = SmartEPISandboxConfig(
        tenants=[TenantConfig(api_key=SecretStr(KEY), id="t1")], key_activation_s=activation_s
    )
    return create_app(config)


def client(app, **kw) -> SmartEPIClient:  # type: ignore[no-untyped-def]
    return SmartEPIClient(
        "http://smartepi.test/v1", KEY, account="t1", transport=httpx.ASGITransport(app=app), **kw
    )


def test_a_key_still_activating_is_waited_for_then_a_403_is_final() -> None:
    app = sandbox(0.8)
    tenant = app.state.sandbox.store.tenants["t1"]

    async def go() -> tuple[float, int, Forbidden]:
        async with client(app, key_activation_wait=10.0) as c:
            started = time.monotonic()
            created = await c.sectors.create({"name": "Welding"})  # a POST: the gateway said 403
            elapsed = time.monotonic() - started
            forbidden_before = c.counters.snapshot().get(("POST", "/sectors", "403"), 0)
            assert created.record["name"] == "Welding"
            # the key is known good now: a later 403 (revoked, IP block) is final at once
            tenant.active_after = time.time() + 60
            started = time.monotonic()
            with pytest.raises(Forbidden) as info:
                await c.sectors.get(created.record["id"])
            assert time.monotonic() - started < 0.5
            return elapsed, forbidden_before, info.value

    elapsed, forbidden, err = asyncio.run(go())
    assert elapsed >= 0.7 and forbidden >= 1
    assert KEY not in str(err)
    assert len(app.state.sandbox.store.tenants["t1"].tables["sectors"].records) == 1  # no duplicate


def test_the_activation_wait_is_bounded() -> None:
    app = sandbox(30.0)

    async def go() -> float:
        async with client(app, key_activation_wait=0.6) as c:
            started = time.monotonic()
            with pytest.raises(Forbidden):
                await c.sectors.get("sec_1")
            return time.monotonic() - started

    elapsed = asyncio.run(go())
    assert 0.5 <= elapsed < 2.0


def test_a_key_with_surrounding_whitespace_is_sent_trimmed() -> None:
    """Audit finding 18: the gateway compares the key exactly; a key read from a file with a
    trailing newline (or pasted with spaces) must still authenticate, and never be logged."""
    app = sandbox(0.0)

    async def go() -> int:
        async with SmartEPIClient(
            "http://smartepi.test/v1",
            f"  {KEY}\n",
            account="t1",
            transport=httpx.ASGITransport(app=app),
            key_activation_wait=0.0,
        ) as c:
            listed = [r async for r in c.sectors.list()]
            assert KEY not in repr(c)
            return len(listed)

    assert asyncio.run(go()) == 0


def test_a_gateway_429_does_not_end_the_activation_wait() -> None:
    """A 429 comes from the gateway too (§2.5 B): it says nothing about the key, so a 403 after
    it, before any application answer, is still waited for."""
    from sync.clients.retry import RetryPolicy
    from sync.errors import RateLimited

    answers = [
        httpx.Response(429, json={"message": "Too Many Requests"}),
        httpx.Response(403, json={"Message": "User is not authorized"}),
        httpx.Response(200, json={"data": [], "cursor": None}),
    ]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> None:
        async with SmartEPIClient(
            "http://smartepi.test/v1",
            KEY,
            account="t1",
            transport=httpx.MockTransport(lambda request: answers.pop(0)),
            retry=RetryPolicy(max_attempts=1),
            key_activation_wait=5.0,
            sleep=sleep,
        ) as c:
            with pytest.raises(RateLimited):
                await c.request("GET", "/sectors")
            await c.request("GET", "/sectors")

    asyncio.run(go())
    assert len(slept) == 1 and answers == []


def test_the_tenant_setting_reaches_the_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``smartepi.key_activation_wait_seconds`` is the client's wait (0: a 403 fails at once)."""
    from sync.engine.runtime import TenantRuntime
    from sync.settings import Settings, TenantSettings

    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "version: 1\nplatform: smartepi\nentities:\n  sectors:\n    source: s\n    key: k\n"
        "    fields:\n      name: n\n",
        encoding="utf-8",
    )
    for wait, expected in ((None, 90.0), (0, 0.0)):
        epi = {"base_url": "https://epi.example/v1", "api_key": KEY}
        if wait is not None:
            epi["key_activation_wait_seconds"] = wait
        tenant = TenantSettings.model_validate(
            {
                "erp": {"kind": "sql", "url": f"sqlite:///{tmp_path}/erp.db"},
                "mappings": [str(mapping)],
                "smartepi": epi,
            }
        )
        runtime = TenantRuntime("t", Settings(), tenant, None, {})  # type: ignore[arg-type]
        made = runtime.new_client("smartepi")
        assert made.key_activation_wait == expected
        asyncio.run(made.aclose())
