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
import os
import random
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from sync.clients.governor import Governor, InProcessGovernor, RateLimits
from sync.clients.retry import Decision, RetryPolicy, classify_exception, decide, parse_retry_after
from sync.clients.transport import LeanTransport
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


def default_transport(
    max_connections: int = 16, *, verify: ssl.SSLContext | None = None
) -> httpx.AsyncBaseTransport:
    """The transport a client uses when none is given: ``LeanTransport`` (an HTTP/1.1
    keep-alive pool on asyncio protocols, see ``sync.clients.transport`` for why) with the
    shared TLS context. ``ERPSYNC_HTTP_TRANSPORT=httpx`` in the environment selects httpx's
    own transport instead (same pool limits and TLS context; about 2.5x the client CPU per
    request), an escape hatch should a server or middlebox disagree with the lean one."""
    context = verify or shared_ssl_context()
    if os.environ.get("ERPSYNC_HTTP_TRANSPORT", "lean").strip().lower() == "httpx":
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return httpx.AsyncHTTPTransport(verify=context, limits=limits)
    return LeanTransport(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        ssl_context=context,
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
        # The transport for base_url (the client's own: httpx reads no environment proxies
        # when a transport is given).
        self._transport: httpx.AsyncBaseTransport = self._http._transport_for_url(httpx.URL(self.base_url))
        base = httpx.URL(self.base_url)
        self._host = base.raw_host
        # Request URLs under base_url are made from its parsed form (see ``_url``): the
        # private ``_uri_reference`` of httpx 0.28 (pinned), used only when the base is plain.
        self._base_url_obj = base
        ref = base._uri_reference
        plain_base = ref.query is None and ref.fragment is None and _plain_path(ref.path or "/")
        self._base_ref = ref if plain_base else None
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
            method, self._url(path, query), json=json, headers=send_headers, extensions=self._extensions
        )

    def _url(self, path: str, query: Mapping[str, Any] | None) -> httpx.URL:
        """``path`` (and ``query``) under ``base_url``, as ``httpx.URL(self._absolute(path),
        params=query)`` makes it. A plain path (already percent-encoded, no dot segments, no
        query) is joined to the parsed base directly, skipping httpx's character-by-character
        re-validation of the whole URL (about a tenth of the client CPU of a small GET)."""
        ref = self._base_ref
        if ref is None or not _plain_path(path):
            return httpx.URL(self._absolute(path), params=query or None)
        url = httpx.URL(self._base_url_obj)
        url._uri_reference = ref._replace(
            path=ref.path + path, query=str(httpx.QueryParams(query)) if query else None
        )
        return url

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
