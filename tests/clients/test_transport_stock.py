"""The stock transport (httpx's own, the default): proxies from the environment and the ``proxy``
setting, ``NO_PROXY``; the private httpx hooks taken away; happy eyeballs on both transports;
the response size cap on both."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sync.clients import httpx_hooks
from sync.clients.http import RequestLoop, default_transport
from sync.clients.retry import RetryPolicy
from sync.clients.transport import LeanTransport, StockTransport
from sync.engine.runtime import _transport as runtime_transport
from sync.errors import AmbiguousWrite, ConfigError, ResponseTooLarge
from sync.settings import SmartEPISettings

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


class Loop(RequestLoop):
    platform = "test"


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET itself with what it was asked: ``{"by": name, "target": request target}``.
    As a proxy it sees absolute targets (``http://host:port/path``); as an origin, paths."""

    server: Any

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host")))
        body = json.dumps({"by": self.server.name, "target": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def recorder(name: str) -> Iterator[Any]:
    """A tiny HTTP server (proxy or origin) in a thread; ``.url`` and ``.seen``."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.name, server.seen = name, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def get(base_url: str, path: str = "/things/1", **kw: Any) -> Any:
    async with Loop(base_url, account="a", retry=FAST, timeout=5, **kw) as client:
        return (await client.request("GET", path)).data


# --- proxies -------------------------------------------------------------------------------


def test_the_default_transport_is_the_stock_one() -> None:
    async def main() -> None:
        client = Loop("http://127.0.0.1:9", account="a")
        try:
            assert isinstance(client._transport, StockTransport)
        finally:
            await client.aclose()

    run(main())


def test_http_proxy_from_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    with recorder("proxy") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        # A host that does not resolve: only the proxy can answer for it.
        data = run(get("http://erp-api.invalid/v1"))
    assert data == {"by": "proxy", "target": "http://erp-api.invalid/v1/things/1"}
    assert proxy.seen == [("http://erp-api.invalid/v1/things/1", "erp-api.invalid")]


def test_the_proxy_setting_is_honoured_and_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with recorder("proxy") as proxy, recorder("env-proxy") as env_proxy:
        monkeypatch.setenv("HTTP_PROXY", env_proxy.url)
        settings = SmartEPISettings(base_url="http://127.0.0.1:1/v1", api_key="k", proxy=proxy.url)
        transport = runtime_transport(settings)  # what TenantRuntime.new_client builds
        assert isinstance(transport, StockTransport)
        data = run(get("http://erp-api.invalid/v1", transport=transport))
    assert data == {"by": "proxy", "target": "http://erp-api.invalid/v1/things/1"}
    assert len(proxy.seen) == 1 and env_proxy.seen == []


def test_no_proxy_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    with recorder("proxy") as proxy, recorder("origin") as origin:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = run(get(origin.url + "/v1"))
        proxied = run(get("http://erp-api.invalid/v1"))  # not in NO_PROXY: through the proxy
    assert direct == {"by": "origin", "target": "/v1/things/1"}
    assert origin.seen == [("/v1/things/1", origin.url.removeprefix("http://"))]
    assert proxied["by"] == "proxy" and len(proxy.seen) == 1


def test_lean_transport_refuses_a_proxy() -> None:
    with pytest.raises(ConfigError, match="cannot use a proxy"):
        default_transport(4, kind="lean", proxy="http://127.0.0.1:3128")
    with pytest.raises(ValueError, match="cannot use a proxy"):
        SmartEPISettings(
            base_url="https://x.example", api_key="k", transport="lean", proxy="http://p.example:3128"
        )


def test_proxy_credentials_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from sync.redact import scrub

    SmartEPISettings(
        base_url="https://x.example", api_key="k", proxy="http://user:Pr0xyPassw0rd@p.example:3128"
    )
    assert "Pr0xyPassw0rd" not in scrub("connect via http://user:Pr0xyPassw0rd@p.example:3128 failed")


# --- the private httpx hooks taken away ----------------------------------------------------


def test_without_the_private_httpx_hooks_the_clients_use_the_public_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sends: list[str] = []
    public_send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> httpx.Response:
        sends.append(str(request.url))
        return await public_send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)
    # (httpx's own send uses _transport_for_url itself: the hook is renamed away for us only)
    monkeypatch.setattr(httpx_hooks, "TRANSPORT_FOR_URL", "_gone_transport_for_url")
    monkeypatch.setattr(httpx_hooks, "URI_REFERENCE", "_gone_uri_reference")
    monkeypatch.setattr(httpx_hooks, "CONTENT", "_gone_content")
    assert not httpx_hooks.content_hook_available()
    assert httpx_hooks.plain_url_joiner(httpx.URL("http://a.example/v1")) is None

    with recorder("proxy") as proxy, recorder("origin") as origin:

        async def main() -> None:
            async with Loop(origin.url + "/v1", account="a", retry=FAST, timeout=5) as client:
                assert client._join is None
                assert "direct=False" in repr(client._transport)
                r = await client.request("GET", "/things/a b", params={"q": "é"})
                assert r.data == {"by": "origin", "target": "/v1/things/a%20b?q=%C3%A9"}
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            assert await get("http://erp-api.invalid/v1") == {
                "by": "proxy",
                "target": "http://erp-api.invalid/v1/things/1",
            }

        run(main())
    assert sends == [origin.url + "/v1/things/a%20b?q=%C3%A9", "http://erp-api.invalid/v1/things/1"]


def test_with_the_hooks_the_stock_transport_skips_client_send(monkeypatch: pytest.MonkeyPatch) -> None:
    sends: list[str] = []
    public_send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> httpx.Response:
        sends.append(str(request.url))
        return await public_send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)
    with recorder("origin") as origin:
        assert run(get(origin.url + "/v1"))["by"] == "origin"
    assert sends == []  # straight to the transport httpx picked


# --- happy eyeballs ------------------------------------------------------------------------


DEAD_IP = "127.0.0.2"  # loopback too (Linux routes 127/8 to lo)


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port on DEAD_IP whose connects hang (a listening socket with its accept queue full)."""
    srv = socket.socket()
    try:
        srv.bind((DEAD_IP, 0))
    except OSError:
        srv.close()
        pytest.skip(f"{DEAD_IP} is not a local address here")
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect((DEAD_IP, port))
            fillers.append(s)
        probe = socket.socket()
        probe.settimeout(1.0)
        try:
            probe.connect((DEAD_IP, port))
        except TimeoutError:
            pass  # hangs, as wanted
        else:
            pytest.skip("this kernel does not hold connects to a full accept queue")
        finally:
            probe.close()
        yield port
    finally:
        for s in fillers:
            s.close()
        srv.close()


@contextlib.asynccontextmanager
async def origin_server(
    reply: Callable[[bytes], bytes], port: int = 0
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A raw HTTP/1.1 server on 127.0.0.1: one request per connection, answered by ``reply(head)``."""
    heads: list[bytes] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            writer.write(reply(head))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", port)
    try:
        yield srv.sockets[0].getsockname()[1], heads
    finally:
        srv.close()


def ok_reply(head: bytes) -> bytes:
    head_ = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close"
    return head_ + b'\r\n\r\n{"ok": 1}'


def two_addresses(port: int) -> Callable[..., Awaitable[Any]]:
    """A ``loop.getaddrinfo`` for which ``api.erp.test`` is DEAD_IP (hangs) then 127.0.0.1."""

    async def fake_getaddrinfo(host: Any, port_: Any, *args: Any, **kw: Any) -> Any:
        assert host in ("api.erp.test", b"api.erp.test"), host
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (DEAD_IP, port)),
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
        ]

    return fake_getaddrinfo


@pytest.mark.parametrize("kind", ["stock", "lean"])
def test_connects_try_the_next_address_when_the_first_hangs(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """``api.erp.test`` resolves to an address whose connect hangs, then to a working one: the
    request succeeds after the happy-eyeballs delay, well inside the 20 s connect timeout."""

    async def main(port: int) -> None:
        async with origin_server(ok_reply, port) as (_, heads):
            loop = asyncio.get_running_loop()
            monkeypatch.setattr(loop, "getaddrinfo", two_addresses(port))
            transport = default_transport(4, kind=kind)  # type: ignore[arg-type]
            started = loop.time()
            async with Loop(f"http://api.erp.test:{port}", account="a", timeout=20, transport=transport) as c:
                r = await c.request("GET", "/x")
            assert r.data == {"ok": 1} and len(heads) == 1
            assert loop.time() - started < 10  # not the connect timeout

    with blackhole() as port:
        run(main(port))


def test_lean_without_happy_eyeballs_waits_for_the_hanging_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: with the staggered start off, the hanging first address takes the whole
    connect timeout (so the test above does test the stagger)."""

    async def main(port: int) -> None:
        async with origin_server(ok_reply, port):
            monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", two_addresses(port))
            transport = LeanTransport(happy_eyeballs_delay=None)
            async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, connect=1.5)) as c:
                with pytest.raises(httpx.ConnectTimeout):
                    await c.get(f"http://api.erp.test:{port}/x")

    with blackhole() as port:
        run(main(port))


# --- the response size cap -----------------------------------------------------------------

CAP = 1000


def big_length(head: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000


def big_chunked(head: bytes) -> bytes:
    chunk = b"%x\r\n%s\r\n" % (400, b"y" * 400)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 5 + b"0\r\n\r\n"


def big_until_close(head: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 5000


def small_enough(head: bytes) -> bytes:
    body = json.dumps({"pad": "p" * (CAP - 20)}).encode()
    assert len(body) <= CAP
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize("kind", ["stock", "lean"])
@pytest.mark.parametrize("reply", [big_length, big_chunked, big_until_close])
def test_an_answer_over_the_cap_fails_typed_and_is_not_retried(
    kind: str, reply: Callable[[bytes], bytes]
) -> None:
    async def main() -> None:
        async with origin_server(reply) as (port, heads):
            transport = default_transport(4, kind=kind, max_response_bytes=CAP)  # type: ignore[arg-type]
            async with Loop(
                f"http://127.0.0.1:{port}", account="a", retry=FAST, timeout=5, transport=transport
            ) as c:
                with pytest.raises(ResponseTooLarge) as caught:
                    await c.request("GET", "/big")
                assert len(heads) == 1  # not retried: the same answer would come back
                err = caught.value
                assert "max_response_bytes (1,000 bytes)" in str(err)
                assert "raise max_response_bytes" in str(err)  # what to do next
                assert err.platform == "test" and err.method == "GET"
                assert c.counters.snapshot() == {("GET", "/big", "too_large"): 1}
                with pytest.raises(AmbiguousWrite):  # a POST's answer too big: it may have been applied
                    await c.request("POST", "/big", json={})

    run(main())


@pytest.mark.parametrize("kind", ["stock", "lean"])
def test_an_answer_at_the_cap_is_read(kind: str) -> None:
    async def main() -> None:
        async with origin_server(small_enough) as (port, _):
            transport = default_transport(4, kind=kind, max_response_bytes=CAP)  # type: ignore[arg-type]
            async with Loop(f"http://127.0.0.1:{port}", account="a", timeout=5, transport=transport) as c:
                assert len((await c.request("GET", "/ok")).data["pad"]) == CAP - 20

    run(main())


def test_the_cap_setting_reaches_the_transport() -> None:
    s = SmartEPISettings(
        base_url="https://x.example", api_key="k", transport="lean", max_response_bytes=65536
    )
    transport = runtime_transport(s)
    assert isinstance(transport, LeanTransport) and transport._cap == 65536
    with pytest.raises(ValueError):
        SmartEPISettings(base_url="https://x.example", api_key="k", max_response_bytes=10)
