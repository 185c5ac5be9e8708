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
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx

from sync.clients import httpx_hooks
from sync.clients.governor import Governor, InProcessGovernor, RateLimits
from sync.clients.retry import Decision, RetryPolicy, classify_exception, decide, parse_retry_after
from sync.clients.transport import DEFAULT_MAX_RESPONSE_BYTES, LeanTransport, StockTransport
from sync.errors import (
    AmbiguousWrite,
    BadRequest,
    ClientError,
    ConfigError,
    ConnectFailed,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    RequestTimeout,
    ResponseTooLarge,
    ServerError,
    StatusError,
    TransportError,
    Unauthorized,
    Unprocessable,
)
from sync.errors import Conflict as ConflictError
from sync.observability import metrics
from sync.redact import redact, register_secret, scrub

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
        etag: str | None = self.headers.get("etag")
        return etag


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


_PLAIN_PATH = re.compile(r"/(?:[A-Za-z0-9\-_~!$&'()*+,;=:@/]|\.(?![./]|$)|%[0-9A-Fa-f]{2})*")


def _plain_path(path: str) -> bool:
    """An absolute path httpx would keep exactly as it is: only characters it leaves unquoted,
    valid ``%XX`` escapes, no ``.``/``..`` segments, no ``//`` start, no query or fragment."""
    return _PLAIN_PATH.fullmatch(path) is not None and not path.startswith("//")


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


TransportKind = Literal["stock", "lean"]


def default_transport(
    max_connections: int = 16,
    *,
    kind: TransportKind = "stock",
    proxy: str | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    verify: ssl.SSLContext | None = None,
) -> httpx.AsyncBaseTransport:
    """The transport of a platform client (the ``transport`` and ``proxy`` platform settings).

    ``stock`` (the default): httpx's own stack (``StockTransport``), which honours
    ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` and ``proxy``. ``lean``: ``LeanTransport``,
    about a third of the client CPU per request, for high-volume tenants; it connects directly,
    so it refuses a ``proxy``. Both use the shared TLS context and cap response bodies at
    ``max_response_bytes``. See docs/decisions/0001-lean-transport.md."""
    context = verify or shared_ssl_context()
    if kind == "lean":
        if proxy:
            raise ConfigError(
                "the lean transport connects directly and cannot use a proxy",
                hint="set transport: stock for this platform, or remove proxy",
            )
        return LeanTransport(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            ssl_context=context,
            max_response_bytes=max_response_bytes,
        )
    if kind != "stock":
        raise ConfigError(f"unknown transport {kind!r}", hint="use transport: stock or transport: lean")
    if proxy:
        try:
            password = httpx.URL(proxy).password
        except (httpx.InvalidURL, TypeError, ValueError):
            password = None
        register_secret(password)  # a proxy's credentials never show in logs or errors
    return StockTransport(
        max_connections=max_connections,
        ssl_context=context,
        proxy=proxy,
        max_response_bytes=max_response_bytes,
    )


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
        self.metrics = metrics.client(self.platform, account, getattr(self.governor, "limits", None))
        self._sleep = sleep
        self._rng = rng
        # The transport: the one given (tests, wrappers), else the default (``stock``: httpx's
        # own, proxy-aware). Proxies are the transport's business: this client reads none.
        self._transport: httpx.AsyncBaseTransport = (
            transport if transport is not None else default_transport(max_connections)
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=self._transport,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )
        # Hot path (see ``_send``): requests are built once, with an absolute URL, and handed
        # straight to the transport, skipping what AsyncClient.send adds and this loop never
        # uses (base-URL merging, cookie jar, auth flow, redirects, event hooks): about half of
        # httpx's client CPU per request. The client above only supplies default headers and
        # timeouts, and closes the transport.
        base = httpx.URL(self.base_url)
        # Request URLs under a plain base_url are made from its parsed form (see ``_url``),
        # through ``httpx_hooks`` (None when the private hook is missing: public parsing).
        raw_base = base.raw_path.decode("ascii")
        self._join = httpx_hooks.plain_url_joiner(base) if _plain_path(raw_base) else None
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
        # A Redis governor keeps one client per event loop: close this loop's, or its
        # sockets outlive the loop (and are only reclaimed by the garbage collector).
        close = getattr(self.governor, "aclose", None)
        if close is not None:
            await close()

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
            method, self._url(path, query), json=json, headers=send_headers, extensions=self._extensions
        )

    def _url(self, path: str, query: Mapping[str, Any] | None) -> httpx.URL:
        """``path`` (and ``query``) under ``base_url``, as ``httpx.URL(self._absolute(path),
        params=query)`` makes it. A plain path (already percent-encoded, no dot segments, no
        query) is joined to the parsed base directly, skipping httpx's character-by-character
        re-validation of the whole URL (about a tenth of the client CPU of a small GET)."""
        join = self._join
        if join is None or not _plain_path(path):
            return httpx.URL(self._absolute(path), params=query or None)
        return join(path, query)

    def _absolute(self, path: str) -> str:
        """``path`` under ``base_url`` (as AsyncClient's base-URL merge: one ``/`` between them)."""
        if path.startswith("/") and not path.startswith("//"):
            return self.base_url + path
        if "://" in path:
            return path
        return self.base_url + "/" + path.lstrip("/")

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send on the transport and read the whole body (the connection goes back to the pool)."""
        response = await self._transport.handle_async_request(request)
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
            started = sent = time.perf_counter()
            try:
                async with self.governor.slot():
                    sent = self.metrics.slot_taken(started)  # governor wait, in-flight + 1
                    try:
                        response = await self._send(request)
                    finally:
                        self.metrics.slot_freed()
            except ResponseTooLarge as exc:
                self.counters.add(method, template, "too_large")
                self.metrics.request(method, template, "too_large", time.perf_counter() - sent)
                url = scrub(self._absolute(path))
                if not idempotent:
                    self.metrics.ambiguous(method)
                    raise AmbiguousWrite(
                        f"{method} answered with more than max_response_bytes:"
                        " the write may have been applied",
                        cause=exc,
                        platform=self.platform,
                        method=method,
                        url=url,
                    ) from None
                raise ResponseTooLarge(exc.message, platform=self.platform, method=method, url=url) from None
            except (httpx.TransportError, httpx.DecodingError) as exc:
                # A body that does not decode as its headers say was still an answer: the
                # request reached the server, so it is treated as lost after sending.
                failure = classify_exception(exc)
                timed_out = isinstance(exc, httpx.TimeoutException)
                outcome = "connect" if failure == "connect" else ("timeout" if timed_out else "sent")
                self.counters.add(method, template, outcome)
                self.metrics.request(method, template, outcome, time.perf_counter() - sent)
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
                    self.metrics.retry(outcome)
                    spent += decision.delay
                    await self._sleep(decision.delay)
                    continue
                if decision.ambiguous:
                    self.metrics.ambiguous(method)
                url = scrub(self._absolute(path))  # built on error paths only (regex work)
                raise self._transport_error(method, url, exc, decision, timed_out) from None
            self.counters.add(method, template, response.status_code)
            self.metrics.request(method, template, response.status_code, time.perf_counter() - sent)
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
                        self.metrics.retry("body")
                        spent += decision.delay
                        await self._sleep(decision.delay)
                        continue
                    url = scrub(self._absolute(path))
                    if decision.ambiguous:
                        self.metrics.ambiguous(method)
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
                self.metrics.retry(status)
                spent += decision.delay
                await self._sleep(decision.delay)
                continue
            url = scrub(self._absolute(path))
            error = self.map_error(method, url, response)
            if decision.ambiguous:
                self.metrics.ambiguous(method)
                ambiguous = AmbiguousWrite(
                    f"{method} answered {status}: the write may have been applied",
                    cause=error,
                    platform=self.platform,
                    method=method,
                    url=url,
                )
                ambiguous.request_id = error.request_id
                raise ambiguous
            raise error

    def _transport_error(
        self,
        method: str,
        url: str,
        exc: httpx.TransportError | httpx.DecodingError,
        decision: Decision,
        timed_out: bool,
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
            f"{self.platform} at {url} did not answer: {type(exc).__name__}: {detail} ({decision.reason})",
            platform=self.platform,
            method=method,
            url=url,
        )
