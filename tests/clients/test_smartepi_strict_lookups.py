"""Audit findings 10, 12 and 16: lookups that do not depend on undocumented server behaviour.

- 10: the employees ``identification`` filter is only inferred (§3.1): when it finds nothing or
  is refused (400), the lookup falls back to the full listing compared with
  ``fold_identification`` ("123.456.789-00" ≡ "12345678900");
- 12: whether soft-deleted records appear in lists is undocumented (§2.6): items marked
  deleted are left out of ``list`` (so never adopted nor counted as duplicates);
- 16: whether ``GET /access-groups/:id`` exists is undocumented (§3.7): the client never asks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sync.clients.smartepi import SmartEPIClient
from sync.errors import ContractViolation
from sync.sandbox.smartepi.app import SmartEPISandboxConfig, TenantConfig, create_app

KEY = "sk_lookup_strict_key_0001"


def sandbox(mode: str) -> Any:
    config = SmartEPISandboxConfig(
        tenants=[TenantConfig(api_key=SecretStr(KEY), id="t1")], identification_search=mode
    )
    app = create_app(config)
    store = app.state.sandbox.store
    tenant = store.tenants["t1"]
    for i in range(3):
        store.create(tenant, "employees", {"name": f"Other {i}", "identification": f"999.000.000-0{i}"})
    wanted = store.create(tenant, "employees", {"name": "Maria", "identification": "123.456.789-00"})
    return app, wanted.id


def client_for(transport: httpx.AsyncBaseTransport) -> SmartEPIClient:
    return SmartEPIClient("http://smartepi.test/v1", KEY, account="t1", transport=transport)


@pytest.mark.parametrize("mode", ["folded", "exact_text", "reject"])
def test_identification_lookup_falls_back_to_the_full_listing(mode: str) -> None:
    app, wanted = sandbox(mode)

    async def go() -> tuple[list[str], list[str], list[str]]:
        async with client_for(httpx.ASGITransport(app=app)) as c:
            direct = await c.employees.find_by_identification("12345678900")
            by_key = await c.employees.find_by_key({"identification": "123 456 789 00"})
            nobody = await c.employees.find_by_identification("000.000.000-00")
            return [r["id"] for r in direct], [r["id"] for r in by_key], [r["id"] for r in nobody]

    direct, by_key, nobody = asyncio.run(go())
    assert direct == [wanted] and by_key == [wanted] and nobody == []


def test_items_marked_deleted_are_left_out_of_lists() -> None:
    items = [
        {"id": "s1", "name": "Welding", "deleted": True},
        {"id": "s2", "name": "Welding", "deletedAt": "2025-01-01T00:00:00Z"},
        {"id": "s3", "name": "Welding", "isDeleted": "true"},
        {"id": "s4", "name": "Welding", "deleted": False, "deletedAt": None, "isDeleted": "false"},
        {"id": "s5", "name": "Painting"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": items, "cursor": None})

    async def go() -> tuple[list[str], list[str], int]:
        async with client_for(httpx.MockTransport(handler)) as c:
            listed = [r["id"] async for r in c.sectors.list()]
            found = [r["id"] for r in await c.sectors.find_by_name("welding")]
            raw = sum([len(page) async for page in c.sectors.pages()])
            return listed, found, raw

    listed, found, raw = asyncio.run(go())
    assert listed == ["s4", "s5"]
    assert found == ["s4"]  # one live match: adopted, not "several" (ambiguous)
    assert raw == len(items)  # pages stay raw


def test_access_groups_are_never_got_by_id() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"data": [{"id": "ag1", "name": "All"}], "cursor": None})

    async def go() -> list[str]:
        async with client_for(httpx.MockTransport(handler)) as c:
            with pytest.raises(ContractViolation):
                await c.access_groups.get("ag1")
            assert sent == []
            return [r["id"] async for r in c.access_groups.list()]

    assert asyncio.run(go()) == ["ag1"]


@pytest.mark.parametrize("semantics", ["exact", "none"])
def test_name_lookup_does_not_depend_on_prefix_semantics(semantics: str) -> None:
    """Audit finding 11: revision A is silent on the ``name`` filter; a server that matches the
    whole name (or finds nothing by it) must still let a 409's lookup find the record."""
    records = [{"id": f"s{i}", "name": f"Other {i}"} for i in range(3)] + [
        {"id": "s9", "name": "Welding  Shop"}
    ]
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.params.get("name")
        asked.append(name)
        if name is None:
            rows = records
        elif semantics == "exact":
            rows = [r for r in records if r["name"].casefold() == name.casefold()]
        else:
            rows = []
        return httpx.Response(200, json={"data": rows, "cursor": None})

    async def go() -> list[str]:
        async with client_for(httpx.MockTransport(handler)) as c:
            return [r["id"] for r in await c.sectors.find_by_key({"name": "welding shop"})]

    found = asyncio.run(go())
    assert found == ["s9"]
    assert asked[:2] == ["welding", "welding shop"]


def test_a_trailing_empty_page_ends_the_list() -> None:
    """Audit finding 15: a DynamoDB-like server returns a cursor after an exactly full last page,
    then an empty page with ``cursor: null``; the client reads everything once and stops."""
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key=SecretStr(KEY), id="t1")], paging="dynamo")
    app = create_app(config)
    store = app.state.sandbox.store
    for i in range(20):
        store.create(store.tenants["t1"], "sectors", {"name": f"Sector {i:02d}"})

    async def go() -> tuple[list[int], int]:
        async with client_for(httpx.ASGITransport(app=app)) as c:
            sizes = [len(page) async for page in c.sectors.pages(limit=10)]
            names = [r async for r in c.sectors.list(limit=10)]
            return sizes, len(names)

    sizes, count = asyncio.run(go())
    assert sizes == [10, 10, 0] and count == 20
