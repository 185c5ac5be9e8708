"""Audit findings 6 and 14: time-window bounds (format undocumented, contract §3.8) are sent with
millisecond precision, since rounded down and until rounded up; the sandbox parses them strictly
(extended ISO-8601, ``Z`` or ``+00:00``, at most 6 fractional digits, fewer when configured)."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sync.clients.smartepi import SmartEPIClient
from sync.sandbox.smartepi.app import SmartEPISandboxConfig, TenantConfig, create_app
from sync.sandbox.smartepi.generators import generate

KEY = "sk_window_test_key_0001"
H = {"Authorization": f"Bearer {KEY}"}


def make_app(digits: int = 6):  # type: ignore[no-untyped-def]
    config = SmartEPISandboxConfig(
        tenants=[TenantConfig(api_key=SecretStr(KEY), id="t1")], window_fraction_digits=digits
    )
    return create_app(config)


def test_microsecond_bounds_work_against_a_millisecond_server_and_keep_edge_records() -> None:
    app = make_app(digits=3)  # a server validating toISOString()-style bounds
    sandbox = app.state.sandbox
    tenant = sandbox.store.tenants["t1"]
    sandbox.store.create(tenant, "employees", {"name": "Worker", "identification": "ID1"})
    sandbox.store.create(tenant, "products", {"name": "Glove"})
    start = dt.datetime(2025, 3, 1, 12, 0, 0, 123_700, tzinfo=dt.UTC)
    records = generate(sandbox.store, tenant, "withdrawals", 3, seed=1, start=start, spacing_s=0.5)
    first, last = records[0], records[-1]

    async def go() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with SmartEPIClient("http://smartepi.test/v1", KEY, account="t1", transport=transport) as c:
            since = start + dt.timedelta(microseconds=200)  # same millisecond as the first record, after it
            until = start + dt.timedelta(seconds=1, microseconds=-100)  # the last record: 100 µs later
            ids = [r["id"] async for r in c.withdrawals.list(createdSince=since, createdUntil=until)]
            return ids

    ids = asyncio.run(go())
    # since rounded down and until rounded up: both edge records are in (the window only grows)
    assert first.id in ids and last.id in ids
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2025-01-31T10:00:00Z", True),
        ("2025-01-31T10:00:00+00:00", True),
        ("2025-01-31T10:00:00.123Z", True),
        ("2025-01-31T10:00:00.123456Z", True),
        ("2025-01-31T10:00:00.1234567Z", False),
        ("2025-01-31", False),
        ("2025-01-31T10:00:00", False),  # naive
        ("2025-01-31T10:00:00-03:00", False),
        ("20250131T100000Z", False),
        ("2025-W05-5", False),
        ("2025-01-31T10:00Z", False),
    ],
)
def test_the_sandbox_parses_window_bounds_strictly(value: str, ok: bool) -> None:
    client = TestClient(make_app())
    response = client.get("/v1/withdrawals", params={"createdSince": value}, headers=H)
    assert (response.status_code == 200) is ok, response.text
    if not ok:
        assert response.status_code == 400


def test_millisecond_mode_refuses_microseconds() -> None:
    client = TestClient(make_app(digits=3))
    bad = client.get("/v1/withdrawals", params={"createdUntil": "2025-01-31T10:00:00.123456Z"}, headers=H)
    assert bad.status_code == 400
    good = client.get("/v1/withdrawals", params={"createdUntil": "2025-01-31T10:00:00.123Z"}, headers=H)
    assert good.status_code == 200
