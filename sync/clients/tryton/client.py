"""The Tryton JSON-RPC client on erpsync's request loop (field guide §3.1, §8 "Transport").

One client per tenant worker, logged in as the tenant's integration user (one Tryton
user per company)::

    async with TrytonClient("http://127.0.0.1:8000", "erp", "epi", password) as c:
        rows = await c.search_read("company.employee", [("id", ">", 0)], ["party.name"], limit=1000)
        ids = await c.create("party.party", [{"name": "X"}])

- ``login`` runs ``common.db.login`` (lazily, before the first call) and then
  ``res.user.get_preferences`` so every call carries the user's context (company,
  language) under the caller's own context;
- every call sends ``Authorization: Session base64(login:uid:key)``; a 401 (expired
  session, server restarted) logs in again once and resends; a 401 on login itself is
  :class:`~sync.clients.tryton.errors.TrytonAuthFailed` (terminal);
- 429 backs off (the account's governor is penalised), 503 backs off and retries: reads
  through the request loop, writes here (a Tryton 503 means the transaction was rolled
  back, so resending cannot double-apply), except when the 503 says the batch is too
  large for SQLite (§7.4), which is raised at once as ``TrytonBusy(batch_too_large)``;
- a write that fails after it was sent (timeout, reset) is ``AmbiguousWrite``: look the
  record up (by ``reference``/external id) before resending;
- values go through the ``__class__`` codec (``codec.py``): pass ``date``, ``datetime``,
  ``Decimal`` and ``bytes``, get them back;
- JSON-RPC errors become the typed errors of ``errors.py`` (UserError → record-level with
  Tryton's message, ConcurrencyException → ``StaleVersion``, other → ``TrytonBug`` with
  the method and the JSON-RPC request id).

The password and the session key are registered with ``sync.redact`` and never appear in
``repr``, logs or errors. ``rpc_counts`` counts logical calls per RPC method (the request
loop's ``counters`` count HTTP attempts). ``SyncTrytonClient`` is the same API, blocking,
for the synchronous Source protocol (it runs the async client on a private loop thread).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import datetime as dt
import email.utils
import itertools
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from sync.clients.http import ApiResponse, RequestLoop
from sync.clients.retry import backoff_delay
from sync.clients.sync_facade import Portal
from sync.clients.tryton.codec import decode, encode
from sync.clients.tryton.errors import (
    PLATFORM,
    TrytonBug,
    TrytonBusy,
    map_http_error,
    map_rpc_error,
)
from sync.errors import AmbiguousWrite, ConfigError, StatusError
from sync.redact import forget_slots, register_secret

_T = TypeVar("_T")

READ_METHODS = frozenset(
    {
        "read",
        "search",
        "search_read",
        "search_count",
        "fields_get",
        "default_get",
        "get_preferences",
        "today",
        "version",
        "list",
        "search_rec_name",
        "fields_view_get",
        "view_toolbar_get",
        "get_login",
    }
)
"""Last segments of RPC methods that only read: safe to resend after any failure."""

Domain = Sequence[Any]

_DISPLAY_PREFERENCES = ("locale", "language_direction", "groups", "administrator")
"""User preferences the Tryton desktop client shows but no server method reads: not sent."""

_in_login: contextvars.ContextVar[bool] = contextvars.ContextVar("tryton_in_login", default=False)
_login_request: contextvars.ContextVar[bool] = contextvars.ContextVar("tryton_login_request", default=False)
_slots = itertools.count(1)
_slot_lock = threading.Lock()


def _next_slot() -> str:
    with _slot_lock:
        return f"tryton-session-{next(_slots)}"


class TrytonClient(RequestLoop):
    platform = PLATFORM
    request_id_header = "X-Request-Id"

    def __init__(
        self,
        base_url: str,
        database: str,
        user: str,
        password: SecretStr | str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        language: str = "en",
        context: Mapping[str, Any] | None = None,
        busy_retries: int = 3,
        **kwargs: Any,
    ) -> None:
        secret = password.get_secret_value() if isinstance(password, SecretStr) else password
        if not secret:
            raise ConfigError("the Tryton password is empty", hint="set erp.password of the tenant")
        if not database or not user:
            raise ConfigError(
                "the Tryton database and user are required", hint="set erp.database and erp.user"
            )
        register_secret(secret)
        self.__password = SecretStr(secret)
        super().__init__(
            base_url, account=f"tryton:{database}:{user}", transport=transport, timeout=timeout, **kwargs
        )
        self.database = database
        self.user = user
        self.language = language
        self.extra_context = dict(context or {})
        self.busy_retries = busy_retries
        self._path = f"/{quote(database, safe='')}/rpc/"
        self._session_header: str | None = None
        self._slot = _next_slot()
        self._lock: asyncio.Lock | None = None
        self.user_id: int | None = None
        self.base_context: dict[str, Any] = {}
        self.rpc_counts: Counter[str] = Counter()
        self.logins = 0
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        # Tryton labels every body over 1.4 kB "Content-Encoding: gzip", compressed or not
        # (trytond.protocols.jsonrpc compresses only when asked): so always accept gzip.
        self._headers: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"TrytonClient(base_url={self.base_url!r}, database={self.database!r}, user={self.user!r})"

    async def __aenter__(self) -> TrytonClient:
        return self

    async def aclose(self) -> None:
        forget_slots(self._slot)
        await super().aclose()

    # --- session -------------------------------------------------------------------

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def auth_headers(self) -> dict[str, str]:
        if self._session_header is None:
            return {}
        return {"Authorization": self._session_header}

    async def handle_unauthorized(self, response: httpx.Response) -> bool:
        if response.status_code != 401 or _in_login.get():
            return False
        sent = response.request.headers.get("authorization") if response.request is not None else None
        async with self._get_lock():
            if self._session_header is not None and self._session_header != sent:
                return True  # another call logged in again meanwhile
            self._session_header = None
            await self._login_locked()
        return True

    def map_error(self, method: str, url: str, response: httpx.Response) -> StatusError:
        return map_http_error(method, url, response, login=_login_request.get())

    async def login(self) -> None:
        """Log in (again) and load the user's context; raises ``TrytonAuthFailed`` on a
        wrong user or password."""
        async with self._get_lock():
            await self._login_locked()

    async def _ensure_login(self) -> None:
        if self._session_header is None:
            async with self._get_lock():
                if self._session_header is None:
                    await self._login_locked()

    async def _login_locked(self) -> None:
        token = _in_login.set(True)
        try:
            params = [self.user, {"password": self.__password.get_secret_value()}, self.language]
            credentials = _login_request.set(True)
            try:
                result, _ = await self._rpc("common.db.login", params, idempotent=True, encoded=True)
            finally:
                _login_request.reset(credentials)
            if not isinstance(result, list | tuple) or len(result) < 2:
                raise TrytonBug("common.db.login answered no session", rpc_method="common.db.login")
            user_id, key = int(result[0]), str(result[1])
            register_secret(key, slot=self._slot)
            raw = base64.b64encode(f"{self.user}:{user_id}:{key}".encode()).decode("ascii")
            register_secret(raw, slot=self._slot)
            self._session_header = f"Session {raw}"
            self.user_id = user_id
            self.logins += 1
            prefs, _ = await self._rpc("model.res.user.get_preferences", [True, {}], idempotent=True)
            context = dict(prefs) if isinstance(prefs, dict) else {}
            for name in list(context):
                if name in _DISPLAY_PREFERENCES or "." in name:  # "company.rec_name": display only
                    del context[name]
            self.base_context = {**context, **self.extra_context}
        finally:
            _in_login.reset(token)

    # --- calls ---------------------------------------------------------------------

    async def call(self, method: str, params: Sequence[Any], *, idempotent: bool | None = None) -> Any:
        """One JSON-RPC call (``params`` positional, context last); the decoded result."""
        await self._ensure_login()
        result, _ = await self._rpc(method, params, idempotent=idempotent)
        return result

    async def _rpc(
        self, method: str, params: Sequence[Any], *, idempotent: bool | None = None, encoded: bool = False
    ) -> tuple[Any, ApiResponse]:
        if idempotent is None:
            idempotent = method.rsplit(".", 1)[-1] in READ_METHODS
        request_id = f"{self._prefix}-{next(self._ids)}"
        body = {
            "id": request_id,
            "method": method,
            "params": list(params) if encoded else encode(list(params)),
        }
        headers = {**self._headers, "X-Request-Id": request_id}
        self.rpc_counts[method] += 1
        busy = 0
        while True:
            try:
                response = await self.request(
                    "POST", self._path, json=body, headers=headers, idempotent=idempotent
                )
            except AmbiguousWrite as exc:
                cause = exc.cause
                if isinstance(cause, TrytonBusy):
                    # Tryton answers 503 after rolling the transaction back: nothing applied.
                    if not cause.batch_too_large and busy < self.busy_retries:
                        busy += 1
                        await self._sleep(backoff_delay(busy + 1, self.retry, self._rng))
                        continue
                    cause.request_id = request_id
                    cause.message = f"{method}: {cause.message}"
                    raise cause from None
                exc.request_id = request_id
                exc.message = f"{method}: {exc.message}"
                raise
            except StatusError as exc:
                exc.request_id = exc.request_id or request_id
                exc.message = f"{method}: {exc.message}"
                raise
            data = response.data
            if not isinstance(data, dict):
                raise TrytonBug(
                    "an answer that is not a JSON-RPC object", rpc_method=method, request_id=request_id
                )
            if data.get("error") is not None:
                raise map_rpc_error(data["error"], rpc_method=method, request_id=request_id)
            return decode(data.get("result")), response

    def _context(self, context: Mapping[str, Any] | None) -> dict[str, Any]:
        return {**self.base_context, **(context or {})}

    async def model(
        self, model: str, method: str, *args: Any, context: Mapping[str, Any] | None = None
    ) -> Any:
        """``model.<model>.<method>(*args, context)`` with the user's context under ``context``."""
        await self._ensure_login()
        return await self.call(f"model.{model}.{method}", [*args, self._context(context)])

    async def search_read(
        self,
        model: str,
        domain: Domain,
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        order_ = [list(o) for o in order] if order is not None else None
        rows = await self.model(
            model, "search_read", domain, offset, limit, order_, list(fields), context=context
        )
        return list(rows or [])

    async def search(
        self,
        model: str,
        domain: Domain,
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        order_ = [list(o) for o in order] if order is not None else None
        ids = await self.model(model, "search", domain, offset, limit, order_, context=context)
        return [int(i) for i in ids or []]

    async def search_count(
        self, model: str, domain: Domain, *, context: Mapping[str, Any] | None = None
    ) -> int:
        return int(await self.model(model, "search_count", domain, context=context))

    async def read(
        self,
        model: str,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        rows = await self.model(model, "read", list(ids), list(fields), context=context)
        return list(rows or [])

    async def create(
        self, model: str, values: Sequence[Mapping[str, Any]], context: Mapping[str, Any] | None = None
    ) -> list[int]:
        ids = await self.model(model, "create", [dict(v) for v in values], context=context)
        return [int(i) for i in ids or []]

    async def write(
        self,
        model: str,
        ids: Sequence[int],
        values: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        await self.model(model, "write", list(ids), dict(values), context=context)

    async def delete(self, model: str, ids: Sequence[int], context: Mapping[str, Any] | None = None) -> None:
        await self.model(model, "delete", list(ids), context=context)

    async def server_time(self) -> dt.datetime:
        """The server's clock now (aware UTC, whole seconds), from the ``Date`` header of a
        cheap call (``ir.date.today``): Tryton's timestamps are the server's, so watermarks
        must be too. Falls back to the last ``last_modified_at`` source only when the
        server sends no ``Date`` (never seen with trytond's own server)."""
        await self._ensure_login()
        _, response = await self._rpc("model.ir.date.today", [self._context(None)], idempotent=True)
        header = response.headers.get("date")
        if header:
            try:
                stamp = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError, IndexError):
                stamp = None
            if stamp is not None:
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=dt.UTC)
                return stamp.astimezone(dt.UTC)
        raise TrytonBug(
            "the Tryton server sent no Date header: its clock cannot be read",
            rpc_method="model.ir.date.today",
            request_id=response.request_id,
        )


class SyncTrytonClient:
    """``TrytonClient``'s API, blocking: the async client runs on a private loop thread.

    Use from synchronous code (the Source protocol, the CLI, Celery tasks); close it with
    ``close()`` (or ``with``)."""

    def __init__(
        self,
        base_url: str,
        database: str,
        user: str,
        password: SecretStr | str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        self._portal = Portal()
        try:
            self._client: TrytonClient = self._portal.call(
                lambda: TrytonClient(
                    base_url, database, user, password, timeout=timeout, transport=transport, **kwargs
                )
            )
        except BaseException:
            self._portal.close()
            raise

    def __repr__(self) -> str:
        return f"Sync{self._client!r}"

    def _call(self, fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        portal_call: Any = self._portal.call
        result: _T = portal_call(fn, *args, **kwargs)
        return result

    @property
    def client(self) -> TrytonClient:
        return self._client

    @property
    def rpc_counts(self) -> Counter[str]:
        return self._client.rpc_counts

    @property
    def base_context(self) -> dict[str, Any]:
        return self._client.base_context

    def login(self) -> None:
        self._call(self._client.login)

    def submit(self, method: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Start ``method(*args, **kwargs)`` of the async client without waiting: a future
        (pipelining, e.g. the next keyset page while this one is processed)."""
        if method.startswith("_") or not hasattr(self._client, method):
            raise AttributeError(method)
        coro = getattr(self._client, method)(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(coro, self._portal._loop)  # the portal's own loop

    def call(self, method: str, params: Sequence[Any], *, idempotent: bool | None = None) -> Any:
        return self._call(self._client.call, method, params, idempotent=idempotent)

    def model(self, model: str, method: str, *args: Any, context: Mapping[str, Any] | None = None) -> Any:
        return self._call(self._client.model, model, method, *args, context=context)

    def search_read(
        self,
        model: str,
        domain: Domain,
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return self._call(
            self._client.search_read,
            model,
            domain,
            fields,
            offset=offset,
            limit=limit,
            order=order,
            context=context,
        )

    def search(
        self,
        model: str,
        domain: Domain,
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        return self._call(
            self._client.search, model, domain, offset=offset, limit=limit, order=order, context=context
        )

    def search_count(self, model: str, domain: Domain, *, context: Mapping[str, Any] | None = None) -> int:
        return self._call(self._client.search_count, model, domain, context=context)

    def read(
        self,
        model: str,
        ids: Sequence[int],
        fields: Sequence[str],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return self._call(self._client.read, model, ids, fields, context=context)

    def create(
        self, model: str, values: Sequence[Mapping[str, Any]], context: Mapping[str, Any] | None = None
    ) -> list[int]:
        return self._call(self._client.create, model, values, context)

    def write(
        self,
        model: str,
        ids: Sequence[int],
        values: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self._call(self._client.write, model, ids, values, context)

    def delete(self, model: str, ids: Sequence[int], context: Mapping[str, Any] | None = None) -> None:
        self._call(self._client.delete, model, ids, context)

    def server_time(self) -> dt.datetime:
        return self._call(self._client.server_time)

    def close(self) -> None:
        try:
            self._call(self._client.aclose)
        finally:
            self._portal.close()

    aclose = close

    def __enter__(self) -> SyncTrytonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
