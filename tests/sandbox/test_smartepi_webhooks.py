"""SmartEPI sandbox: signed webhook deliveries into a real receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sync.sandbox.smartepi import create_app, sign, signature_header, verify_signature
from sync.sandbox.smartepi.webhooks import WebhookEmitter, WebhookOptions

SECRET = "whsec_test_secret"
FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2}


class Receiver:
    """Records every POST; answers 500 to the first ``fail_first`` and 400 to bad signatures."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.verify = True
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("X-SmartEPI-Signature", "")
                valid = verify_signature(SECRET, header, body)
                with outer.lock:
                    failing = len(outer.received) < outer.fail_first
                    status = 500 if failing else 400 if outer.verify and not valid else 204
                    outer.received.append({"body": body, "header": header, "valid": valid, "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def accepted_events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.received if r["status"] == 204]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()
    rec.thread.join(5)


@pytest.fixture
def sandbox_client() -> Iterator[TestClient]:
    app = create_app()
    with TestClient(app) as client:  # runs the lifespan: the emitter stops on exit
        yield client


def _setup(client: TestClient, url: str, options: dict[str, Any] | None = None) -> None:
    assert client.put("/_admin/webhooks/options", json={**FAST, **(options or {})}).status_code == 200
    tenant = {"api_key": "sk_t", "id": "t", "webhook_url": url, "webhook_secret": SECRET}
    assert client.post("/_admin/tenants", json=tenant).status_code == 201
    seed = client.post("/_admin/tenants/t/seed/employees", json=[{"name": "Ana"}, {"name": "Bia"}])
    assert seed.status_code == 201
    assert client.post("/_admin/tenants/t/seed/products", json=[{"name": "Boot"}]).status_code == 201


def _generate(client: TestClient, kind: str, count: int) -> list[str]:
    made = client.post("/_admin/tenants/t/generate", json={"kind": kind, "count": count, "seed": 3})
    assert made.status_code == 201
    ids: list[str] = made.json()["ids"]
    return ids


def _flush(client: TestClient) -> dict[str, Any]:
    assert client.post("/_admin/webhooks/flush", params={"timeout": 10}).json() == {"idle": True}
    status: dict[str, Any] = client.get("/_admin/webhooks").json()
    return status


def test_signature_recipe_is_hmac_sha256_hex_over_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(SECRET.encode(), b"1750000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1750000000, body) == expected
    header = signature_header(SECRET, 1750000000, body)
    assert header == f"t=1750000000,v1={expected}"
    assert verify_signature(SECRET, header, body, now=1750000100)
    assert not verify_signature(SECRET, header, body, now=1750000301)  # outside 300 s
    assert not verify_signature("whsec_other", header, body, now=1750000000)
    assert not verify_signature(SECRET, header, body + b" ", now=1750000000)
    rotated = f"t=1750000000,v1={'0' * 64},v1={expected}"
    assert verify_signature(SECRET, rotated, body, now=1750000000)


def test_generated_transactions_are_delivered_signed_with_documented_envelope(
    sandbox_client: TestClient, receiver: Receiver
) -> None:
    _setup(sandbox_client, receiver.url)
    ids = _generate(sandbox_client, "withdrawals", 3) + _generate(sandbox_client, "training-records", 1)
    status = _flush(sandbox_client)
    events = receiver.accepted_events()
    assert sorted(e["data"]["id"] for e in events) == sorted(ids)
    listed = {
        w["id"]: w
        for w in sandbox_client.get("/v1/withdrawals", headers={"Authorization": "Bearer sk_t"}).json()[
            "data"
        ]
    }
    for event in events:
        assert event["id"] == f"evt_{event['type'].replace('.', '_')}_{event['data']['id']}"
        assert isinstance(event["createdAt"], int)
        if event["type"] == "withdrawal.created":
            assert event["data"] == listed[event["data"]["id"]]  # exactly the list DTO
    assert {e["type"] for e in events} == {"withdrawal.created", "training_record.created"}
    assert all(entry["ok"] and entry["attempt"] == 1 for entry in status["log"])
    assert "whsec" not in json.dumps(status)


def test_failed_deliveries_are_retried_with_backoff_until_accepted(
    sandbox_client: TestClient, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    _setup(sandbox_client, receiver.url)
    [wid] = _generate(sandbox_client, "returns", 1)
    status = _flush(sandbox_client)
    assert [e["data"]["id"] for e in receiver.accepted_events()] == [wid]
    assert [(e["attempt"], e["status"]) for e in status["log"]] == [(1, 500), (2, 500), (3, 204)]
    assert status["failures"] == {receiver.url: 0}


def test_gives_up_after_max_attempts_and_tracks_failures(
    sandbox_client: TestClient, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    _setup(sandbox_client, receiver.url, {"max_attempts": 2})
    _generate(sandbox_client, "exchanges", 1)
    status = _flush(sandbox_client)
    assert [e["attempt"] for e in status["log"]] == [1, 2] and status["log"][-1]["gave_up"]
    assert status["failures"] == {receiver.url: 2}


def test_unreachable_endpoint_is_logged_as_error_and_retried(sandbox_client: TestClient) -> None:
    _setup(sandbox_client, "http://127.0.0.1:9/none", {"max_attempts": 2})
    _generate(sandbox_client, "withdrawals", 1)
    status = _flush(sandbox_client)
    assert [e["status"] for e in status["log"]] == ["error", "error"]


def test_duplicates_reordering_forged_and_stale_are_seeded_and_a_good_receiver_gets_all(
    sandbox_client: TestClient, receiver: Receiver
) -> None:
    options = {
        "seed": 11,
        "p_duplicate": 0.5,
        "reorder": True,
        "p_bad_signature": 0.3,
        "p_stale_timestamp": 0.3,
    }
    _setup(sandbox_client, receiver.url, {**options, "max_attempts": 20})
    ids = _generate(sandbox_client, "withdrawals", 12)
    log = _flush(sandbox_client)["log"]
    accepted = receiver.accepted_events()
    assert {e["data"]["id"] for e in accepted} == set(ids)
    assert len(accepted) > len(ids)  # duplicates arrived, same event id
    assert any(entry["duplicate"] for entry in log)
    assert any(entry["forged"] for entry in log) and any(entry["stale"] for entry in log)
    assert all(not entry["ok"] for entry in log if entry["forged"] or entry["stale"])
    first_seen = list(dict.fromkeys(e["data"]["id"] for e in accepted))
    assert first_seen != ids  # shuffled
    # The same seed gives the same misbehaviour on a fresh emitter.
    replay = _replay(options, receiver.url, log)
    assert replay == [
        (e["event_id"], e["duplicate"], e["forged"], e["stale"]) for e in log if e["attempt"] == 1
    ]


def _replay(options: dict[str, Any], url: str, log: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    emitter = WebhookEmitter(WebhookOptions(**FAST, **options, max_attempts=1))
    try:
        seen: dict[str, int] = {}
        events = []
        for entry in log:
            if entry["attempt"] == 1 and entry["event_id"] not in seen:
                seen[entry["event_id"]] = 1
        # Re-enqueue in the original creation order: the ids end in a counter.
        for event_id in sorted(seen, key=lambda e: int(e.rsplit("-", 1)[1])):
            events.append({"id": event_id, "type": "withdrawal.created", "createdAt": 0, "data": {}})
        emitter.enqueue("t", url, SECRET, events)
        assert emitter.flush(10)
        return [
            (e["event_id"], e["duplicate"], e["forged"], e["stale"])
            for e in emitter.status()["log"]
            if e["attempt"] == 1
        ]
    finally:
        emitter.stop()


def test_held_deliveries_wait_for_the_deliver_endpoint(
    sandbox_client: TestClient, receiver: Receiver
) -> None:
    _setup(sandbox_client, receiver.url, {"auto_deliver": False})
    _generate(sandbox_client, "withdrawals", 2)
    status = _flush(sandbox_client)
    assert status["held"] == 2 and receiver.received == []
    assert sandbox_client.post("/_admin/webhooks/deliver").json() == {"released": 2}
    _flush(sandbox_client)
    assert len(receiver.accepted_events()) == 2


def test_test_event_is_signed_and_never_counts_toward_failures(
    sandbox_client: TestClient, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    _setup(sandbox_client, receiver.url, {"max_attempts": 1})
    assert sandbox_client.post("/_admin/tenants/t/webhooks/test").status_code == 200
    status = _flush(sandbox_client)
    assert status["log"][0]["test"] and status["log"][0]["status"] == 500
    assert status["failures"] == {}
    sandbox_client.post("/_admin/tenants/t/webhooks/test")
    _flush(sandbox_client)
    assert receiver.accepted_events()[0]["type"] == "webhook.test"


def test_subscriptions_filter_event_types(sandbox_client: TestClient, receiver: Receiver) -> None:
    _setup(sandbox_client, receiver.url)
    sandbox_client.patch("/_admin/tenants/t", json={"webhook_events": ["return.created"]})
    _generate(sandbox_client, "withdrawals", 2)
    [rid] = _generate(sandbox_client, "returns", 1)
    _flush(sandbox_client)
    assert [e["data"]["id"] for e in receiver.accepted_events()] == [rid]


def test_strip_prefix_key_mode_signs_with_the_bare_secret(receiver: Receiver) -> None:
    receiver.verify = False
    emitter = WebhookEmitter(WebhookOptions(**FAST, key_mode="strip_prefix"))
    try:
        emitter.enqueue(
            "t", receiver.url, SECRET, [{"id": "evt_x", "type": "webhook.test", "createdAt": 0, "data": {}}]
        )
        assert emitter.flush(10)
    finally:
        emitter.stop()
    [got] = receiver.received
    assert verify_signature(SECRET.removeprefix("whsec_"), got["header"], got["body"])
    assert not got["valid"]


@pytest.mark.parametrize("resign", [True, False])
def test_resign_on_retry_off_resends_the_first_timestamp(
    sandbox_client: TestClient, receiver: Receiver, resign: bool
) -> None:
    """Audit finding 21: a sender may sign once and resend the same header on every retry."""
    receiver.fail_first = 2
    _setup(sandbox_client, receiver.url, {"backoff_s": 0.6, "backoff_max_s": 0.6, "resign_on_retry": resign})
    _generate(sandbox_client, "returns", 1)
    _flush(sandbox_client)
    stamps = [r["header"].split(",")[0] for r in receiver.received]
    assert len(stamps) == 3 and all(r["valid"] for r in receiver.received)
    assert (len(set(stamps)) == 1) is (not resign)


def test_base64_encoding_signs_the_digest_in_base64(receiver: Receiver) -> None:
    import base64

    receiver.verify = False
    emitter = WebhookEmitter(WebhookOptions(**FAST, encoding="base64"))
    try:
        emitter.enqueue(
            "t", receiver.url, SECRET, [{"id": "evt_y", "type": "webhook.test", "createdAt": 0, "data": {}}]
        )
        assert emitter.flush(10)
    finally:
        emitter.stop()
    [got] = receiver.received
    t, v1 = (part.split("=", 1)[1] for part in got["header"].split(","))
    assert base64.b64decode(v1) == bytes.fromhex(sign(SECRET, int(t), got["body"]))
