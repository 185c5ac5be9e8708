"""The tenant lease is a compare-and-set: of many processes racing for it, exactly one wins.

Issue #14 item 2: on SQLite the old read-then-write let two processes take the same lease
(``SELECT … FOR UPDATE`` does nothing there). Eight processes race 20 rounds on each store,
alternating the two ways a lease is free: no row yet (INSERT race) and an expired row
(UPDATE race).
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from typing import Any

import pytest

from sync.state.store import StateStore

RACERS = 8
ROUNDS = 20


def _racer(url: str, name: str, barrier: Any, results: Any, rounds: int) -> None:
    from sync.state.db import dispose_engines

    dispose_engines()  # never reuse the parent's pooled connections after fork
    store = StateStore(url, migrate=False)
    holder = f"racer-{uuid.uuid4().hex[:8]}"
    for r in range(rounds):
        try:
            barrier.wait(timeout=60)
        except Exception:  # the parent aborted the race (a failed round)
            return
        try:
            token = store.acquire_lease(name, holder, 60)
        except Exception as exc:  # a lock error is a failure to acquire, reported as such
            results.put((r, holder, f"error: {type(exc).__name__}: {exc}"))
        else:
            results.put((r, holder, token))
        barrier.wait(timeout=60)  # the parent resets the lease between rounds


@pytest.mark.slow
def test_many_processes_racing_for_a_lease_exactly_one_wins_each_round(state_url: str) -> None:
    from sqlalchemy import delete, update

    from sync.errors import utcnow
    from sync.state.models import Lease

    store = StateStore(state_url)
    name = f"reconcile:race-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(RACERS + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(state_url, name, barrier, results, ROUNDS)) for _ in range(RACERS)
    ]
    for p in procs:
        p.start()
    try:
        last_holder, last_token = "", 0
        for r in range(ROUNDS):
            with store.engine.begin() as conn:
                if r % 2 == 0:
                    conn.execute(delete(Lease).where(Lease.name == name))
                else:
                    conn.execute(update(Lease).where(Lease.name == name).values(expires_at=utcnow()))
            barrier.wait(timeout=60)
            got = [results.get(timeout=60) for _ in range(RACERS)]
            barrier.wait(timeout=60)
            errors = [g for g in got if isinstance(g[2], str)]
            assert not errors, errors
            winners = [(holder, token) for _, holder, token in got if token is not None]
            assert len(winners) == 1, f"round {r}: {len(winners)} holders at once: {winners}"
            holder, token = winners[0]
            if r % 2 == 1 and holder != last_holder:  # a new holder of an existing row: a new token
                assert token > last_token
            last_holder, last_token = holder, token
    finally:
        barrier.abort()  # racers still waiting give up at once
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
