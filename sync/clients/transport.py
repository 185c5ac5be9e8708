"""The clients' HTTP transports: httpx's own (the default) and a lean one (opt-in).

``StockTransport`` (``transport: stock``, the default) is httpx's own stack: an
``httpx.AsyncClient`` with its ``AsyncHTTPTransport`` (httpcore, h11), built the way httpx
builds it when no transport is given, so it honours ``HTTP_PROXY``/``HTTPS_PROXY``/
``ALL_PROXY``/``NO_PROXY`` in the environment and the platform's ``proxy`` setting, and its
connects try a host's addresses in turn (anyio's happy eyeballs). The platforms' quotas
(tens of requests per second) make client CPU a minor cost; a stock, proxy-aware stack is
worth more to users. See docs/decisions/0001-lean-transport.md.

``LeanTransport`` (``transport: lean``) is for high-volume tenants where client CPU matters.
Measured with ``bench/clients.py`` (GET one record, 8 in flight, 50 ms latency), the client
CPU per request was 0.9-1.1 ms on httpx's own transport (httpcore and h11: pool bookkeeping
and locks, h11's event state machine, per-read cancel scopes, response streams wrapped three
deep), 0.50-0.65 ms on aiohttp behind a minimal httpx transport adapter, and 0.33-0.39 ms on
this one. ``httpx-aiohttp`` 0.2 was also ruled out for correctness: it maps every
``aiohttp.ClientConnectionError``, server disconnects after the request was sent included,
to ``httpx.ConnectTimeout`` ("nothing was sent"), which would let an ambiguous POST look safe
to retry. This transport does one HTTP/1.1 exchange per pooled connection with one
``transport.write``, parses the answer in ``data_received`` and hands back a
``httpx.Response`` whose body is already read. It is a plain ``httpx.AsyncBaseTransport``, so
``httpx.AsyncClient``, ``httpx.MockTransport`` in tests and wrapping transports keep working.
It connects directly: it reads no proxy settings (``transport: lean`` with ``proxy`` set is
refused by the settings).

What it does:

- a keep-alive pool: at most ``max_connections`` connections (idle and busy), at most
  ``max_keepalive_connections`` idle ones, an idle connection is dropped after
  ``keepalive_expiry`` seconds or as soon as its peer closes it or sends unsolicited bytes;
  waiting for a free connection is bounded by the ``pool`` timeout (``httpx.PoolTimeout``);
- connects try every address the host resolves to, a new attempt starting every
  ``happy_eyeballs_delay`` seconds while earlier ones are pending (RFC 8305, asyncio's
  ``happy_eyeballs_delay``), the first to succeed wins: an unreachable first address (an IPv6
  address without a route, a dead A record) costs that delay, not the connect timeout;
- request bodies: bytes (``Content-Length``, as httpx prepares them) or streamed, sent
  chunked when the request says ``Transfer-Encoding: chunked``;
- response framing: ``Content-Length``, ``chunked`` (trailers skipped) or, without either,
  the body runs to the connection's close; no body for HEAD, 1xx, 204 and 304; interim 1xx
  answers are skipped; ``Connection: close`` and HTTP/1.0 answers end the connection;
- a response size cap: a body over ``max_response_bytes`` (announced by ``Content-Length`` or
  met while reading) fails with ``sync.errors.ResponseTooLarge`` and closes the connection;
- the whole body is read before the response is returned (a streamed read is not supported:
  every caller in this project reads the whole body), and content codings (gzip…) are left
  to ``httpx.Response``, which decodes them as usual;
- https through ``ssl`` with the given context (verification as the context says);
- httpx's timeouts: ``connect`` (TCP and TLS handshake), ``write`` (waiting for the socket to
  drain), ``read`` (the longest silence while waiting for the answer) and ``pool``;
- failures as the httpx exceptions httpcore raises for them, which ``sync.clients.retry``
  classifies: ``ConnectError``/``ConnectTimeout`` (nothing was sent), ``WriteError``/
  ``WriteTimeout``, ``ReadError``/``ReadTimeout``, ``RemoteProtocolError`` (the peer closed
  early or broke the protocol), ``LocalProtocolError`` (a header with CR/LF), and
  ``UnsupportedProtocol`` for a scheme other than http/https. A connection whose exchange
  failed or was cancelled is closed, never reused.

Connections belong to the event loop that opened them (as with httpcore); idle ones found
from another loop are dropped. Not thread-safe: use one client per event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterable, Iterable

import httpx

from sync.clients import httpx_hooks
from sync.errors import ResponseTooLarge

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "LeanTransport", "StockTransport"]

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
HAPPY_EYEBALLS_DELAY = 0.25  # seconds between connect attempts to a host's addresses (RFC 8305)

Origin = tuple[bytes, bytes, int]

_MAX_HEAD = 64 * 1024  # bytes of a response head (status line and headers)
_HEX = b"0123456789abcdefABCDEF"

# What frames the body of the response being read.
_HEAD, _LENGTH, _CHUNKED, _TRAILER, _UNTIL_CLOSE, _DONE = range(6)


class _Result:
    __slots__ = ("body", "headers", "reason", "reusable", "status", "version")

    def __init__(
        self,
        version: bytes,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        reusable: bool,
    ) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.reusable = reusable


def _parse_head(
    head: bytes,
) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    """Status line and header fields of one response head (without the blank line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    version = parts[0]
    if len(parts) < 2 or version[:7] != b"HTTP/1." or len(parts[1]) != 3 or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:100]!r}")
    reason = parts[2] if len(parts) > 2 else b""
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):  # obsolete line folding: continues the previous value
            if not headers:
                raise httpx.RemoteProtocolError("malformed response head (folded first header)")
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" "))
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t"):
            raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip(b" \t")))
    return version, int(parts[1]), reason, headers


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time, parsed as the bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin, cap: int) -> None:
        self.loop = loop
        self.origin = origin
        self.cap = cap  # the largest response body accepted
        self._got = 0  # chunked body bytes so far
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False  # connection lost (or closed by us)
        self.eof = False
        self.lost: BaseException | None = None
        self.idle_since = 0.0
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        # The exchange in progress.
        self.waiter: asyncio.Future[_Result] | None = None
        self._head_method = False
        self._close_after = False
        self._last = 0.0  # loop time of the last bytes received
        self._timer: asyncio.TimerHandle | None = None
        self._state = _DONE
        self._scan = 0
        self._remaining = 0
        self._chunk = -1
        self._parts: list[bytes] = []
        self._status = 0
        self._version = b""
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._keep_alive = False

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: the connection can no longer be trusted.
            self.abort()
            return
        self._last = self.loop.time()
        self._advance()

    def eof_received(self) -> bool:
        self.eof = True
        if self.waiter is not None and not self.waiter.done():
            self._advance()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        self.lost = exc
        if self.waiter is not None and not self.waiter.done():
            self._advance()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(httpx.WriteError(str(exc) if exc else "connection closed while writing"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- the exchange --------------------------------------------------------------------

    def usable(self, loop: asyncio.AbstractEventLoop, now: float, expiry: float | None) -> bool:
        """Whether an idle connection may carry another request."""
        return (
            not self.closed
            and not self.eof
            and not self.buf
            and loop is self.loop
            and (expiry is None or now - self.idle_since < expiry)
        )

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its event loop is closed
                self.transport.abort()

    async def exchange(
        self,
        head: bytes,
        body: bytes,
        stream: AsyncIterable[bytes] | None,
        chunked: bool,
        head_method: bool,
        close_after: bool,
        timeouts: dict[str, float | None],
    ) -> _Result:
        transport = self.transport
        assert transport is not None
        loop = self.loop
        waiter: asyncio.Future[_Result] = loop.create_future()
        self.waiter = waiter
        self._head_method = head_method
        self._close_after = close_after
        self._state = _HEAD
        self._scan = 0
        write_timeout = timeouts.get("write")
        try:
            transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                transport.write(body)
            if self._paused:
                await self._drained(write_timeout)
            if stream is not None:
                await self._send_stream(stream, chunked, write_timeout)
            if waiter.done():  # answered (or failed) while the request was being written
                return waiter.result()
            read_timeout = timeouts.get("read")
            self._last = loop.time()
            if read_timeout is not None:
                self._timer = loop.call_at(self._last + read_timeout, self._read_timer, read_timeout)
            return await waiter
        finally:
            self.waiter = None
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # a failure already raised another way is not "never retrieved"
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _send_stream(self, stream: AsyncIterable[bytes], chunked: bool, timeout: float | None) -> None:
        transport = self.transport
        assert transport is not None
        async for chunk in stream:
            if self.closed:
                raise httpx.WriteError(str(self.lost) if self.lost else "connection closed while writing")
            if not chunk:
                continue
            if chunked:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                transport.write(chunk)
            if self._paused:
                await self._drained(timeout)
        if chunked:
            transport.write(b"0\r\n\r\n")
            if self._paused:
                await self._drained(timeout)

    async def _drained(self, timeout: float | None) -> None:
        if self.closed:
            raise httpx.WriteError(str(self.lost) if self.lost else "connection closed while writing")
        self._drain = self.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drain
        except TimeoutError:
            raise httpx.WriteTimeout("timed out writing the request") from None
        finally:
            self._drain = None

    def _read_timer(self, timeout: float) -> None:
        self._timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        due = self._last + timeout
        if self.loop.time() >= due - 0.001:
            waiter.set_exception(httpx.ReadTimeout("timed out reading the response"))
            self.abort()
        else:  # bytes arrived since the timer was set: wait for the rest of the silence
            self._timer = self.loop.call_at(due, self._read_timer, timeout)

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def _finish(self, body: bytes) -> None:
        self._state = _DONE
        reusable = self._keep_alive and not self._close_after and not self.buf and not self.eof
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(
                _Result(self._version, self._status, self._reason, self._headers, body, reusable)
            )

    def _lost_early(self, what: str) -> Exception:
        if self.lost is not None:
            return httpx.ReadError(str(self.lost) or type(self.lost).__name__)
        return httpx.RemoteProtocolError(what)

    def _advance(self) -> None:
        """Parse what has arrived; resolve the waiter once the response is complete."""
        try:
            self._parse()
        except (httpx.RemoteProtocolError, ResponseTooLarge) as exc:
            self._fail(exc)

    def _parse(self) -> None:
        buf = self.buf
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", self._scan)
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise httpx.RemoteProtocolError("response head too large")
                    self._scan = max(0, len(buf) - 3)
                    if self.eof:
                        self._fail(
                            self._lost_early(
                                "Server disconnected without sending a response."
                                if not buf
                                else "peer closed connection in the middle of the response head"
                            )
                        )
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._scan = 0
                self._start_body(head)
            elif state == _LENGTH:
                n = self._remaining
                if len(buf) >= n:
                    body = bytes(buf[:n])
                    del buf[:n]
                    self._finish(body)
                    return
                if self.eof:
                    self._fail(
                        self._lost_early(
                            "peer closed connection without sending complete message body:"
                            f" received {len(buf)} bytes, expected {n}"
                        )
                    )
                return
            elif state in (_CHUNKED, _TRAILER):
                if self._chunks():
                    body = b"".join(self._parts)
                    self._parts = []
                    self._finish(body)
                    return
                if self.eof:
                    self._fail(
                        self._lost_early("peer closed connection without sending complete message body")
                    )
                return
            elif state == _UNTIL_CLOSE:
                if len(buf) > self.cap:
                    raise _too_large(self.cap, f"more than {self.cap:,} bytes received")
                if self.eof:
                    if self.lost is not None:
                        self._fail(httpx.ReadError(str(self.lost) or type(self.lost).__name__))
                        return
                    body = bytes(buf)
                    buf.clear()
                    self._finish(body)
                return
            else:
                return

    def _start_body(self, head: bytes) -> None:
        version, status, reason, headers = _parse_head(head)
        if 100 <= status < 200 and status != 101:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        length: bytes | None = None
        coding: bytes | None = None
        connection = b""
        for name, value in headers:
            key = name.lower()
            if key == b"content-length":
                if length is not None and value != length:
                    raise httpx.RemoteProtocolError("conflicting Content-Length headers")
                length = value
            elif key == b"transfer-encoding":
                coding = value if coding is None else coding + b"," + value
            elif key == b"connection":
                connection += b"," + value.lower()
        tokens = {t.strip() for t in connection.split(b",")}
        if version == b"HTTP/1.1":
            keep_alive = b"close" not in tokens
        else:
            keep_alive = b"keep-alive" in tokens and b"close" not in tokens
        self._version, self._status, self._reason, self._headers = version, status, reason, headers
        self._keep_alive = keep_alive
        if self._head_method or status in (204, 304) or status == 101:
            if status == 101:
                self._keep_alive = False
            self._remaining = 0
            self._state = _LENGTH
        elif coding is not None:
            if coding.rsplit(b",", 1)[-1].strip().lower() == b"chunked":
                self._state = _CHUNKED
                self._chunk = -1
                self._parts = []
                self._got = 0
            else:  # a coding the body ends with no length: it runs to the close
                self._keep_alive = False
                self._state = _UNTIL_CLOSE
        elif length is not None:
            if not length.isdigit() or len(length) > 18:
                raise httpx.RemoteProtocolError(f"malformed Content-Length {length[:30]!r}")
            self._remaining = int(length)
            if self._remaining > self.cap:
                raise _too_large(self.cap, f"Content-Length {self._remaining:,}")
            self._state = _LENGTH
        else:
            self._keep_alive = False
            self._state = _UNTIL_CLOSE

    def _chunks(self) -> bool:
        """Consume whole chunks from the buffer; True once the last chunk and trailers are in."""
        buf = self.buf
        pos = 0
        try:
            while True:
                if self._state == _TRAILER:
                    end = buf.find(b"\r\n", pos)
                    if end < 0:
                        if len(buf) - pos > _MAX_HEAD:
                            raise httpx.RemoteProtocolError("chunked trailer too large")
                        return False
                    line_empty = end == pos
                    pos = end + 2
                    if line_empty:
                        return True
                    continue
                size = self._chunk
                if size < 0:  # a chunk-size line
                    end = buf.find(b"\r\n", pos)
                    if end < 0:
                        if len(buf) - pos > 4096:
                            raise httpx.RemoteProtocolError("malformed chunk size line")
                        return False
                    digits = bytes(buf[pos:end]).split(b";", 1)[0].strip(b" \t")
                    if not digits or digits.strip(_HEX) or len(digits) > 15:
                        raise httpx.RemoteProtocolError(f"malformed chunk size {digits[:20]!r}")
                    pos = end + 2
                    size = int(digits, 16)
                    if size == 0:
                        self._state = _TRAILER
                        continue
                    self._got += size
                    if self._got > self.cap:
                        raise _too_large(self.cap, f"more than {self.cap:,} bytes announced in chunks")
                    self._chunk = size
                if len(buf) - pos < size + 2:
                    return False
                if buf[pos + size : pos + size + 2] != b"\r\n":
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF")
                self._parts.append(bytes(buf[pos : pos + size]))
                pos += size + 2
                self._chunk = -1
        finally:
            if pos:
                del buf[:pos]


def _too_large(cap: int, what: str) -> ResponseTooLarge:
    return ResponseTooLarge(f"the answer is larger than max_response_bytes ({cap:,} bytes): {what}")


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    timeouts = request.extensions.get("timeout")
    return timeouts if isinstance(timeouts, dict) else {}


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive pool on asyncio protocols (see the module docstring)."""

    def __init__(
        self,
        *,
        max_connections: int = 16,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        happy_eyeballs_delay: float | None = HAPPY_EYEBALLS_DELAY,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be >= 1")
        self._cap = max_response_bytes
        self._happy_eyeballs_delay = happy_eyeballs_delay
        self._max = max_connections
        self._max_idle = max_connections if max_keepalive_connections is None else max_keepalive_connections
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._conns: set[_Connection] = set()  # open connections, idle and busy
        self._idle: list[_Connection] = []  # most recently used last
        self._connecting = 0
        self._waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"LeanTransport(max_connections={self._max}, open={len(self._conns)}, idle={len(self._idle)})"

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    # --- the pool ------------------------------------------------------------------------

    def _discard(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        conn.abort()

    def _take_idle(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        idle = self._idle
        if not idle:
            return None
        now = loop.time()
        found: _Connection | None = None
        for i in range(len(idle) - 1, -1, -1):
            conn = idle[i]
            if not conn.usable(loop, now, self._expiry):
                del idle[i]
                self._discard(conn)
            elif found is None and conn.origin == origin:
                del idle[i]
                found = conn
        return found

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return

    async def _acquire(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            conn = self._take_idle(origin, loop)
            if conn is not None:
                return conn
            if len(self._conns) + self._connecting < self._max:
                return await self._connect(loop, origin, timeouts.get("connect"))
            if self._idle:  # room is held by an idle connection to another origin
                self._discard(self._idle.pop(0))
                continue
            if deadline is None:
                pool = timeouts.get("pool")
                deadline = None if pool is None else loop.time() + pool
                if deadline is None:
                    deadline = float("inf")
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                async with asyncio.timeout_at(None if deadline == float("inf") else deadline):
                    await fut
            except TimeoutError:
                raise httpx.PoolTimeout("timed out waiting for a connection from the pool") from None
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake()  # pass the wake-up we were given on to the next waiter
                elif fut in self._waiters:
                    self._waiters.remove(fut)
                raise

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == b"https":
            context = self._ssl_context or ssl.create_default_context()
        self._connecting += 1
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, origin, self._cap),
                    host.decode("ascii"),
                    port,
                    ssl=context,
                    server_hostname=host.decode("ascii") if context is not None else None,
                    happy_eyeballs_delay=self._happy_eyeballs_delay,
                )
        except TimeoutError:
            self._wake()
            raise httpx.ConnectTimeout("timed out connecting") from None
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (ssl.SSLError)
            self._wake()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._wake()
            raise
        finally:
            self._connecting -= 1
        self._conns.add(conn)
        return conn

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if reusable and not conn.closed and len(self._idle) < self._max_idle and conn in self._conns:
            conn.idle_since = conn.loop.time()
            self._idle.append(conn)
        else:
            self._discard(conn)
        if self._waiters:
            self._wake()

    # --- httpx.AsyncBaseTransport --------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme == b"https":
            default_port = 443
        elif scheme == b"http":
            default_port = 80
        else:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        host = url.raw_host
        if not host:
            raise httpx.UnsupportedProtocol("request URL without a host", request=request)
        origin: Origin = (scheme, host, url.port or default_port)

        raw = request.headers.raw
        method = request.method.encode("ascii")
        lines = [method, b" ", url.raw_path or b"/", b" HTTP/1.1\r\n"]
        chunked = False
        close_after = False
        for name, value in raw:
            lines += (name, b": ", value, b"\r\n")
            lower = name.lower()
            if lower == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                close_after = b"close" in value.lower()
        lines.append(b"\r\n")
        head = b"".join(lines)
        # Header injection guard: exactly one line break per header line, request line and end.
        if head.count(b"\n") != len(raw) + 2 or head.count(b"\r") != len(raw) + 2 or b" " in method:
            message = "illegal character in the request line or a header"
            raise httpx.LocalProtocolError(message, request=request)

        stream = request.stream
        body = b""
        streamed: AsyncIterable[bytes] | None = None
        if isinstance(stream, httpx.ByteStream):
            body = b"".join(stream)
            if chunked and body:
                body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
            elif chunked:
                body = b"0\r\n\r\n"
        elif isinstance(stream, AsyncIterable):
            streamed = stream
        elif isinstance(stream, Iterable):  # a sync stream: read it here (it is in memory)
            body = b"".join(stream)
            if chunked:
                body = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"

        timeouts = _timeouts(request)
        conn = await self._acquire(origin, timeouts)
        reusable = False
        try:
            result = await conn.exchange(
                head, body, streamed, chunked, method == b"HEAD", close_after, timeouts
            )
            reusable = result.reusable
        except httpx.RequestError as exc:
            exc.request = request
            raise
        finally:
            self._release(conn, reusable)

        response = httpx.Response(
            result.status,
            headers=result.headers,
            stream=httpx.ByteStream(result.body),
            extensions={"http_version": result.version, "reason_phrase": result.reason},
        )
        response.request = request
        if not _has_coding(result.headers):
            # Identity body: it is the content (httpx would copy it through three iterators).
            httpx_hooks.set_content(response, result.body)
        return response

    async def aclose(self) -> None:
        for conn in list(self._conns):
            self._discard(conn)
        self._idle.clear()
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()


def _has_coding(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(len(name) == 16 and name.lower() == b"content-encoding" for name, _ in headers)


class StockTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, picked per URL exactly as ``httpx.AsyncClient`` picks it.

    Inside is an ``httpx.AsyncClient`` built with no transport of its own, so httpx mounts
    its ``AsyncHTTPTransport`` and, for a ``proxy`` or the environment's proxy variables
    (``trust_env``), a proxy transport per scheme with ``NO_PROXY`` exclusions. Requests go to
    the transport httpx chose for their URL (``httpx_hooks.send_function``: the private
    ``_transport_for_url`` when present, else ``AsyncClient.send``). The body is read here,
    with the ``max_response_bytes`` cap (``sync.errors.ResponseTooLarge``), and the response
    comes back already read, like ``LeanTransport``'s.
    """

    def __init__(
        self,
        *,
        max_connections: int = 16,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float | None = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be >= 1")
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections
            if max_keepalive_connections is None
            else max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
        )
        self._client = httpx.AsyncClient(
            verify=ssl_context if ssl_context is not None else True,
            limits=limits,
            proxy=proxy,
            trust_env=trust_env,
            follow_redirects=False,
        )
        self._send = httpx_hooks.send_function(self._client)
        self._cap = max_response_bytes

    def __repr__(self) -> str:
        return f"StockTransport(direct={httpx_hooks.transport_for_url_available(self._client)})"

    def transport_for(self, url: httpx.URL | str) -> httpx.AsyncBaseTransport | None:
        """The httpx transport a request to ``url`` goes through (a proxy's, or the direct one);
        None when the httpx hook to tell is missing. For diagnostics and tests."""
        return httpx_hooks.transport_for_url(self._client, httpx.URL(url))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        cap = self._cap
        response = await self._send(request)
        parts: list[bytes] = []
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise _too_large(cap, f"Content-Length {int(declared):,}")
            got = 0
            async for chunk in response.aiter_raw():
                got += len(chunk)
                if got > cap:
                    raise _too_large(cap, f"more than {cap:,} bytes received")
                parts.append(chunk)
        finally:
            await response.aclose()
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        extensions = {
            k: response.extensions[k] for k in ("http_version", "reason_phrase") if k in response.extensions
        }
        out = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),
            extensions=extensions,
            request=request,
        )
        if "content-encoding" not in response.headers:
            httpx_hooks.set_content(out, body)
        return out

    async def aclose(self) -> None:
        await self._client.aclose()
