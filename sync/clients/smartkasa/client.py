"""SmartKasa API client on the shared request loop (``sync.clients.http.RequestLoop``).

The loop owns retries, the rate governor, counters and error plumbing; this class adds
SmartKasa's two-layer auth (``X-API-KEY`` on every call plus a session token, see
``auth``), its error shapes (``errors``), body style, pagination, and the resources::

    async with SmartKasaClient(settings, transport=transport) as sk:
        async for product in sk.products.list(): ...
        ids = await sk.products.create_many([{"number": "482...", "title": "Tea", "price": Decimal("71.89")}])

Auth details: login and refresh are sent without ``Authorization`` (a context flag keeps
``auth_headers`` from asking the session for a token while it is being renewed, which
would deadlock). Login is resent on transient failures (a second session is harmless);
refresh is not (its token is single-use), a failed refresh falls back to login. A 403 is
never "cured" by re-authenticating: it is a configuration error (contract §8).

Login body: the Blueprint form ``{"session": {...}}`` and the OpenAPI form (the two fields
at the top level) in one body, whatever ``body_style`` says. The contract (§2.2, §9.1.3)
allows a server that accepts only one of them; the other part is an unknown attribute,
which a Rails backend drops (§1) and the OpenAPI schema allows (``additionalProperties``).

Auth scheme (§2.1: bare token or ``Bearer <token>`` is not stated): the configured scheme
is tried first. If a data call answers 401 while no data call has yet succeeded, and the
token sent was fresh (just renewed) or a renewal did not cure it, the call is resent once
with the other scheme; whichever scheme first succeeds is kept for the client's life.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import httpx

from sync import errors as E
from sync.clients.governor import Governor
from sync.clients.http import ApiResponse, RequestLoop, parse_body
from sync.clients.retry import RetryPolicy, http_date
from sync.clients.smartkasa import resources as R
from sync.clients.smartkasa.auth import MemoryTokenStore, SessionManager, TokenSet, TokenStore
from sync.clients.smartkasa.config import AuthScheme, SmartKasaSettings
from sync.clients.smartkasa.encoding import batch_body, record_body
from sync.clients.smartkasa.errors import PLATFORM, map_status_error
from sync.clients.smartkasa.pagination import iterate_pages
from sync.redact import register_secret

LOGIN_PATH = "/api/v1/auth/sessions"
REFRESH_PATH = "/api/v1/auth/refresh"
LOGOUT_PATH = "/api/v1/auth/sessions/logout"

log = logging.getLogger(__name__)
_session_call: contextvars.ContextVar[bool] = contextvars.ContextVar("sk_session_call", default=False)
_sent_scheme: contextvars.ContextVar[str | None] = contextvars.ContextVar("sk_sent_scheme", default=None)
_OTHER_SCHEME: dict[str, AuthScheme] = {"bearer": "bare", "bare": "bearer"}


class SmartKasaClient(RequestLoop):
    """One SmartKasa account (API key + user session)."""

    platform = PLATFORM

    def __init__(
        self,
        settings: SmartKasaSettings,
        *,
        account: str = "default",
        transport: httpx.AsyncBaseTransport | None = None,
        governor: Governor | None = None,
        retry: RetryPolicy | None = None,
        token_store: TokenStore | None = None,
        clock: Callable[[], dt.datetime] = E.utcnow,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            settings.base_url,
            account=account,
            transport=transport,
            governor=governor,
            retry=retry,
            timeout=settings.timeout,
            max_connections=settings.max_connections,
            sleep=sleep,
            rng=rng,
        )
        self.settings = settings
        for secret in (settings.api_key, settings.phone_number, settings.password):
            register_secret(secret.get_secret_value())
        self._clock = clock
        # Auth scheme detection (module docstring): the scheme in use, whether a data call
        # has succeeded with it (then it is kept), and whether the one switch was spent.
        self.auth_scheme: AuthScheme = settings.auth_scheme
        self._scheme_confirmed = False
        self._scheme_switched = False
        self.session = SessionManager(
            login=self.login,
            refresh=self.refresh_tokens,
            store=token_store if token_store is not None else MemoryTokenStore(),
            margin=dt.timedelta(seconds=settings.refresh_margin_seconds),
            clock=clock,
        )
        self.unit_types = R.UnitTypes(self)
        self.shops = R.Shops(self)
        self.subgroups = R.Subgroups(self)
        self.categories = R.Categories(self)
        self.products = R.Products(self)
        self.cards = R.Cards(self)
        self.shifts = R.Shifts(self)
        self.receipts = R.Receipts(self)
        self.z_reports = R.ZReports(self)
        self.payment_transactions = R.PaymentTransactions(self)

    # --- RequestLoop hooks ----------------------------------------------------------

    async def auth_headers(self) -> dict[str, str]:
        headers = {"X-API-KEY": self.settings.api_key.get_secret_value()}
        if not _session_call.get():
            token = await self.session.access_token()
            scheme = self.auth_scheme
            _sent_scheme.set(scheme)
            headers["Authorization"] = f"Bearer {token}" if scheme == "bearer" else token
        return headers

    async def handle_unauthorized(self, response: httpx.Response) -> bool:
        if response.status_code != 401 or _session_call.get():
            return False
        sent = _sent_scheme.get()
        if not self._scheme_confirmed and sent is not None:
            if sent != self.auth_scheme:  # another call switched meanwhile: resend with its scheme
                return True
            if not self._scheme_switched and self.session.sent_fresh_token():
                self._switch_scheme()
                return True
        await self.session.renew_after_unauthorized()
        return True

    def _switch_scheme(self) -> None:
        self._scheme_switched = True
        self.auth_scheme = _OTHER_SCHEME[self.auth_scheme]
        # Once per client: the names of the schemes only, never the token.
        log.warning(
            "smartkasa answered 401 to a fresh token sent as %s; trying the %s Authorization form",
            _OTHER_SCHEME[self.auth_scheme],
            self.auth_scheme,
        )

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
        kwargs: dict[str, Any] = {
            "path_params": path_params,
            "params": params,
            "json": json,
            "headers": headers,
            "idempotent": idempotent,
        }
        if _session_call.get() or self._scheme_confirmed:
            return await super().request(method, path, **kwargs)
        try:
            response = await super().request(method, path, **kwargs)
        except E.Unauthorized:
            # 401 even after a renewal (e.g. a stored token was renewed first): the other
            # scheme gets one try per client life. A 401 means nothing was applied, so a
            # POST can be resent.
            if self._scheme_confirmed or self._scheme_switched:
                raise
            self._switch_scheme()
            try:
                response = await super().request(method, path, **kwargs)
            except E.Unauthorized:
                if not self._scheme_confirmed:
                    self.auth_scheme = self.settings.auth_scheme
                raise
        sent = _sent_scheme.get()
        if sent is not None and sent == self.auth_scheme:
            self._scheme_confirmed = True
        return response

    def map_error(self, method: str, url: str, response: httpx.Response) -> E.StatusError:
        path = httpx.URL(url).path
        return map_status_error(
            response.status_code,
            parse_body(response),
            method=method,
            url=url,
            headers=response.headers,
            request_id=response.headers.get(self.request_id_header),
            batch_create=method == "POST" and path.rstrip("/").endswith("/batch"),
        )

    # --- session operations ---------------------------------------------------------

    async def login(self) -> TokenSet:
        """``POST /auth/sessions``; a rejection is a terminal :class:`AuthFailed`."""
        creds = {
            "phone_number": self.settings.phone_number.get_secret_value(),
            "password": self.settings.password.get_secret_value(),
        }
        flag = _session_call.set(True)
        try:
            response = await self.request(
                "POST", LOGIN_PATH, json={"session": creds, **creds}, idempotent=True
            )
        except (E.Unauthorized, E.Forbidden, E.Unprocessable, E.BadRequest) as exc:
            raise E.AuthFailed(
                f"login rejected: {exc.message}",
                status=exc.status,
                request_id=exc.request_id,
                body=exc.body,
                code=exc.code,
                platform=PLATFORM,
                method="POST",
                url=exc.url,
            ) from None
        finally:
            _session_call.reset(flag)
        return self._tokens_of(response)

    async def refresh_tokens(self, refresh_token: str) -> TokenSet:
        """``POST /auth/refresh`` with ``X-Refresh-Token``; never resent (single-use token)."""
        flag = _session_call.set(True)
        try:
            response = await self.request("POST", REFRESH_PATH, headers={"X-Refresh-Token": refresh_token})
        finally:
            _session_call.reset(flag)
        return self._tokens_of(response)

    def _tokens_of(self, response: ApiResponse) -> TokenSet:
        """The session's tokens, their expiry moved onto our clock by the answer's ``Date``."""
        return TokenSet.from_response(
            self._data(response.data), now=self._clock(), server_now=http_date(response.headers.get("date"))
        )

    async def logout(self) -> None:
        """``DELETE /auth/sessions/logout`` (ends the server session; the next call logs in again)."""
        await self.request("DELETE", LOGOUT_PATH)

    # --- helpers for resources --------------------------------------------------------

    @staticmethod
    def _data(body: Any) -> Any:
        if not isinstance(body, dict) or "data" not in body:
            raise E.ContractViolation("answer without the {data, meta} envelope", platform=PLATFORM)
        return body["data"]

    async def get_data(
        self,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """GET and unwrap ``data``."""
        response = await self.request("GET", path, path_params=path_params, params=params)
        return self._data(response.data)

    async def send(
        self, method: str, path: str, *, path_params: Mapping[str, str] | None = None, json: Any = None
    ) -> Any:
        """A write; unwraps ``data`` (``None`` when the answer has no body)."""
        response = await self.request(method, path, path_params=path_params, json=json)
        return None if response.data is None else self._data(response.data)

    def iter_list(self, path: str, params: Mapping[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every record of a list endpoint, fetched page by page as the caller iterates."""
        base = {k: v for k, v in (params or {}).items() if v is not None}

        async def fetch(page: int) -> Any:
            query = {**base, "page": page, "per_page": self.settings.per_page}
            return (await self.request("GET", path, params=query)).data

        return iterate_pages(fetch)

    def record_body(
        self, resource: str, fields: Mapping[str, Any], *, inner_id: str | None = None
    ) -> dict[str, Any]:
        return record_body(resource, fields, self.settings.body_style, inner_id=inner_id)

    def batch_body(self, collection: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return batch_body(collection, items, self.settings.body_style)
