"""Helpers of the inbound tests: tenant settings, event builders, a restartable server thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import uvicorn

from sync.settings import Settings, TenantSettings
from sync.state.store import StateStore

SECRET = "whsec_inbound_test_secret_0123456789"
OLD_SECRET = "whsec_inbound_old_secret_9876543210"


def tenant_settings(
    *,
    secrets: list[str] | None = None,
    epi_url: str = "http://127.0.0.1:9",
    kasa_url: str | None = None,
    sink: dict[str, Any] | None = None,
    shops: dict[str, int] | None = None,
) -> TenantSettings:
    data: dict[str, Any] = {
        "erp": {"kind": "sql", "url": "sqlite://"},
        "mappings": ["mappings/none.yaml"],
        "smartepi": {
            "base_url": epi_url,
            "api_key": "sk_inbound_test_key",
            "webhook_secrets": [SECRET] if secrets is None else secrets,
        },
    }
    if kasa_url is not None:
        data["smartkasa"] = {
            "base_url": kasa_url,
            "api_key": "kasa-inbound-key",
            "phone": "380960000006",
            "password": "123456789",
            "shops": shops or {},
        }
    if sink is not None:
        data["sink"] = sink
    return TenantSettings.model_validate(data)


def settings_with(tenant_id: str, tenant: TenantSettings) -> Settings:
    return Settings(tenants={tenant_id: tenant})


def tx(remote_id: str, employee: str = "e-1", product: str = "p-1", **extra: Any) -> dict[str, Any]:
    return {
        "id": remote_id,
        "employeeId": employee,
        "productId": product,
        "quantity": 2,
        "withdrawalStatus": "SUCCESS",
        "createdAt": "2025-06-01T10:00:00Z",
        **extra,
    }


def event(remote_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"evt_withdrawal_created_{remote_id}",
        "type": "withdrawal.created",
        "createdAt": 1_750_000_000,
        "data": tx(remote_id, **extra),
    }


def bind(
    store: StateStore, tenant: str, entity: str, remote_id: str, erp_key: str, platform: str = "smartepi"
) -> None:
    store.save_base(tenant, platform, entity, erp_key, remote_id, {})


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A uvicorn server on 127.0.0.1 in a thread; ``stop`` and ``start`` again on the same port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
        self.server = self.thread = None
