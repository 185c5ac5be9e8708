"""Audit finding 7: certificate ``expiresAt`` has no documented type (§5.5). A server that keeps
it as a date-time answers "2026-01-31T00:00:00Z" for the "2026-01-31" erpsync sends; the
adapter reads a midnight-UTC value back as the date so the child converges (no PUT every run)."""

from __future__ import annotations

import asyncio

import httpx

from sync.clients.smartepi import SmartEPIClient
from sync.engine.adapters.smartepi import SmartEPIAdapter

PRODUCT = {
    "id": "p1",
    "name": "Glove",
    "sizes": [{"id": "s1", "name": "M"}],
    "certificates": [
        {"id": "c1", "number": "CA-1", "expiresAt": "2026-01-31T00:00:00Z"},
        {"id": "c2", "number": "CA-2", "expiresAt": "2026-02-28T00:00:00.000+00:00"},
        {"id": "c3", "number": "CA-3", "expiresAt": "2026-03-31"},
        {"id": "c4", "number": "CA-4", "expiresAt": "2026-04-30T13:00:00Z"},  # not a date: kept
    ],
}


def test_midnight_utc_certificate_dates_read_back_as_dates() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [PRODUCT], "cursor": None})

    async def go() -> list[object]:
        client = SmartEPIClient(
            "https://epi.test/v1", "sk_children_key", account="t", transport=httpx.MockTransport(handler)
        )
        adapter = SmartEPIAdapter(client)
        try:
            return [r async for r in adapter.list_remote("products")]
        finally:
            await adapter.aclose()

    (remote,) = asyncio.run(go())
    certs = remote.children["certificates"]  # type: ignore[attr-defined]
    assert [c["expiresAt"] for c in certs] == [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30T13:00:00Z",
    ]
    assert all("id" not in c for c in certs)
