"""Audit finding 3: the webhook signature recipe is undocumented (contract §4), so the receiver
accepts a ``v1`` made with either reading of the key (with or without ``whsec_``), in hex or in
base64, whichever reading the tenant's setting prefers; a wrong secret is still refused."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from inbound_helpers import SECRET, dumps, event, settings_with, tenant_settings

from sync.sandbox.smartepi.webhooks import SECRET_PREFIX, signature_header
from sync.state.store import StateStore
from sync.web.webhooks import make_webhook_router

NOW = 1_750_000_000


def receiver(store: StateStore, tenant_id: str, *, prefer_prefix: bool) -> Any:
    conf = tenant_settings(secrets=[SECRET])
    assert conf.smartepi is not None
    conf.smartepi.signature_key_includes_prefix = prefer_prefix
    settings = settings_with(tenant_id, conf)
    app = FastAPI()
    app.include_router(
        make_webhook_router(lambda: settings, lambda: store, lambda t, ids: None, clock=lambda: NOW)
    )
    return TestClient(app)


def simulator_header(secret: str, body: bytes, *, key_mode: str, encoding: str) -> str:
    """What a simulator sends: the sandbox emitter's recipe with its ``key_mode`` and ``encoding``."""
    key = secret[len(SECRET_PREFIX) :] if key_mode == "strip_prefix" else secret
    return signature_header(key, NOW - 5, body, encoding)


def post_signed(client: Any, tenant_id: str, body: bytes, header: str) -> Any:
    return client.post(
        f"/webhooks/smartepi/{tenant_id}",
        content=body,
        headers={"Content-Type": "application/json", "X-SmartEPI-Signature": header},
    )


@pytest.mark.parametrize("prefer_prefix", [True, False])
@pytest.mark.parametrize("key_mode", ["full", "strip_prefix"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_every_key_reading_and_encoding_is_accepted(
    store: StateStore, tenant_id: str, prefer_prefix: bool, key_mode: str, encoding: str
) -> None:
    client = receiver(store, tenant_id, prefer_prefix=prefer_prefix)
    body = dumps(event(f"w-{key_mode}-{encoding}-{prefer_prefix}"))
    header = simulator_header(SECRET, body, key_mode=key_mode, encoding=encoding)
    response = post_signed(client, tenant_id, body, header)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "stored"


@pytest.mark.parametrize("key_mode", ["full", "strip_prefix"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_a_wrong_secret_is_still_refused(
    store: StateStore, tenant_id: str, key_mode: str, encoding: str
) -> None:
    client = receiver(store, tenant_id, prefer_prefix=True)
    body = dumps(event("w-forged"))
    for wrong in ("whsec_inbound_test_secret_0123456788", SECRET[len(SECRET_PREFIX) :] + "x"):
        header = simulator_header(wrong, body, key_mode=key_mode, encoding=encoding)
        response = post_signed(client, tenant_id, body, header)
        assert response.status_code == 401, response.text
        assert SECRET not in response.text
