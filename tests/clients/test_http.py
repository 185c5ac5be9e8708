"""The shared request loop on httpx.MockTransport: retries, ambiguity, governor, counting."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from sync.clients.governor import InProcessGovernor, RateLimits
from sync.clients.http import RequestLoop, _plain_path, default_map_error
from sync.clients.retry import RetryPolicy
from sync.clients.sync_facade import Portal
from sync.errors import (
    AmbiguousWrite,
    BadRequest,
    ConnectFailed,
    Forbidden,
    NotFound,
    RateLimited,
    RequestTimeout,
    ServerError,
    TransportError,
    Unauthorized,
)


class Recorder:
    """A scripted transport: each entry is a Response or an exception to raise."""

    def __init__(self, *script):
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


class PenaltyLog(InProcessGovernor):
    def __init__(self):
        super().__init__(RateLimits(rate=1000, burst=1000, concurrency=4))
        self.penalties: list[float] = []

    async def penalize(self, seconds):
        self.penalties.append(seconds)
        await super().penalize(0)


def make(recorder, cls=RequestLoop, **kw):
    sleeps: list[float] = []

    async def fake_sleep(s):
        sleeps.append(s)

    kw.setdefault("retry", RetryPolicy(max_attempts=4, max_total_delay=100, base_delay=1, max_delay=8))
    loop = cls(
        "https://api.test/v1",
        account="acme",
        transport=httpx.MockTransport(recorder),
        sleep=fake_sleep,
        rng=lambda: 0.5,
        **kw,
    )
    return loop, sleeps


def run(coro):
    return asyncio.run(coro)


def ok(body=None, status=200, **headers):
    return httpx.Response(status, json=body if body is not None else {"data": {}}, headers=headers)


def test_get_returns_parsed_response_and_counts():
    rec = Recorder(ok({"data": {"id": "x"}}, ETag='"3"', **{"X-Request-Id": "req_1"}))

    async def go():
        loop, _ = make(rec)
        async with loop:
            r = await loop.request(
                "GET", "/things/{id}", path_params={"id": "a b/c"}, params={"q": "v", "z": None}
            )
            return r, loop.counters

    r, counters = run(go())
    assert r.status == 200 and r.data == {"data": {"id": "x"}} and r.etag == '"3"' and r.request_id == "req_1"
    assert rec.requests[0].url.raw_path == b"/v1/things/a%20b%2Fc?q=v"
    assert dict(rec.requests[0].url.params) == {"q": "v"}
    assert counters.snapshot() == {("GET", "/things/{id}", "200"): 1}
    assert counters.total == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_idempotent_methods_retry_5xx_and_transport_errors(method):
    rec = Recorder(httpx.Response(503), httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), ok())

    async def go():
        loop, sleeps = make(rec)
        async with loop:
            r = await loop.request(method, "/things")
            return r, sleeps, loop.counters.snapshot()

    r, sleeps, snap = run(go())
    assert r.status == 200 and len(rec.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]  # full jitter with rng=0.5: half of 1, 2, 4
    assert snap == {
        (method, "/things", "503"): 1,
        (method, "/things", "timeout"): 1,
        (method, "/things", "connect"): 1,
        (method, "/things", "200"): 1,
    }


def test_get_gives_up_after_max_attempts_with_typed_error():
    rec = Recorder(httpx.Response(500, json={"message": "boom"}))

    async def go():
        loop, _ = make(rec)
        async with loop:
            await loop.request("GET", "/things")

    with pytest.raises(ServerError) as info:
        run(go())
    assert len(rec.requests) == 4 and info.value.kind == "transient" and info.value.status == 500


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (httpx.ConnectError("refused"), ConnectFailed),
        (httpx.ConnectTimeout("slow"), RequestTimeout),
        (httpx.ReadTimeout("slow"), RequestTimeout),
        (httpx.RemoteProtocolError("eof"), TransportError),
    ],
)
def test_transport_errors_on_reads_end_as_transport_errors(step, error):
    rec = Recorder(step)

    async def go():
        loop, _ = make(rec)
        async with loop:
            await loop.request("GET", "/things")

    with pytest.raises(error) as info:
        run(go())
    assert not isinstance(info.value, AmbiguousWrite) and info.value.kind == "transient"


@pytest.mark.parametrize(
    "step",
    [
        httpx.Response(
            500, json={"type": "urn:x:internal", "detail": "boom"}, headers={"X-Request-Id": "r9"}
        ),
        httpx.Response(502, text="bad gateway"),
        httpx.ReadTimeout("slow"),
        httpx.ReadError("connection reset"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.Response(201, content=b'{"data": {"id": "x"'),  # truncated body
    ],
)
def test_post_is_never_resent_after_an_ambiguous_outcome(step):
    rec = Recorder(step, ok(status=201))

    async def go():
        loop, _ = make(rec)
        async with loop:
            await loop.request("POST", "/things", json={"name": "a"})

    with pytest.raises(AmbiguousWrite) as info:
        run(go())
    assert len(rec.requests) == 1
    assert info.value.kind == "ambiguous" and info.value.method == "POST"
    if isinstance(step, httpx.Response) and step.status_code == 500:
        assert isinstance(info.value.cause, ServerError) and info.value.request_id == "r9"


@pytest.mark.parametrize(
    "step", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("x")]
)
def test_post_retries_when_nothing_was_sent(step):
    rec = Recorder(step, ok(status=201))

    async def go():
        loop, _ = make(rec)
        async with loop:
            return await loop.request("POST", "/things", json={})

    assert run(go()).status == 201 and len(rec.requests) == 2


def test_post_marked_idempotent_is_retried():
    rec = Recorder(httpx.Response(503), ok())

    async def go():
        loop, _ = make(rec)
        async with loop:
            return await loop.request("POST", "/search", json={}, idempotent=True)

    assert run(go()).status == 200 and len(rec.requests) == 2


def test_429_on_post_is_retried_after_retry_after_and_penalizes_the_account():
    rec = Recorder(
        httpx.Response(429, json={"message": "Too Many Requests"}, headers={"Retry-After": "7"}),
        ok(status=201),
    )
    gov = PenaltyLog()

    async def go():
        loop, sleeps = make(rec, governor=gov)
        async with loop:
            r = await loop.request("POST", "/things", json={})
            return r, sleeps, loop.counters.snapshot()

    r, sleeps, snap = run(go())
    assert r.status == 201 and sleeps == [7.0] and gov.penalties == [7.0]
    assert snap[("POST", "/things", "429")] == 1


def test_429_without_retry_after_uses_backoff_then_raises_rate_limited():
    rec = Recorder(httpx.Response(429, json={"message": "Limit Exceeded"}))
    gov = PenaltyLog()

    async def go():
        loop, sleeps = make(rec, governor=gov)
        async with loop:
            try:
                await loop.request("GET", "/things")
            finally:
                # the throttle schedule (no Retry-After): 10 attempts, ceilings up to 30 s
                assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]

    with pytest.raises(RateLimited) as info:
        run(go())
    assert (
        gov.penalties == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0] and info.value.kind == "transient"
    )


def test_unauthorized_hook_retries_once():
    class Refreshing(RequestLoop):
        refreshed = 0

        async def auth_headers(self):
            return {"Authorization": f"token-{self.refreshed}"}

        async def handle_unauthorized(self, response):
            self.refreshed += 1
            return True

    rec = Recorder(httpx.Response(401, json={"message": "Unauthorized"}))

    async def go():
        loop, _ = make(rec, cls=Refreshing)
        async with loop:
            await loop.request("GET", "/things")

    with pytest.raises(Unauthorized):
        run(go())
    assert [r.headers["authorization"] for r in rec.requests] == ["token-0", "token-1"]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (410, NotFound),
        (418, BadRequest),
        (503, ServerError),
    ],
)
def test_default_map_error_by_family(status, cls):
    resp = httpx.Response(
        status, json={"message": "nope", "password": "hunter22"}, headers={"X-Request-Id": "r1"}
    )
    err = default_map_error("p", "GET", "https://x/y", resp)
    assert type(err) is cls and err.request_id == "r1" and err.body == {"message": "nope", "password": "***"}
    assert "nope" in str(err) and "hunter22" not in str(err)


def test_governor_caps_in_flight_requests():
    gate = InProcessGovernor(RateLimits(rate=1000, burst=1000, concurrency=3))
    state = {"now": 0, "max": 0}

    async def handler(request):
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return httpx.Response(200, json={})

    async def go():
        loop = RequestLoop(
            "https://api.test", account="a", transport=httpx.MockTransport(handler), governor=gate
        )
        async with loop:
            await asyncio.gather(*(loop.request("GET", "/x") for _ in range(20)))

    run(go())
    assert state["max"] == 3 and gate.in_flight == 0


def test_portal_runs_async_client_from_sync_code():
    rec = Recorder(ok({"data": [1]}))

    async def make_loop():
        return RequestLoop("https://api.test", account="a", transport=httpx.MockTransport(rec))

    async def numbers(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    with Portal() as portal:
        loop = portal.call(make_loop)
        blocking = portal.wrap(loop)
        assert blocking.request("GET", "/x").data == {"data": [1]}
        assert list(portal.iterate(numbers(3))) == [0, 1, 2]
        assert portal.call(lambda: threading.current_thread().name) == "erpsync-portal"
        with pytest.raises(NotFound):
            portal.call(_raise_not_found)
        blocking.aclose()


async def _raise_not_found():
    raise NotFound("gone", status=404)


@pytest.mark.parametrize(
    "base",
    ["https://api.test/v1", "http://127.0.0.1:8080", "https://api.test/base%20path/v2/", "http://[::1]:9/x"],
)
@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/things", None),
        ("/things/a%2Fb%20c", {"q": "x y", "n": 1, "flag": True, "u": "é&=?"}),
        ("/things/{odd}", {"empty": ""}),
        ("/a/./b", None),  # dot segments: httpx normalizes them (slow path)
        ("/a/../b", {"k": "v"}),
        ("things", None),  # relative: joined with one slash
        ("//evil.test/x", None),
        ("/x?inline=1", None),
        ("/x?inline=1", {"params": "win"}),
        ("/v1.2/file.json", {"limit": 10}),
        ("/ünïcode/[brackets]", None),
        ("https://other.test/abs", {"a": "1"}),
    ],
)
def test_request_urls_are_exactly_what_httpx_would_build(base, path, query):
    client = RequestLoop(base, account="a", transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    expected = httpx.URL(client._absolute(path), params=query or None)
    built = client._url(path, query)
    assert str(built) == str(expected)
    assert built.raw_path == expected.raw_path and built.netloc == expected.netloc
    assert built == expected
    if path in ("/things", "/things/a%2Fb%20c", "/v1.2/file.json"):
        assert _plain_path(path) and client._join is not None  # the fast path was taken


def _garbled() -> httpx.Response:
    """An answer whose body does not decode as it says (gzip header, plain bytes): the server
    received and answered the request, so a write behind it may have been applied."""
    return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"{not gzip"))


def test_an_undecodable_answer_to_a_get_is_retried_then_a_transport_error():
    rec = Recorder(*(_garbled() for _ in range(4)))

    async def go():
        loop, _ = make(rec)
        async with loop:
            await loop.request("GET", "/things")

    with pytest.raises(TransportError) as caught:
        run(go())
    assert "DecodingError" in str(caught.value)
    assert len(rec.requests) == 4  # retried like any answer lost on the way back


def test_an_undecodable_answer_to_a_post_is_ambiguous():
    rec = Recorder(_garbled())

    async def go():
        loop, _ = make(rec)
        async with loop:
            await loop.request("POST", "/things", json={"name": "x"})

    with pytest.raises(AmbiguousWrite):
        run(go())
    assert len(rec.requests) == 1  # never resent blindly
