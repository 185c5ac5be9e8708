"""The web app: POST /erp/events (auth, shape, size, throttled enqueue) and the health endpoints."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import TOKENS, service_config

from sync.engine.throttle import Admission
from sync.settings import Settings
from sync.state.store import StateStore
from sync.web import create_app
from sync.web.events import MAX_BODY

pytestmark = pytest.mark.services


class FakeSubmit:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []
        self.fail = fail

    def __call__(self, tenant: str, entity: str, keys: Sequence[str]) -> Admission:
        if self.fail:
            raise ConnectionError("redis://:hunter2@nowhere")
        self.calls.append((tenant, entity, list(keys)))
        return Admission(send={"task-1": (list(keys), 0.0)}, task_ids={k: "task-1" for k in keys})


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(**service_config(redis_url, f"sqlite:///{tmp_path}/state.db", ["acme", "globex"]))


@pytest.fixture
def store(settings: Settings) -> StateStore:
    return StateStore(settings.state_url)


def client(settings: Settings, store: StateStore, submit: Any = None, **kw: Any) -> TestClient:
    return TestClient(create_app(settings, submit=submit or FakeSubmit(), store=store, **kw))


def auth(tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[tenant]}"}


EVENT = {"tenant": "acme", "entity": "employees", "keys": ["E1", "E2", "E1"], "op": "update"}


def test_accepted_event_is_submitted_once_per_key(settings: Settings, store: StateStore) -> None:
    submit = FakeSubmit()
    r = client(settings, store, submit).post("/erp/events", json=EVENT, headers=auth())
    assert r.status_code == 202
    assert r.json() == {"task_id": "task-1", "task_ids": ["task-1"], "accepted": 2, "coalesced": 0}
    assert submit.calls == [("acme", "employees", ["E1", "E2"])]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-000000000000"},
        {"Authorization": TOKENS["acme"]},
        {"Authorization": f"Bearer {TOKENS['globex']}"},  # another tenant's token
    ],
)
def test_bad_or_missing_token_is_401(settings: Settings, store: StateStore, headers: dict[str, str]) -> None:
    submit = FakeSubmit()
    r = client(settings, store, submit).post("/erp/events", json=EVENT, headers=headers)
    assert r.status_code == 401 and submit.calls == []


def test_unknown_tenant_is_401_not_404(settings: Settings, store: StateStore) -> None:
    r = client(settings, store).post("/erp/events", json={**EVENT, "tenant": "nobody"}, headers=auth())
    assert r.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"text"',
        b'{"entity": "employees", "keys": ["1"]}',
    ],
)
def test_unparseable_or_tenantless_body_is_400(settings: Settings, store: StateStore, body: bytes) -> None:
    r = client(settings, store).post("/erp/events", content=body, headers=auth())
    assert r.status_code == 400


@pytest.mark.parametrize(
    "change",
    [
        {"keys": []},
        {"keys": "E1"},
        {"keys": [1, 2]},
        {"keys": [""]},
        {"entity": ""},
        {"entity": "a b"},
        {"op": "explode"},
        {"extra": True},
        {"keys": [f"k{i}" for i in range(1001)]},
    ],
)
def test_bad_shape_is_400_with_problems(
    settings: Settings, store: StateStore, change: dict[str, Any]
) -> None:
    submit = FakeSubmit()
    r = client(settings, store, submit).post("/erp/events", json={**EVENT, **change}, headers=auth())
    assert r.status_code == 400, r.text
    assert r.json()["problems"] and submit.calls == []


@pytest.mark.parametrize("depth", [100_000, 2_000, 33])
def test_deep_nesting_without_a_token_is_401_and_with_one_400_never_500(
    settings: Settings, store: StateStore, depth: int
) -> None:
    """Issue #14 item 13: the token is checked before the body is parsed; nesting is capped."""
    body = b'{"tenant": "acme", "keys": ' + b"[" * depth + b"]" * depth + b"}"
    http = TestClient(create_app(settings, submit=FakeSubmit(), store=store), raise_server_exceptions=False)
    plain = {"Content-Type": "application/json"}
    assert http.post("/erp/events", content=body, headers=plain).status_code == 401
    r = http.post("/erp/events", content=body, headers={**auth(), **plain})
    assert r.status_code == 400 and "nested deeper" in r.json()["error"]


def test_brackets_inside_strings_do_not_count_as_nesting(settings: Settings, store: StateStore) -> None:
    submit = FakeSubmit()
    r = client(settings, store, submit).post(
        "/erp/events", json={**EVENT, "keys": ["[" * 200, '{\\"' * 50]}, headers=auth()
    )
    assert r.status_code == 202 and len(submit.calls[0][2]) == 2


def test_oversize_body_without_a_token_is_401_unread(settings: Settings, store: StateStore) -> None:
    r = client(settings, store).post(
        "/erp/events", content=b" " * (MAX_BODY + 1), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401


def test_oversize_body_is_413(settings: Settings, store: StateStore) -> None:
    big = {**EVENT, "keys": ["x" * 250] * 1100}
    r = client(settings, store).post("/erp/events", json=big, headers=auth())
    assert r.status_code == 413
    r = client(settings, store).post(
        "/erp/events", content=b" " * (MAX_BODY + 1), headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_queue_down_is_503_without_leaking(
    settings: Settings, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    from sync.redact import register_secret

    register_secret("hunter2")
    with caplog.at_level(logging.ERROR):
        r = client(settings, store, FakeSubmit(fail=True)).post("/erp/events", json=EVENT, headers=auth())
    assert r.status_code == 503 and "hunter2" not in r.text
    assert TOKENS["acme"] not in caplog.text


def test_real_submit_throttles_on_redis(
    settings: Settings, store: StateStore, namespace: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPSYNC_NAMESPACE", namespace)
    http = TestClient(create_app(settings, store=store))  # the real submit: throttle + Celery
    first = http.post("/erp/events", json=EVENT, headers=auth()).json()
    again = http.post("/erp/events", json={**EVENT, "keys": ["E2", "E3"]}, headers=auth()).json()
    assert first["coalesced"] == 0 and first["task_id"]
    assert again["coalesced"] == 1 and first["task_id"] in again["task_ids"]
    assert redis_client.llen(f"{namespace}:events") == 2  # two sync_keys messages: {E1,E2} and {E3}


def test_health_live_and_ready(settings: Settings, store: StateStore) -> None:
    http = client(settings, store)
    assert http.get("/health/live").json() == {"status": "ok"}
    r = http.get("/health/ready")
    assert r.status_code == 200 and r.json()["checks"] == {"state_db": "ok", "redis": "ok"}


def test_ready_is_503_when_redis_is_down(settings: Settings, store: StateStore) -> None:
    import redis

    dead = redis.Redis.from_url("redis://:s3cret-pass@127.0.0.1:9/0", socket_connect_timeout=0.5)
    r = client(settings, store, redis=dead).get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["redis"].startswith("fail:") and "s3cret" not in r.text
