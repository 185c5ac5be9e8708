"""The one request loop every platform client is built on (design §5, after openai/stripe).

``RequestLoop`` owns auth, timeouts, retries, the rate governor, error mapping,
redaction and request counting; platform clients subclass it and only declare paths,
models and three hooks. Interface (stable)::

    class MyClient(RequestLoop):
        platform = "myplatform"
        request_id_header = "X-Request-Id"
        async def auth_headers(self) -> dict[str, str]: ...
        async def handle_unauthorized(self, response: httpx.Response) -> bool: ...  # True → retry once
        def map_error(self, method: str, url: str, response: httpx.Response) -> StatusError: ...

    async with MyClient(base_url, account="acme", transport=httpx.MockTransport(h)) as c:
        r: ApiResponse = await c.request("GET", "/things/{id}", path_params={"id": "t 1"})
        r.status, r.headers, r.data, r.request_id, r.etag

``request`` raises ``sync.errors`` types only: ``StatusError`` subclasses (via
``map_error``), ``TransportError`` (``ConnectFailed``/``RequestTimeout``), or
``AmbiguousWrite`` when a non-idempotent request (POST by default) may have been
applied (5xx, failure after sending, unreadable 2xx body). ``idempotent`` defaults to
``method != "POST"``; pass ``idempotent=True`` for a POST that is safe to resend.

Accounting: ``counters`` counts every attempt by ``(method, path template, outcome)``
where outcome is the status code or ``"connect"``/``"timeout"``/``"sent"`` for
transport failures; the template is ``path`` before ``path_params`` are filled in.

Redaction: secrets passed to ``register_secret`` (subclasses register their keys) are
scrubbed from error bodies, URLs and logs; error bodies are also redacted by key name.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpcore
import httpx

from sync.clients.governor import Governor, InProcessGovernor, RateLimits
from sync.clients.retry import Decision, RetryPolicy, classify_exception, decide, parse_retry_after
from sync.errors import (
    AmbiguousWrite,
    BadRequest,
    ClientError,
    ConnectFailed,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    RequestTimeout,
    ServerError,
    StatusError,
    TransportError,
    Unauthorized,
    Unprocessable,
)
from sync.errors import Conflict as ConflictError
from sync.redact import redact, scrub

log = logging.getLogger("sync.clients.http")

_BODY_LIMIT = 2000


@dataclass(slots=True)
class ApiResponse:
    status: int
    headers: httpx.Headers
    data: Any  # parsed JSON, or None for an empty body
    request_id: str | None

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


class RequestCounters:
    """Thread-safe request counts by ``(method, path template, outcome)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, method: str, template: str, outcome: int | str) -> None:
        with self._lock:
            self._counts[(method, template, str(outcome))] += 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


def parse_body(response: httpx.Response) -> Any:
    """JSON body, or the (truncated) text when it is not JSON, or None when empty."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:_BODY_LIMIT]


def redacted_body(body: Any) -> Any:
    if isinstance(body, str):
        return scrub(body[:_BODY_LIMIT])
    return redact(body)


STATUS_CLASSES: dict[int, type[StatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: ConflictError,
    410: NotFound,
    422: Unprocessable,
    429: RateLimited,
}


def status_error_class(status: int) -> type[StatusError]:
    """The error class of a status family (platform parsers refine 409/422)."""
    if status in STATUS_CLASSES:
        return STATUS_CLASSES[status]
    if status >= 500:
        return ServerError
    return BadRequest


def default_map_error(
    platform: str, method: str, url: str, response: httpx.Response, *, request_id_header: str = "X-Request-Id"
) -> StatusError:
    """Generic mapping: class by status, message from common body keys, redacted body."""
    body = redacted_body(parse_body(response))
    message = ""
    if isinstance(body, dict):
        for key in ("detail", "message", "Message", "title", "error"):
            if isinstance(body.get(key), str):
                message = body[key]
                break
    cls = status_error_class(response.status_code)
    kw: dict[str, Any] = {}
    if cls is RateLimited:
        kw["retry_after"] = parse_retry_after(response.headers.get("retry-after"))
    return cls(
        message or response.reason_phrase or "error",
        status=response.status_code,
        request_id=response.headers.get(request_id_header),
        body=body,
        platform=platform,
        method=method,
        url=url,
        **kw,
    )


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one costs ~60 ms (CA bundle parsing), and a
    worker builds clients for every task it runs."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = httpx.create_ssl_context()
        return _ssl_context


_CLOSE_WAIT = 2.0


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection on plain asyncio streams (see ``AsyncioBackend``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except OSError as exc:  # resets, and ssl.SSLError (an OSError)
            raise httpcore.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc

    async def aclose(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(_CLOSE_WAIT):  # a TLS peer may never answer close_notify
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            return

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:  # certificate verification failures included
            raise httpcore.ConnectError(exc) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # The pool asks this of idle connections: buffered bytes or EOF on an idle
            # HTTP/1.1 connection mean the server closed it (or broke the protocol).
            return self._reader.at_eof() or bool(getattr(self._reader, "_buffer", b""))
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend on asyncio streams instead of anyio.

    Measured (bench/clients.py, 8 in flight): anyio's per-read/write cancel scopes and the
    pool's per-request ``is_readable`` checks (anyio rebuilds a dict of socket attributes on
    each) are about a fifth of the client CPU per request; asyncio streams do the same work
    with one timer handle per read or write. TLS uses the same ``ssl.SSLContext``
    (``shared_ssl_context``, verification on) through ``StreamWriter.start_tls``.
    """

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        return _AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def default_transport(
    max_connections: int = 16, *, verify: ssl.SSLContext | None = None
) -> httpx.AsyncHTTPTransport:
    """The transport a client uses when none is given: httpx's HTTP/1.1 transport (keep-alive
    pool, the shared TLS context) on ``AsyncioBackend``."""
    transport = httpx.AsyncHTTPTransport(
        verify=verify or shared_ssl_context(),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    pool._network_backend = AsyncioBackend()
    return transport


class RequestLoop:
    """Base of every platform client: one place for auth, retries, governor and errors."""

    platform: ClassVar[str] = "platform"
    request_id_header: ClassVar[str] = "X-Request-Id"

    def __init__(
        self,
        base_url: str,
        *,
        account: str,
        transport: httpx.AsyncBaseTransport | None = None,
        governor: Governor | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_connections: int = 16,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.account = account
        self.governor: Governor = governor or InProcessGovernor(
            RateLimits(rate=1000.0, burst=1000, concurrency=max_connections)
        )
        self.retry = retry or RetryPolicy()
        self.counters = RequestCounters()
        self._sleep = sleep
        self._rng = rng
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport if transport is not None else default_transport(max_connections),
            timeout=timeout,
            limits=limits,
            follow_redirects=False,
            verify=shared_ssl_context(),
        )
        # Hot path (see ``_send``): requests are built once, with an absolute URL, and handed
        # straight to the client's transport, skipping what AsyncClient.send adds and this loop
        # never uses (base-URL merging, cookie jar, auth flow, redirects, event hooks): about
        # half of httpx's client CPU per request.
        # The transport for base_url (a mount when a proxy is configured by the environment).
        self._transport: httpx.AsyncBaseTransport = self._http._transport_for_url(httpx.URL(self.base_url))
        self._host = httpx.URL(self.base_url).raw_host
        self._extensions = {"timeout": self._http.timeout.as_dict()}
        self._default_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self._http.headers.raw}
        self._default_lower = {k.lower(): k for k in self._default_headers}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={scrub(self.base_url)!r}, account={self.account!r})"

    async def __aenter__(self) -> RequestLoop:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _build(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        json: Any,
        auth: Mapping[str, str],
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        """One attempt's request, as ``AsyncClient.build_request`` would make it (same default
        headers, merged case-insensitively; same timeouts), with one URL parse instead of three."""
        send_headers = dict(self._default_headers)
        for extra in (auth, headers):
            if extra:
                for key, value in extra.items():
                    known = self._default_lower.get(key.lower())
                    if known is not None and known != key:
                        del send_headers[known]
                    send_headers[key] = value
        return httpx.Request(
            method,
            self._absolute(path),
            params=query or None,
            json=json,
            headers=send_headers,
            extensions=self._extensions,
        )

    def _absolute(self, path: str) -> str:
        """``path`` under ``base_url`` (as AsyncClient's base-URL merge: one ``/`` between them)."""
        if path.startswith("/") and not path.startswith("//"):
            return self.base_url + path
        if "://" in path:
            return path
        return self.base_url + "/" + path.lstrip("/")

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send on the transport and read the whole body (the connection goes back to the pool)."""
        transport = self._transport
        if request.url.raw_host != self._host:  # an absolute URL to another origin
            transport = self._http._transport_for_url(request.url)
        response = await transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    # --- hooks -----------------------------------------------------------------------

    async def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate one attempt (called before every attempt)."""
        return {}

    async def handle_unauthorized(self, response: httpx.Response) -> bool:
        """A 401/403 arrived: return True to retry once (e.g. after a session refresh)."""
        return False

    def map_error(self, method: str, url: str, response: httpx.Response) -> StatusError:
        return default_map_error(
            self.platform, method, url, response, request_id_header=self.request_id_header
        )

    # --- the loop ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> ApiResponse:
        method = method.upper()
        template = path
        if path_params:
            path = path.format(**{k: quote(str(v), safe="") for k, v in path_params.items()})
        if idempotent is None:
            idempotent = method != "POST"
        query = {k: v for k, v in params.items() if v is not None} if params else None
        attempt = 0
        spent = 0.0
        reauthed = False
        while True:
            attempt += 1
            request = self._build(method, path, query, json, await self.auth_headers(), headers)
            started = time.perf_counter()
            try:
                async with self.governor.slot():
                    response = await self._send(request)
            except httpx.TransportError as exc:
                failure = classify_exception(exc)
                timed_out = isinstance(exc, httpx.TimeoutException)
                outcome = "connect" if failure == "connect" else ("timeout" if timed_out else "sent")
                self.counters.add(method, template, outcome)
                log.info(
                    "%s %s %s %s failed: %s", self.platform, method, template, outcome, type(exc).__name__
                )
                decision = decide(
                    attempt=attempt,
                    idempotent=idempotent,
                    policy=self.retry,
                    spent=spent,
                    failure=failure,
                    rng=self._rng,
                )
                if decision.retry:
                    spent += decision.delay
                    await self._sleep(decision.delay)
                    continue
                url = scrub(self._absolute(path))  # built on error paths only (regex work)
                raise self._transport_error(method, url, exc, decision, timed_out) from None
            self.counters.add(method, template, response.status_code)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s %s -> %s in %.1f ms",
                    self.platform,
                    method,
                    template,
                    response.status_code,
                    (time.perf_counter() - started) * 1000,
                )
            status = response.status_code
            if status < 400:
                try:
                    data = response.json() if response.content else None
                except ValueError:
                    decision = decide(
                        attempt=attempt,
                        idempotent=idempotent,
                        policy=self.retry,
                        spent=spent,
                        failure="sent",
                        rng=self._rng,
                    )
                    if decision.retry:
                        spent += decision.delay
                        await self._sleep(decision.delay)
                        continue
                    url = scrub(self._absolute(path))
                    if decision.ambiguous:
                        raise AmbiguousWrite(
                            f"{method} {status} with an unreadable body: outcome unknown",
                            platform=self.platform,
                            method=method,
                            url=url,
                        ) from None
                    raise TransportError(
                        f"{status} with an unreadable JSON body",
                        platform=self.platform,
                        method=method,
                        url=url,
                    ) from None
                return ApiResponse(
                    status, response.headers, data, response.headers.get(self.request_id_header)
                )
            if status in (401, 403) and not reauthed and await self.handle_unauthorized(response):
                reauthed = True
                continue
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), cap=self.retry.max_retry_after
            )
            decision = decide(
                attempt=attempt,
                idempotent=idempotent,
                policy=self.retry,
                spent=spent,
                status=status,
                retry_after=retry_after,
                rng=self._rng,
            )
            if status == 429:
                # Not a failure: the whole account backs off, this request waits its turn.
                penalty = decision.delay if decision.retry else (retry_after or 0.0)
                if penalty > 0:
                    await self.governor.penalize(penalty)
            if decision.retry:
                spent += decision.delay
                await self._sleep(decision.delay)
                continue
            url = scrub(self._absolute(path))
            error = self.map_error(method, url, response)
            if decision.ambiguous:
                ambiguous = AmbiguousWrite(
                    f"{method} answered {status}: the write may have been applied",
                    cause=error,
                    platform=self.platform,
                    method=method,
                    url=url,
                )
                ambiguous.request_id = error.request_id  # type: ignore[attr-defined]
                raise ambiguous
            raise error

    def _transport_error(
        self, method: str, url: str, exc: httpx.TransportError, decision: Decision, timed_out: bool
    ) -> ClientError:
        detail = scrub(str(exc)) or type(exc).__name__
        if decision.ambiguous:
            return AmbiguousWrite(
                f"{method} failed after sending ({type(exc).__name__}): the write may have been applied",
                cause=exc,
                platform=self.platform,
                method=method,
                url=url,
            )
        cls: type[TransportError]
        if classify_exception(exc) == "connect" and not isinstance(exc, httpx.PoolTimeout):
            cls = RequestTimeout if timed_out else ConnectFailed
        else:
            cls = RequestTimeout if timed_out else TransportError
        return cls(
            f"{type(exc).__name__}: {detail} ({decision.reason})",
            platform=self.platform,
            method=method,
            url=url,
        )
