"""SmartKasa natural-key lookups (issue 14 item 4): documented filters only, hits confirmed locally.

``products.find_by_number`` and ``categories.find`` against the in-process SmartKasa
sandbox, exact and partial ``number`` matching, and behind a proxy that strips every
filter (an API that ignores them): never a record whose natural key differs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sync.clients.smartkasa.client import SmartKasaClient
from sync.clients.smartkasa.config import SmartKasaSettings
from sync.errors import ContractViolation
from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec

API_KEY = "kasa-lookup-test-key"
DOCUMENTED = {
    "/api/v1/inventory/products": {
        "q",
        "number",
        "shop_id",
        "subgroup_id",
        "category_id",
        "page",
        "per_page",
    },
    "/api/v1/inventory/categories": {"id", "title", "parent_id", "color_id", "shop_ids", "page", "per_page"},
}


class Proxy(httpx.ASGITransport):
    """The sandbox over ASGI; records list queries and can drop every filter (``ignore``)."""

    def __init__(self, app: Any, *, ignore: bool) -> None:
        super().__init__(app=app)
        self.ignore = ignore
        self.queries: list[tuple[str, set[str]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path in DOCUMENTED:
            self.queries.append((request.url.path, set(request.url.params)))
            if self.ignore:
                kept = [(k, v) for k, v in request.url.params.multi_items() if k in ("page", "per_page")]
                request.url = request.url.copy_with(params=kept)
        return await super().handle_async_request(request)


def run(mode: str, body: Any) -> Any:
    number_match = "partial" if mode == "partial" else "exact"
    app = create_app(
        SmartKasaSandboxConfig(tenants=[TenantSpec(api_key=API_KEY, shops=1)], number_match=number_match)
    )
    sb = app.state.sandbox
    tenant = sb.store.tenants[API_KEY]
    made: dict[str, str] = {}
    for title, number in [("Tea", "4820 01"), ("Tea 2", "482001"), ("Cup", "AB-1"), ("Cup", "4820011")]:
        made[number] = sb.store.seed(tenant, "products", {"title": title, "number": number})["id"]
    root = sb.store.seed(tenant, "categories", {"title": "Drinks", "parent_id": None})["id"]
    other = sb.store.seed(tenant, "categories", {"title": "Food", "parent_id": None})["id"]
    for title, parent in [("Hot  tea", root), ("hot tea", other), ("Hot tea cups", root), ("  ", root)]:
        made[f"{title}/{parent}"] = sb.store.seed(
            tenant, "categories", {"title": title, "parent_id": parent}
        )["id"]
    made["root"], made["other"] = root, other
    settings = SmartKasaSettings(
        base_url="http://smartkasa.test",
        api_key=SecretStr(API_KEY),
        phone_number=SecretStr("380960000006"),
        password=SecretStr("123456789"),
        per_page=2,
    )
    proxy = Proxy(app, ignore=mode == "ignore")

    async def go() -> Any:
        async with SmartKasaClient(settings, account="lookups", transport=proxy) as client:
            return await body(client, made)

    return asyncio.run(go()), proxy, made


@pytest.mark.parametrize("mode", ["exact", "partial", "ignore"])
def test_lookups_confirm_the_natural_key_whatever_the_server_filtered(mode: str) -> None:
    async def body(c: SmartKasaClient, made: dict[str, str]) -> Any:
        return (
            sorted(p.id for p in await c.products.find_by_number(" 4820 01")),
            [p.id for p in await c.products.find_by_number(" AB-1 ")],
            await c.products.find_by_number("4820"),
            await c.products.find_by_number("  "),
            [x.id for x in await c.categories.find("HOT TEA", made["root"])],
            [x.id for x in await c.categories.find("hot tea", made["other"])],
            await c.categories.find("Hot", made["root"]),
            [x.id for x in await c.categories.find(" drinks ")],
            await c.categories.find("   ", made["root"]),  # a blank key matches nothing
        )

    got, proxy, made = run(mode, body)
    tea, ab, none_partial, blank, hot_root, hot_other, prefix, drinks, blank_title = got
    assert tea == [made["4820 01"]]  # "482001" is another barcode; "4820 01" folds to itself
    assert ab == [made["AB-1"]]
    assert none_partial == [] and blank == [] and prefix == []
    assert hot_root == [made[f"Hot  tea/{made['root']}"]]
    assert hot_other == [made[f"hot tea/{made['other']}"]]
    assert drinks == [made["root"]] and blank_title == []
    for path, params in proxy.queries:
        assert params <= DOCUMENTED[path], (path, params)


def test_an_unreadable_record_in_a_lookup_is_a_typed_error() -> None:
    async def body(c: SmartKasaClient, made: dict[str, str]) -> Any:
        with pytest.raises(ContractViolation, match="does not parse"):
            await c.products.find_by_number("4820 01")

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"number": "4820 01"}], "meta": {"total_count": 1}})

    app = create_app(SmartKasaSandboxConfig(tenants=[TenantSpec(api_key=API_KEY, shops=1)]))

    class Broken(httpx.ASGITransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and request.url.path == "/api/v1/inventory/products":
                return broken(request)
            return await super().handle_async_request(request)

    settings = SmartKasaSettings(
        base_url="http://smartkasa.test",
        api_key=SecretStr(API_KEY),
        phone_number=SecretStr("380960000006"),
        password=SecretStr("123456789"),
    )

    async def go() -> None:
        async with SmartKasaClient(settings, account="lookups", transport=Broken(app=app)) as client:
            await body(client, {})

    asyncio.run(go())
