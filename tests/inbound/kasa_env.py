"""An in-process SmartKasa sandbox with products, stock cards and till activity, reached through ASGI."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr

from sync.clients.smartkasa.client import SmartKasaClient
from sync.clients.smartkasa.config import SmartKasaSettings
from sync.sandbox.smartkasa import generators
from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec
from sync.state.store import StateStore

API_KEY = "kasa-pull-test-key"


class KasaEnv:
    def __init__(
        self,
        *,
        products: int = 4,
        receipts_per_page: int = 10,
        max_per_page: int | None = None,
        **knobs: Any,
    ) -> None:
        config = SmartKasaSandboxConfig(
            tenants=[TenantSpec(api_key=API_KEY, shops=2, terminals_per_shop=1)],
            receipts_per_page=receipts_per_page,
            max_per_page=max_per_page,
            **knobs,
        )
        self.requests: list[str] = []  # "GET /api/v1/pos/receipts", … as the client sent them
        self.app = create_app(config)
        self.sb = self.app.state.sandbox
        self.store = self.sb.store
        self.t = self.store.tenants[API_KEY]
        self.rng = random.Random(7)
        self.shops = sorted(self.t.tables["shops"])
        self.products = []
        for i in range(products):
            product = self.store.seed(
                self.t,
                "products",
                {
                    "title": f"Чай {i}",
                    "number": f"48200000000{i}",
                    "price": Decimal("10.50") + i,
                    "tax_group_id": 1,
                },
            )
            self.products.append(product["id"])
            for shop in self.shops:
                self.store.seed(
                    self.t,
                    "cards",
                    {
                        "product_id": product["id"],
                        "shop_id": shop,
                        "count": Decimal(50),
                        "counting_enabled": True,
                    },
                )

    def day(self, receipts_per_shift: int) -> list[str]:
        return [s["id"] for s in generators.day(self.store, self.t, self.rng, receipts_per_shift)]

    def open_shift(self, receipts: int) -> str:
        shift = generators.open_shift(self.store, self.t, self.rng)
        generators.sell(self.store, self.t, self.rng, shift["id"], receipts)
        return str(shift["id"])

    def close(self, shift_id: str) -> None:
        generators.close_shift(self.store, self.t, shift_id)

    def bind_products(self, store: StateStore, tenant: str) -> None:
        for pid in self.products:
            store.save_base(tenant, "smartkasa", "products", f"ERP-{pid[:8]}", pid, {})

    def client(self, per_page: int = 100) -> SmartKasaClient:
        settings = SmartKasaSettings(
            base_url="http://smartkasa.test",
            api_key=SecretStr(API_KEY),
            phone_number=SecretStr("380960000006"),
            password=SecretStr("123456789"),
            per_page=per_page,
        )
        return SmartKasaClient(settings, account="pull-test", transport=_Counting(self))


class _Counting(httpx.AsyncBaseTransport):
    """The sandbox through ASGI, noting each request's method and path."""

    def __init__(self, env: KasaEnv) -> None:
        self.env = env
        self.inner = httpx.ASGITransport(app=env.app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.env.requests.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)
