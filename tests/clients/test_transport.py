"""LeanTransport (the clients' opt-in ``transport: lean``) against scripted raw HTTP/1.1 servers."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.clients.http import RequestLoop, default_transport
from sync.clients.retry import RetryPolicy
from sync.clients.transport import LeanTransport, StockTransport
from sync.errors import AmbiguousWrite, ConnectFailed

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += (await reader.readexactly(size + 2))[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


def answer(status: int = 200, body: bytes = b"", *headers: str, length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} X", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.url = ""

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    srv = await asyncio.start_server(server._on_connection, "127.0.0.1", 0, ssl=ssl_context)
    port = srv.sockets[0].getsockname()[1]
    server.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        srv.close()


def keep_alive(reply: Callable[[str, dict[str, str], bytes], bytes], server_box: list[Server]) -> Handler:
    """A handler answering every request on the connection with ``reply(...)``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            server_box[0].requests.append(request)
            writer.write(reply(*request))
            await writer.drain()

    return handler


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def client_for(url: str, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=LeanTransport(**kw), timeout=5)


def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given():
    async def main() -> None:
        box: list[Server] = []
        handler = keep_alive(
            lambda line, h, b: answer(200, b'{"ok": true}', "Content-Type: application/json"), box
        )
        async with serve(handler) as server:
            box.append(server)
            async with await client_for(server.url) as client:
                r1 = await client.get("/a/b", params={"q": "x y", "n": 1}, headers={"X-Test": "1"})
                r2 = await client.post("/c", json={"k": "v"})
            assert r1.status_code == 200 and r1.json() == {"ok": True}
            assert r1.http_version == "HTTP/1.1" and r1.reason_phrase == "X"
            assert r2.json() == {"ok": True}
            assert server.connections == 1
            (line1, h1, _), (line2, h2, body2) = server.requests
            assert line1 == "GET /a/b?q=x+y&n=1 HTTP/1.1"
            assert h1["x-test"] == "1" and h1["host"] == server.url.removeprefix("http://")
            assert line2 == "POST /c HTTP/1.1" and body2 == b'{"k":"v"}'
            assert h2["content-length"] == str(len(body2))

    run(main())


def test_chunked_response_split_across_writes_with_extensions_and_trailers():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            parts = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
                b"\r\n5;ext=1\r\nhel",
                b"lo\r\n",
                b"6\r\n world\r\n0\r\nX-Trailer: t\r\n",
                b"\r\n",
            ]
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)

    async def main() -> None:
        async with serve(handler) as server, await client_for(server.url) as client:
            assert (await client.get("/")).content == b"hello world"
            assert (await client.get("/")).content == b"hello world"
            assert server.connections == 1

    run(main())


def test_body_until_close_and_http10_and_connection_close_end_the_connection():
    replies = [
        b"HTTP/1.1 200 OK\r\n\r\nto the end",  # no length: runs to the close
        answer(200, b"ten", "Connection: close"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(replies.pop(0))
        await writer.drain()

    async def main() -> None:
        async with serve(handler) as server, await client_for(server.url) as client:
            assert (await client.get("/")).content == b"to the end"
            assert (await client.get("/")).content == b"ten"
            assert (await client.get("/")).content == b"old"
            assert server.connections == 3

    run(main())


def test_head_204_304_and_interim_answers_have_no_body():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _, _ = await read_request(reader)
            if line.startswith("HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            elif "/204" in line:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif "/304" in line:
                writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 103 Early\r\nLink: x\r\n\r\n")
                writer.write(answer(201, b"made"))
            await writer.drain()

    async def main() -> None:
        async with serve(handler) as server, await client_for(server.url) as client:
            head = await client.head("/")
            assert head.status_code == 200 and head.content == b""
            assert (await client.get("/204")).status_code == 204
            assert (await client.get("/304")).content == b""
            made = await client.post("/x", content=b"data")
            assert made.status_code == 201 and made.content == b"made"
            assert server.connections == 1

    run(main())


def test_gzip_body_is_decoded_by_httpx():
    packed = gzip.compress(b'{"a": 1}')

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(200, packed, "Content-Encoding: gzip"))
        await writer.drain()

    async def main() -> None:
        async with serve(handler) as server, await client_for(server.url) as client:
            response = await client.get("/")
            assert response.json() == {"a": 1}

    run(main())


def test_streamed_request_body_is_sent_chunked():
    box: list[Server] = []

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one ", b"", b"two ", b"three"):
            yield part

    async def main() -> None:
        async with serve(keep_alive(lambda line, h, body: answer(200, body), box)) as server:
            box.append(server)
            async with await client_for(server.url) as client:
                response = await client.post("/", content=chunks())
            assert response.content == b"one two three"
            assert server.requests[0][1]["transfer-encoding"] == "chunked"

    run(main())


def test_read_timeout_closes_the_connection():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _, _ = await read_request(reader)
        if "/slow" in line:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")  # then silence
            await writer.drain()
            await asyncio.sleep(5)

    async def main() -> None:
        async with serve(handler) as server:
            transport = LeanTransport()
            async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=0.2) as client:
                with pytest.raises(httpx.ReadTimeout) as caught:
                    await client.get("/slow")
                assert caught.value.request.url.path == "/slow"
                assert transport.open_connections == 0

    run(main())


def test_a_slow_but_steady_answer_is_not_a_read_timeout():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"steady":
            await asyncio.sleep(0.08)
            writer.write(bytes([byte]))
            await writer.drain()

    async def main() -> None:
        async with serve(handler) as server:
            transport = LeanTransport()
            async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=0.2) as client:
                assert (await client.get("/")).content == b"steady"

    run(main())


def test_connect_errors_and_connect_timeout():
    async def main() -> None:
        async with serve(keep_alive(lambda *a: b"", [])) as server:
            url = server.url
        # The server is closed: nothing listens on that port any more.
        async with httpx.AsyncClient(transport=LeanTransport(), timeout=1) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(url + "/")

        class Hanging(LeanTransport):
            async def _connect(self, loop: Any, origin: Any, timeout: float | None) -> Any:
                async def never(*a: Any, **k: Any) -> Any:
                    await asyncio.sleep(10)

                loop.create_connection = never
                try:
                    return await super()._connect(loop, origin, timeout)
                finally:
                    del loop.create_connection

        async with httpx.AsyncClient(transport=Hanging(), timeout=0.1) as client:
            with pytest.raises(httpx.ConnectTimeout):
                await client.get("http://127.0.0.1:9/")

    run(main())


def test_pool_timeout_and_waiting_for_a_free_connection():
    async def main() -> None:
        gate = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                line, _, _ = await read_request(reader)
                if "/hold" in line:
                    await gate.wait()
                writer.write(answer(200, b"ok"))
                await writer.drain()

        async with serve(handler) as server:
            transport = LeanTransport(max_connections=1)
            timeout = httpx.Timeout(5, pool=0.1)
            async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=timeout) as client:
                held = asyncio.ensure_future(client.get("/hold"))
                await asyncio.sleep(0.05)
                with pytest.raises(httpx.PoolTimeout):
                    await client.get("/")
                waiting = asyncio.ensure_future(client.get("/after"))
                await asyncio.sleep(0.05)
                gate.set()
                assert (await held).content == b"ok"
                assert (await waiting).content == b"ok"
                assert server.connections == 1

    run(main())


def test_write_timeout_when_the_server_does_not_read():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with serve(handler) as server:
            timeout = httpx.Timeout(5, write=0.2)
            async with httpx.AsyncClient(
                base_url=server.url, transport=LeanTransport(), timeout=timeout
            ) as c:
                with pytest.raises(httpx.WriteTimeout):
                    await c.post("/", content=b"x" * (64 * 1024 * 1024))

    run(main())


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"", httpx.RemoteProtocolError),  # closed without an answer
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", httpx.RemoteProtocolError),  # cut body
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Le", httpx.RemoteProtocolError),  # cut head
        (b"SPDY/9 200 OK\r\n\r\n", httpx.RemoteProtocolError),  # not HTTP/1.x
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
    ],
)
def test_broken_answers_are_remote_protocol_errors(reply: bytes, error: type[Exception]):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async def main() -> None:
        async with serve(handler) as server:
            transport = LeanTransport()
            async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=2) as client:
                with pytest.raises(error):
                    await client.get("/")
                assert transport.open_connections == 0

    run(main())


def test_a_connection_the_server_closed_while_idle_is_not_reused():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(200, b"once"))  # keep-alive promised, then closed while idle
        await writer.drain()

    async def main() -> None:
        async with serve(handler) as server:
            transport = LeanTransport()
            async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=2) as client:
                assert (await client.get("/")).content == b"once"
                await asyncio.sleep(0.05)  # the FIN arrives
                assert (await client.get("/")).content == b"once"
                assert server.connections == 2

    run(main())


def test_idle_connections_expire():
    box: list[Server] = []

    async def main() -> None:
        async with serve(keep_alive(lambda *a: answer(200, b"ok"), box)) as server:
            box.append(server)
            transport = LeanTransport(keepalive_expiry=0.05)
            async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=2) as client:
                await client.get("/")
                await client.get("/")
                await asyncio.sleep(0.1)
                await client.get("/")
            assert server.connections == 2

    run(main())


def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _, _ = await read_request(reader)
            if "/slow" in line:
                await asyncio.sleep(0.3)
            writer.write(answer(200, line.encode()))
            await writer.drain()

    async def main() -> None:
        async with serve(handler) as server:
            transport = LeanTransport(max_connections=1)
            async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=2) as client:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await client.get("/slow")
                assert transport.open_connections == 0
                # A late answer to the cancelled request can never be read as this one's.
                assert (await client.get("/next")).content == b"GET /next HTTP/1.1"
                assert server.connections == 2

    run(main())


def test_header_injection_and_unsupported_schemes_are_refused():
    async def main() -> None:
        async with httpx.AsyncClient(transport=LeanTransport()) as client:
            with pytest.raises(httpx.LocalProtocolError):
                await client.get("http://127.0.0.1:9/", headers={"X-Evil": "a\r\nX-Injected: 1"})
            with pytest.raises(httpx.UnsupportedProtocol):
                await client.get("ftp://127.0.0.1/")

    run(main())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_verifies_the_server_certificate(tls_files: tuple[Path, Path]):
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    box: list[Server] = []

    async def main() -> None:
        async with serve(keep_alive(lambda *a: answer(200, b"secret"), box), server_ctx) as server:
            box.append(server)
            trusting = ssl.create_default_context(cafile=str(cert))
            async with httpx.AsyncClient(transport=LeanTransport(ssl_context=trusting), timeout=5) as client:
                assert (await client.get(server.url + "/")).content == b"secret"
                assert (await client.get(server.url + "/")).content == b"secret"
            assert server.connections == 1
            strict = ssl.create_default_context()  # the system CAs do not know this certificate
            async with httpx.AsyncClient(transport=LeanTransport(ssl_context=strict), timeout=5) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(server.url + "/")

    run(main())


class Loop(RequestLoop):
    platform = "test"


FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)


@pytest.mark.parametrize(("choice", "kind"), [("stock", StockTransport), ("lean", LeanTransport)])
def test_request_loop_on_the_default_transport_maps_failures(monkeypatch, choice, kind):
    """Both transports (httpx's own, the default, and the lean one behind ``transport: lean``)
    class the same failures the same way: a lost answer to a POST is ambiguous, to a GET retried."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _, _ = await read_request(reader)
        if line.startswith("GET /ok"):
            writer.write(answer(200, b'{"data": 1}', "Content-Type: application/json", "X-Request-Id: r1"))
            await writer.drain()
        # anything else: read, then close without answering

    async def main() -> None:
        async with serve(handler) as server:
            assert isinstance(default_transport(4), StockTransport)  # the default
            transport = default_transport(4, kind=choice)
            assert isinstance(transport, kind)
            async with Loop(server.url, account="a", retry=FAST, timeout=2, transport=transport) as client:
                ok = await client.request("GET", "/ok")
                assert ok.data == {"data": 1} and ok.request_id == "r1"
                with pytest.raises(AmbiguousWrite):
                    await client.request("POST", "/things", json={"a": 1})
                before = server.connections
                with pytest.raises(Exception) as caught:
                    await client.request("GET", "/lost")
                assert not isinstance(caught.value, AmbiguousWrite)
                assert server.connections - before == FAST.max_attempts  # retried, fresh connections
            url = server.url
        transport = default_transport(4, kind=choice)
        async with Loop(url, account="a", retry=FAST, timeout=2, transport=transport) as client:
            with pytest.raises(ConnectFailed):
                await client.request("POST", "/things", json={})  # nothing was sent: not ambiguous

    run(main())
