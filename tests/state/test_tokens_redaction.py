"""Rotating session tokens stay masked without the redaction set growing on every rotation."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time

from sync.clients.smartkasa.auth import MemoryTokenStore, SessionManager, TokenSet
from sync.redact import MASK, registered_count, scrub


def test_a_long_lived_session_keeps_the_redaction_set_bounded() -> None:
    gc.collect()  # sessions of earlier tests are gone before the baseline is taken
    baseline = registered_count()
    counter = itertools.count()
    issued: list[TokenSet] = []

    async def login() -> TokenSet:
        n = next(counter)
        issued.append(TokenSet(access=f"access-token-{n:06d}", refresh=f"refresh-token-{n:06d}"))
        return issued[-1]

    async def refresh(_token: str) -> TokenSet:
        return await login()

    session = SessionManager(login=login, refresh=refresh, store=MemoryTokenStore())

    async def rotate(session: SessionManager, times: int) -> None:
        await session.access_token()
        for _ in range(times):
            await session.renew_after_unauthorized()
            assert scrub(f"sent {issued[-1].access}") == f"sent {MASK}"  # a log line after each rotation

    started = time.perf_counter()
    asyncio.run(rotate(session, 3000))
    elapsed = time.perf_counter() - started
    assert registered_count() <= baseline + 4  # current and previous access and refresh tokens
    assert scrub(issued[-2].refresh or "") == MASK  # the token just replaced is still masked
    assert elapsed < 20  # linear: the old growing, recompiled pattern took minutes here
    del session
    gc.collect()
    assert registered_count() == baseline  # a closed session's tokens are dropped


def test_a_new_session_keeps_its_tokens_masked_after_an_old_one_is_collected() -> None:
    """Slots are numbered, not keyed by id(): a reused id must not forget the new session's tokens."""

    async def login_as(token: str) -> TokenSet:
        return TokenSet(access=token, refresh=token + "-refresh")

    for i in range(50):
        old = SessionManager(
            login=lambda i=i: login_as(f"old-session-token-{i:03d}"),
            refresh=lambda _t: login_as("x"),
            store=MemoryTokenStore(),
        )
        asyncio.run(old.access_token())
        del old  # its slots are queued to be forgotten
        new = SessionManager(
            login=lambda i=i: login_as(f"new-session-token-{i:03d}"),
            refresh=lambda _t: login_as("x"),
            store=MemoryTokenStore(),
        )
        asyncio.run(new.access_token())
        gc.collect()
        assert scrub(f"new-session-token-{i:03d}") == MASK
        del new
