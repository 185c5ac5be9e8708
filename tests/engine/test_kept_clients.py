"""An engine that keeps its clients (the Celery worker's): one loop and one client per
platform across calls, request counts still per run, everything closed by ``close()``."""

from __future__ import annotations

import sqlite3

import httpx
from apply_helpers import MakePlayground, check_invariants

from sync.engine.api import Engine


class ClosingTransport(httpx.AsyncBaseTransport):
    """The real transport, with a note of how often it was closed."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.closed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        self.closed += 1
        await self.inner.aclose()


def _rename(pg: object, keys: list[str], suffix: str) -> None:
    with sqlite3.connect(pg.erp_path) as conn:  # type: ignore[attr-defined]
        conn.executemany(
            "UPDATE funcionarios SET nome = nome || ? WHERE matricula = ?", [(suffix, k) for k in keys]
        )
    conn.close()


def test_kept_clients_serve_many_runs_with_per_run_counts(playground: MakePlayground) -> None:
    pg = playground("kept", employees=20, products_epi=2, products_kasa=2)
    epi, kasa = ClosingTransport(), ClosingTransport()
    engine = Engine(pg.settings(), transports={"smartepi": epi, "smartkasa": kasa}, keep_clients=True)
    first = engine.apply(mode="full")
    assert first.status == "ok" and first.total_requests > 20
    rt = engine.runtime(None)
    kept = dict(rt._clients)
    assert set(kept) == {"smartepi", "smartkasa"}

    keys = sorted(check_invariants(pg, engine=engine).ids[("smartepi", "employees")])[:2]
    _rename(pg, keys, " (kept)")
    second = engine.sync_keys(None, "funcionarios", keys)
    # Only this run's requests: the kept client's earlier ones are not counted again.
    assert second.requests == {"smartepi": {"PUT /employees/{id} 200": 2}}, second.requests
    assert rt._clients == kept and all(rt._clients[p] is kept[p] for p in kept)
    assert epi.closed == 0 and kasa.closed == 0  # a run's end does not close a kept client

    third = engine.sync_keys(None, "funcionarios", keys)
    assert third.status == "ok" and third.total_requests == 0
    names = {e["name"] for e in pg.epi_state()["employees"]}
    assert sum(name.endswith(" (kept)") for name in names) == 2

    engine.close()
    assert epi.closed == 1 and kasa.closed == 1 and rt._clients == {}
    report = check_invariants(pg, engine=engine)
    assert report.ok, report.summary()


def test_an_engine_that_keeps_nothing_closes_its_clients_after_each_run(playground: MakePlayground) -> None:
    pg = playground("fresh", employees=5, products_epi=1, products_kasa=1)
    epi, kasa = ClosingTransport(), ClosingTransport()
    engine = Engine(pg.settings(), transports={"smartepi": epi, "smartkasa": kasa})
    engine.apply(mode="full")
    assert epi.closed == 1 and kasa.closed == 1
    assert engine.runtime(None)._clients == {}
    engine.close()  # nothing kept: a no-op
