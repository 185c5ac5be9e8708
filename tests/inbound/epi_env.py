"""An in-process SmartEPI sandbox with employees and products, reached through ASGI (no sockets)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from pydantic import SecretStr

from sync.clients.smartepi.client import SmartEPIClient
from sync.sandbox.smartepi.app import SmartEPISandboxConfig, TenantConfig, create_app
from sync.sandbox.smartepi.generators import generate
from sync.state.store import StateStore

API_KEY = "sk_pull_test_key"


class EpiEnv:
    def __init__(
        self, webhook_url: str | None = None, secret: str | None = None, **webhook_options: Any
    ) -> None:
        from sync.sandbox.smartepi.webhooks import WebhookOptions

        config = SmartEPISandboxConfig(
            tenants=[
                TenantConfig(
                    api_key=SecretStr(API_KEY),
                    id="sandbox",
                    webhook_url=webhook_url,
                    webhook_secret=SecretStr(secret) if secret else None,
                )
            ],
            webhooks=WebhookOptions(**webhook_options),
        )
        self.app = create_app(config)
        self.sandbox = self.app.state.sandbox
        self.tenant = self.sandbox.store.tenants["sandbox"]
        store = self.sandbox.store
        self.employees = [
            store.create(
                self.tenant,
                "employees",
                {"name": f"Worker {i}", "identification": f"ID{i:04d}"},
                record_id=f"e-{i}",
            )
            for i in range(5)
        ]
        self.products = [
            store.create(self.tenant, "products", {"name": f"Glove {i}"}, record_id=f"p-{i}")
            for i in range(3)
        ]

    def bind_all(self, store: StateStore, tenant: str, *, skip: tuple[str, ...] = ()) -> None:
        for rec in self.employees:
            if rec.id not in skip:
                store.save_base(tenant, "smartepi", "employees", f"EMP-{rec.id}", rec.id, {})
        for rec in self.products:
            if rec.id not in skip:
                store.save_base(tenant, "smartepi", "products", f"SKU-{rec.id}", rec.id, {})

    def generate(
        self,
        kind: str,
        count: int,
        *,
        seed: int = 0,
        start: dt.datetime | None = None,
        spacing_s: float = 0.001,
    ) -> list[str]:
        records = generate(
            self.sandbox.store, self.tenant, kind, count, seed=seed, start=start, spacing_s=spacing_s
        )
        return [r.id for r in records]

    def client(self) -> SmartEPIClient:
        return SmartEPIClient(
            "http://smartepi.test/v1",
            API_KEY,
            account="pull-test",
            transport=httpx.ASGITransport(app=self.app),
        )
