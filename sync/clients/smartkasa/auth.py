"""SmartKasa session: login, proactive and single-flight refresh, rotation, re-login.

Why it works this way (contract §2, §8):

- Tokens are opaque: expiry comes from ``access_expires_at``/``refresh_expires_at`` in
  the login/refresh answer; the JWT is never decoded.
- Proactive refresh: a token is renewed before use once ``now >= access_expires_at -
  margin`` (default 5 min). If a token's whole lifetime is shorter than twice the margin
  (short-lived sandbox tokens), the margin shrinks to half the lifetime, so a fresh token
  is never judged stale at once (no refresh on every request).
- Single flight: one ``asyncio.Lock`` guards every renewal, and a *generation* counter
  is bumped on each new token. A request remembers the generation of the token it sent;
  after a 401 it asks for a renewal *of that generation*: if another request already
  renewed, it just retries with the new token. Twenty concurrent 401s → one refresh.
- Refresh sends ``X-Refresh-Token`` (Blueprint form); the answer carries a new refresh
  token too (rotation), which is saved through the :class:`TokenStore` before use.
- A refresh that fails for any reason (401, a lost answer that may have consumed the
  single-use token, an expired refresh token) falls back to a fresh login. Login
  rejections (401/403/422) are terminal :class:`AuthFailed`.
- Expiries are on the server's clock: the answer's ``Date`` moves them onto ours (clock skew).
- A missing or unparsable ``*_expires_at`` means "no proactive renewal": the token is
  used until the server answers 401.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import itertools
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sync import errors as E
from sync.redact import forget_slots, register_secret

log = logging.getLogger(__name__)

DEFAULT_REFRESH_MARGIN = dt.timedelta(minutes=5)
# A Date header has whole seconds and the answer takes time to arrive: a smaller difference
# between the clocks is noise, not skew.
CLOCK_TOLERANCE = dt.timedelta(seconds=5)
_session_numbers = itertools.count(1)


def parse_timestamp(value: Any) -> dt.datetime | None:
    """ISO 8601 with offset (``2021-03-23T13:51:37.000+02:00``) → aware datetime, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """One session's tokens; the repr never shows them."""

    access: str = field(repr=False)
    refresh: str | None = field(default=None, repr=False)
    access_expires_at: dt.datetime | None = None
    refresh_expires_at: dt.datetime | None = None
    obtained_at: dt.datetime | None = None

    @classmethod
    def from_response(cls, data: Any, *, now: dt.datetime, server_now: dt.datetime | None = None) -> TokenSet:
        """Build from a login/refresh ``data`` object; a missing ``access`` breaks the contract.

        The ``*_expires_at`` instants are on the server's clock. With the answer's ``Date``
        (``server_now``, whole seconds, so only a difference over ``CLOCK_TOLERANCE`` counts)
        they become lifetimes added to our ``now``, so a skewed clock on
        either side neither renews a fresh token on every request nor keeps an expired one.
        Without it, an access expiry that is already past on our clock (a fresh token cannot
        be expired: the clocks differ) is dropped, and the token is used until a 401."""
        if not isinstance(data, dict) or not isinstance(data.get("access"), str) or not data["access"]:
            raise E.ContractViolation("session answer without an access token", platform="smartkasa")
        refresh = data.get("refresh")
        access_expires = parse_timestamp(data.get("access_expires_at"))
        refresh_expires = parse_timestamp(data.get("refresh_expires_at"))
        if server_now is not None and abs(now - server_now) > CLOCK_TOLERANCE:
            shift = now - server_now
            access_expires = access_expires + shift if access_expires else None
            refresh_expires = refresh_expires + shift if refresh_expires else None
        if access_expires is not None and access_expires <= now:
            log.warning(
                "smartkasa: a new token expires at %s, already past on this machine's clock (%s):"
                " the clocks differ; renewing on 401 only. Sync this machine's clock (NTP).",
                access_expires.isoformat(),
                now.isoformat(),
            )
            access_expires = None
        return cls(
            access=data["access"],
            refresh=refresh if isinstance(refresh, str) and refresh else None,
            access_expires_at=access_expires,
            refresh_expires_at=refresh_expires,
            obtained_at=now,
        )

    def to_dict(self) -> dict[str, str | None]:
        """Serializable form for token stores (the values are secrets: store them as such)."""

        def iso(v: dt.datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {
            "access": self.access,
            "refresh": self.refresh,
            "access_expires_at": iso(self.access_expires_at),
            "refresh_expires_at": iso(self.refresh_expires_at),
            "obtained_at": iso(self.obtained_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSet:
        return cls(
            access=str(data["access"]),
            refresh=data.get("refresh"),
            access_expires_at=parse_timestamp(data.get("access_expires_at")),
            refresh_expires_at=parse_timestamp(data.get("refresh_expires_at")),
            obtained_at=parse_timestamp(data.get("obtained_at")),
        )


class TokenStore(Protocol):
    """Where the rotated tokens survive a restart (the lead's one is state-store backed)."""

    async def load(self) -> TokenSet | None: ...

    async def save(self, tokens: TokenSet) -> None: ...


class MemoryTokenStore:
    """Process-local :class:`TokenStore` (tests, one-shot CLI runs)."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self.tokens = tokens
        self.saves = 0

    async def load(self) -> TokenSet | None:
        return self.tokens

    async def save(self, tokens: TokenSet) -> None:
        self.tokens = tokens
        self.saves += 1

    def __repr__(self) -> str:
        return f"MemoryTokenStore(has_tokens={self.tokens is not None}, saves={self.saves})"


LoginFn = Callable[[], Awaitable[TokenSet]]
RefreshFn = Callable[[str], Awaitable[TokenSet]]

# Generation of the token the current task last attached to a request.
_sent_generation: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "sk_sent_generation", default=None
)


class SessionManager:
    """Hands out a valid access token and renews it once per expiry (see module docstring)."""

    def __init__(
        self,
        *,
        login: LoginFn,
        refresh: RefreshFn,
        store: TokenStore,
        margin: dt.timedelta = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], dt.datetime] = E.utcnow,
    ) -> None:
        self._login = login
        self._refresh = refresh
        self._store = store
        self._margin = margin
        self._clock = clock
        self._tokens: TokenSet | None = None
        self._loaded = False
        self._generation = 0
        self._lock: asyncio.Lock | None = None
        self.logins = 0
        self.refreshes = 0
        # Redaction slots: each renewal replaces this session's tokens in the redaction set
        # instead of adding to it; they are dropped when the session is gone.
        # A counter, not id(self): a new session can reuse a collected one's id while the old
        # slot is still queued to be forgotten, which would drop the new session's tokens.
        n = next(_session_numbers)
        self._slots = (f"smartkasa-session-{n}:access", f"smartkasa-session-{n}:refresh")
        weakref.finalize(self, forget_slots, *self._slots)

    def __repr__(self) -> str:
        return (
            f"SessionManager(generation={self._generation}, logins={self.logins}, refreshes={self.refreshes})"
        )

    @property
    def generation(self) -> int:
        return self._generation

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _usable(self, tokens: TokenSet) -> bool:
        expires = tokens.access_expires_at
        if expires is None:
            return True
        margin = self._margin
        if tokens.obtained_at is not None:
            margin = min(margin, (expires - tokens.obtained_at) / 2)
        return self._clock() < expires - margin

    def _refreshable(self, tokens: TokenSet) -> bool:
        if not tokens.refresh:
            return False
        return tokens.refresh_expires_at is None or self._clock() < tokens.refresh_expires_at

    async def access_token(self) -> str:
        """A token valid for at least the margin; renews (single-flight) when needed."""
        tokens = self._tokens
        if tokens is None or not self._usable(tokens):
            async with self._get_lock():
                if not self._loaded:
                    self._loaded = True
                    stored = await self._store.load()
                    if stored is not None and self._tokens is None:
                        self._remember(stored, bump=False)
                tokens = self._tokens
                if tokens is None or not self._usable(tokens):
                    await self._renew(tokens)
            tokens = self._tokens
            assert tokens is not None
        _sent_generation.set(self._generation)
        return tokens.access

    def sent_fresh_token(self) -> bool:
        """Whether the token this task last sent is the newest one this session obtained
        (by login or refresh, not loaded from the store): a 401 to it is not an expiry."""
        return self._generation > 0 and _sent_generation.get() == self._generation

    async def renew_after_unauthorized(self) -> None:
        """After a 401: renew unless another request already did since our token was sent."""
        sent = _sent_generation.get()
        async with self._get_lock():
            if sent is not None and sent != self._generation:
                return
            await self._renew(self._tokens)

    async def _renew(self, tokens: TokenSet | None) -> None:
        if tokens is not None and self._refreshable(tokens):
            assert tokens.refresh is not None
            try:
                self.refreshes += 1
                fresh = await self._refresh(tokens.refresh)
            except E.ClientError as exc:
                log.info("smartkasa refresh failed (%s); logging in again", type(exc).__name__)
            else:
                await self._adopt(fresh)
                return
        self.logins += 1
        await self._adopt(await self._login())

    async def _adopt(self, tokens: TokenSet) -> None:
        await self._store.save(tokens)
        self._remember(tokens, bump=True)

    def _remember(self, tokens: TokenSet, *, bump: bool) -> None:
        register_secret(tokens.access, slot=self._slots[0])
        register_secret(tokens.refresh, slot=self._slots[1])
        self._tokens = tokens
        if bump:
            self._generation += 1
