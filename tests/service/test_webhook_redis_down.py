"""Issue #14 item 10: with Redis down, a SmartEPI webhook is stored and answered 2xx at once.

The sender gives up after 10 s; before the fix the enqueue's publish and result-backend
retries held the answer for ~19 s. The real app (``create_app``) is wired to a Redis URL on a
closed port: the answer comes in well under 3 s and the event waits in the inbox for the relay.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import service_config
from sqlalchemy import select

from sync.core.signature import sign
from sync.settings import Settings
from sync.state.models import InboundEvent
from sync.state.store import StateStore
from sync.web import create_app

pytestmark = pytest.mark.services
SECRET = "whsec_redis_down_test_secret_0123456789"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def test_webhook_with_redis_down_answers_2xx_within_3s_and_keeps_the_event(
    tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPSYNC_NAMESPACE", f"erpsync-test-{int(time.time())}")
    data = service_config(f"redis://127.0.0.1:{closed_port()}/0", state_url, ["acme"])
    data["tenants"]["acme"]["smartepi"]["webhook_secrets"] = [SECRET]
    settings = Settings(**data)
    store = StateStore(settings.state_url)
    store.purge_tenant("acme")
    http = TestClient(create_app(settings, store=store))
    for n in range(2):
        body = json.dumps({"id": f"evt-down-{n}", "type": "transaction.created", "data": {}}).encode()
        t0 = time.monotonic()
        r = http.post(
            "/webhooks/smartepi/acme",
            content=body,
            headers={"X-SmartEPI-Signature": sign(body, SECRET, timestamp=int(time.time()))},
        )
        elapsed = time.monotonic() - t0
        assert 200 <= r.status_code < 300, r.text
        assert elapsed < 3.0, f"answered after {elapsed:.1f} s"
    with store.session() as s:
        rows = s.exec(select(InboundEvent).where(InboundEvent.tenant == "acme")).scalars().all()
        assert sorted(r.event_id for r in rows) == ["evt-down-0", "evt-down-1"]
        assert {r.status for r in rows} == {"pending"}  # the relay will enqueue them
