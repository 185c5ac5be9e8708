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
