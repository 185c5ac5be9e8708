"""Behaviour of the shared fault-injection middleware and its request statistics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from sync.errors import ConfigError
from sync.sandbox.faults import FaultConfig, FaultInjector, RequestStats, decision, load_fault_file


def _account_of(scope: dict) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-account":
            return str(value.decode())
    return None


def _rate_limited(retry_after: float | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    return 429, headers, b'{"message":"Too Many Requests"}'


def _server_error() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return 500, [(b"content-type", b"application/json")], b'{"error":"boom"}'


def _make(config: FaultConfig | None = None) -> tuple[Any, FaultInjector, list[dict[str, Any]]]:
    """A tiny app whose writes land in a list, wrapped by a fault injector."""
    committed: list[dict[str, Any]] = []
    inner = FastAPI()

    @inner.post("/v1/items")
    async def create(request: Request) -> dict[str, Any]:
        item = {"id": len(committed) + 1, "body": (await request.body()).decode()}
        committed.append(item)
        return item

    @inner.get("/v1/items/{item_id}")
    async def get(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    injector = FaultInjector(
        "test",
        config or FaultConfig(),
        account_of=_account_of,
        rate_limited=_rate_limited,
        server_error=_server_error,
    )
    inner.include_router(injector.admin_router())
    return injector.wrap(inner), injector, committed


def _client(config: FaultConfig | None = None) -> tuple[TestClient, FaultInjector, list[dict[str, Any]]]:
    app, injector, committed = _make(config)
    return TestClient(app), injector, committed


def test_no_faults_passes_requests_through_and_counts_route_templates() -> None:
    client, injector, committed = _client()
    assert client.post("/v1/items", content=b"hello", headers={"x-account": "a"}).json()["body"] == "hello"
    assert client.get("/v1/items/7", headers={"x-account": "a"}).status_code == 200
    assert client.get("/v1/items/8").status_code == 200
    snap = injector.stats.snapshot()
    assert snap["routes"] == {"POST /v1/items": {"200": 1}, "GET /v1/items/{item_id}": {"200": 2}}
    assert snap["total"] == 3
    assert snap["by_account"]["a"]["total"] == 2
    assert sum(snap["per_second"].values()) == 3
    assert len(committed) == 1


def test_quota_token_bucket_rejects_beyond_burst_per_account_and_records_429() -> None:
    client, injector, _ = _client(FaultConfig(quota_rps=0.001, quota_burst=3))
    codes = [client.get("/v1/items/1", headers={"x-account": "a"}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    # Another account has its own bucket; requests without an account are never metered.
    assert client.get("/v1/items/1", headers={"x-account": "b"}).status_code == 200
    assert all(client.get("/v1/items/1").status_code == 200 for _ in range(5))
    snap = injector.stats.snapshot()
    assert snap["routes"]["GET /v1/items/{item_id}"]["429"] == 2
    assert snap["by_account"]["a"]["rate_limited"] == 2
    assert snap["by_account"]["b"]["rate_limited"] == 0


def test_quota_refills_over_time() -> None:
    client, _, _ = _client(FaultConfig(quota_rps=50, quota_burst=1))
    assert client.get("/v1/items/1", headers={"x-account": "a"}).status_code == 200
    assert client.get("/v1/items/1", headers={"x-account": "a"}).status_code == 429
    time.sleep(0.05)
    assert client.get("/v1/items/1", headers={"x-account": "a"}).status_code == 200


def test_random_429_with_and_without_retry_after() -> None:
    client, injector, committed = _client(FaultConfig(p_429=1.0))
    response = client.post("/v1/items", content=b"x")
    assert response.status_code == 429 and "retry-after" not in response.headers
    assert committed == []
    injector.config = FaultConfig(p_429=1.0, retry_after=2.5)
    response = client.get("/v1/items/1")
    assert response.status_code == 429 and response.headers["retry-after"] == "2.5"
    assert injector.stats.snapshot()["routes"]["GET /v1/items/{item_id}"] == {"429": 1}


def test_5xx_happens_before_the_handler_and_only_on_write_methods() -> None:
    client, injector, committed = _client(FaultConfig(p_5xx=1.0))
    assert client.post("/v1/items", content=b"x").status_code == 500
    assert committed == []
    assert client.get("/v1/items/1").status_code == 200
    assert injector.stats.snapshot()["routes"]["POST /v1/items"] == {"500": 1}


def test_path_regex_restricts_random_faults() -> None:
    client, _, committed = _client(FaultConfig(p_5xx=1.0, p_429=1.0, path_regex="^/v1/other"))
    assert client.post("/v1/items", content=b"x").status_code == 200
    assert len(committed) == 1


def test_decisions_are_reproducible_and_independent_of_interleaving() -> None:
    bodies = [f"item-{i}".encode() for i in range(40)]

    def outcomes(order: list[bytes]) -> dict[bytes, list[int]]:
        client, _, _ = _client(FaultConfig(seed=7, p_5xx=0.5))
        seen: dict[bytes, list[int]] = {}
        for body in order:
            seen.setdefault(body, []).append(client.post("/v1/items", content=body).status_code)
        return seen

    forward = outcomes(bodies + bodies)
    backward = outcomes(list(reversed(bodies)) + list(reversed(bodies)))
    assert forward == backward
    statuses = [code for codes in forward.values() for code in codes]
    assert 0 < statuses.count(500) < len(statuses)
    # The second identical request is a different occurrence: its fate is drawn anew.
    assert any(codes[0] != codes[1] for codes in forward.values())
    # A different seed gives different fates.
    client, _, _ = _client(FaultConfig(seed=8, p_5xx=0.5))
    other = {body: [client.post("/v1/items", content=body).status_code] for body in bodies}
    assert other != {body: codes[:1] for body, codes in forward.items()}


def test_decision_is_a_stable_unit_interval_hash() -> None:
    values = [decision(1, "x", "POST", "/p", str(i).encode(), "0") for i in range(200)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert values == [decision(1, "x", "POST", "/p", str(i).encode(), "0") for i in range(200)]
    assert 0.3 < sum(values) / len(values) < 0.7


def test_latency_and_jitter_delay_every_request() -> None:
    client, _, _ = _client(FaultConfig(latency_ms=60, jitter_ms=20))
    started = time.perf_counter()
    assert client.get("/v1/items/1").status_code == 200
    elapsed = time.perf_counter() - started
    assert 0.06 <= elapsed < 1.0


def test_request_body_is_replayed_to_the_handler_when_hashing() -> None:
    client, _, committed = _client(FaultConfig(p_5xx=0.000001))
    client.post("/v1/items", content=b"a" * 100_000)
    assert committed[0]["body"] == "a" * 100_000


def test_should_expire_token_is_seeded_per_account() -> None:
    _, never, _ = _make(FaultConfig(p_expire_token=0.0))
    assert not any(never.should_expire_token("a") for _ in range(20))
    _, always, _ = _make(FaultConfig(p_expire_token=1.0))
    assert all(always.should_expire_token("a") for _ in range(5))
    _, one, _ = _make(FaultConfig(seed=3, p_expire_token=0.5))
    _, two, _ = _make(FaultConfig(seed=3, p_expire_token=0.5))
    first = [one.should_expire_token("a") for _ in range(30)]
    two.should_expire_token("b")  # other accounts do not shift the sequence
    assert first == [two.should_expire_token("a") for _ in range(30)]
    assert True in first and False in first


def test_admin_router_reads_and_replaces_faults_and_stats_without_being_counted() -> None:
    client, injector, _ = _client()
    assert client.get("/_admin/faults").json()["p_5xx"] == 0.0
    assert client.put("/_admin/faults", json={"p_5xx": 1.0, "seed": 4}).status_code == 200
    assert injector.config.p_5xx == 1.0 and injector.config.seed == 4
    assert client.post("/v1/items", content=b"x").status_code == 500
    assert client.put("/_admin/faults", json={"p_5xx": 2}).status_code == 422
    assert client.put("/_admin/faults", json={"bogus": 1}).status_code == 422
    assert client.get("/_admin/stats").json()["total"] == 1
    assert client.delete("/_admin/stats").json()["total"] == 0
    assert client.get("/_admin/stats").json()["routes"] == {}


def test_request_stats_snapshot_is_a_copy_and_thread_safe() -> None:
    stats = RequestStats()

    def hammer() -> None:
        for _ in range(500):
            stats.record("GET /x", "200", "acct", now=1000.0)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert snap["total"] == 2000
    assert snap["per_second"] == {"1000": 2000}
    assert snap["by_account"]["acct"]["per_second"] == {"1000": 2000}
    snap["routes"]["GET /x"]["200"] = 0
    assert stats.snapshot()["routes"]["GET /x"]["200"] == 2000
    stats.reset()
    assert stats.snapshot()["total"] == 0


def test_load_fault_file_yaml_and_json(tmp_path: Any) -> None:
    yml = tmp_path / "faults.yaml"
    yml.write_text("smartepi:\n  p_5xx: 0.1\n  seed: 3\nsmartkasa:\n  quota_rps: 5\n")
    loaded = load_fault_file(yml)
    assert loaded["smartepi"].p_5xx == 0.1 and loaded["smartepi"].seed == 3
    assert loaded["smartkasa"].quota_rps == 5
    js = tmp_path / "faults.json"
    js.write_text(json.dumps({"smartkasa": {"p_drop_after_commit": 0.2, "write_methods": ["post"]}}))
    loaded = load_fault_file(js)
    assert set(loaded) == {"smartkasa"} and loaded["smartkasa"].write_methods == ["POST"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("other:\n  p_5xx: 0.1\n", "other: unknown platform"),
        ("smartepi:\n  p_5xx: 3\n", "smartepi.p_5xx"),
        ("smartepi:\n  typo: 1\n", "smartepi.typo"),
        ("smartepi:\n  path_regex: '('\n", "smartepi.path_regex"),
        ("- 1\n", "top level"),
        ("smartepi: [unclosed\n", "cannot read"),
    ],
)
def test_load_fault_file_rejects_bad_files_naming_the_path(tmp_path: Any, text: str, needle: str) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_fault_file(path)
    assert needle in str(info.value)


@contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_drop_after_commit_really_drops_the_connection_on_a_real_server() -> None:
    app, injector, committed = _make(FaultConfig(p_drop_after_commit=1.0))
    with _uvicorn(app) as url, httpx.Client(base_url=url, timeout=5) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post("/v1/items", content=b"payload")
        assert [item["body"] for item in committed] == ["payload"]
        # Reads are not write methods: they are answered normally on a fresh connection.
        assert client.get("/v1/items/1").status_code == 200
    assert injector.stats.snapshot()["routes"]["POST /v1/items"] == {"dropped": 1}
