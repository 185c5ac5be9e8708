"""The webhook receiver on a bare FastAPI app: verification before state, inbox, duplicates, limits."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from inbound_helpers import OLD_SECRET, SECRET, dumps, event, settings_with, tenant_settings
from sqlalchemy import func, select

from sync.core.signature import sign
from sync.settings import Settings
from sync.state.models import InboundEvent
from sync.state.store import StateStore
from sync.web.webhooks import make_webhook_router

NOW = 1_750_000_000


class Harness:
    def __init__(self, store: StateStore, tenant_id: str, settings: Settings, **kw: Any) -> None:
        self.store = store
        self.tenant = tenant_id
        self.enqueued: list[tuple[str, list[int]]] = []
        self.enqueue_error: Exception | None = None
        app = FastAPI()
        app.include_router(
            make_webhook_router(lambda: settings, lambda: store, self.on_stored, clock=lambda: NOW, **kw)
        )
        self.client = TestClient(app)

    def on_stored(self, tenant: str, ids: list[int]) -> None:
        if self.enqueue_error is not None:
            raise self.enqueue_error
        self.enqueued.append((tenant, ids))

    def post(self, body: bytes, header: str | None, tenant: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["X-SmartEPI-Signature"] = header
        return self.client.post(f"/webhooks/smartepi/{tenant or self.tenant}", content=body, headers=headers)

    def inbox_count(self) -> int:
        with self.store.session() as s:
            stmt = select(func.count()).select_from(InboundEvent).where(InboundEvent.tenant == self.tenant)
            return int(s.execute(stmt).scalar_one())


@pytest.fixture
def hx(store: StateStore, tenant_id: str) -> Harness:
    return Harness(store, tenant_id, settings_with(tenant_id, tenant_settings(secrets=[SECRET, OLD_SECRET])))


def test_valid_event_is_stored_then_answered_and_enqueued(hx: Harness) -> None:
    body = dumps(event("w-1"))
    response = hx.post(body, sign(body, SECRET, timestamp=NOW - 30))
    assert response.status_code == 200 and response.json()["message"] == "stored"
    assert hx.inbox_count() == 1
    assert len(hx.enqueued) == 1 and hx.enqueued[0][0] == hx.tenant
    again = hx.post(body, sign(body, SECRET, timestamp=NOW))
    assert again.status_code == 200 and again.json()["message"] == "duplicate"
    assert hx.inbox_count() == 1 and len(hx.enqueued) == 1


def test_rotation_old_secret_still_accepted(hx: Harness) -> None:
    body = dumps(event("w-2"))
    assert hx.post(body, sign(body, OLD_SECRET, timestamp=NOW)).status_code == 200


@pytest.mark.parametrize(
    ("make_header", "status"),
    [
        (lambda body: sign(body, "whsec_forged_secret_000000", timestamp=NOW), 401),
        (lambda body: sign(body, SECRET, timestamp=NOW - 301), 401),
        (lambda body: sign(body, SECRET, timestamp=NOW + 301), 401),
        (lambda body: sign(body + b" ", SECRET, timestamp=NOW), 401),
        (lambda body: None, 400),
        (lambda body: "t=oops", 400),
    ],
)
def test_rejections_touch_no_state(
    hx: Harness, make_header: Any, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    body = dumps(event("w-3"))
    with caplog.at_level(logging.DEBUG):
        response = hx.post(body, make_header(body))
    assert response.status_code == status
    assert hx.inbox_count() == 0 and hx.enqueued == []
    for text in (response.text, caplog.text):
        assert SECRET not in text and OLD_SECRET not in text


def test_body_cap(store: StateStore, tenant_id: str) -> None:
    hx = Harness(store, tenant_id, settings_with(tenant_id, tenant_settings()), max_body_bytes=1024)
    body = dumps({**event("w-4"), "pad": "x" * 2000})
    assert hx.post(body, sign(body, SECRET, timestamp=NOW)).status_code == 413

    def chunks() -> Any:  # no Content-Length: counted while streaming
        yield body[:1000]
        yield body[1000:]

    response = hx.client.post(
        f"/webhooks/smartepi/{tenant_id}",
        content=chunks(),
        headers={"X-SmartEPI-Signature": sign(body, SECRET, timestamp=NOW)},
    )
    assert response.status_code == 413
    assert hx.inbox_count() == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1,2]",
        b'{"type":"withdrawal.created"}',
        b'{"id":"evt","type":7}',
        b'{"id":"e","type":"x","n":NaN}',
    ],
)
def test_signed_but_invalid_json_is_400(hx: Harness, payload: bytes) -> None:
    assert hx.post(payload, sign(payload, SECRET, timestamp=NOW)).status_code == 400
    assert hx.inbox_count() == 0


def test_unknown_tenant_or_no_secret_answers_like_a_wrong_signature(
    store: StateStore, tenant_id: str
) -> None:
    """Issue #14 item 13: 404 vs 400/401 told which tenants exist; now all three answer alike."""
    hx = Harness(store, tenant_id, settings_with(tenant_id, tenant_settings(secrets=[])))
    known = Harness(store, "known" + tenant_id, settings_with("known" + tenant_id, tenant_settings()))
    body = dumps(event("w-5"))
    header = sign(body, "whsec_not-the-secret", timestamp=NOW)
    no_secret = hx.post(body, header)
    unknown = hx.post(body, header, tenant="nobody")
    wrong = known.post(body, header)
    assert no_secret.status_code == unknown.status_code == wrong.status_code == 401
    assert no_secret.json() == unknown.json() == wrong.json()
    unsigned = [h.post(body, None, tenant=t) for h, t in ((hx, None), (hx, "nobody"), (known, None))]
    assert {r.status_code for r in unsigned} == {400} and len({r.text for r in unsigned}) == 1
    assert hx.inbox_count() == 0 and known.inbox_count() == 0


def test_enqueue_failure_still_acknowledges(hx: Harness) -> None:
    hx.enqueue_error = ConnectionError("redis is down")
    body = dumps(event("w-6"))
    assert hx.post(body, sign(body, SECRET, timestamp=NOW)).status_code == 200
    assert hx.inbox_count() == 1  # the relay will enqueue it


def test_real_clock_default(store: StateStore, tenant_id: str) -> None:
    app = FastAPI()
    settings = settings_with(tenant_id, tenant_settings())
    app.include_router(make_webhook_router(lambda: settings, lambda: store, lambda t, ids: None))
    body = dumps(event("w-7"))
    client = TestClient(app)
    ok = client.post(
        f"/webhooks/smartepi/{tenant_id}",
        content=body,
        headers={"X-SmartEPI-Signature": sign(body, SECRET, timestamp=int(time.time()))},
    )
    assert ok.status_code == 200
