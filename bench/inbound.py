"""Inbound benchmarks: webhook events/s end to end, and pull requests against the page lower bound.

1. Webhooks: N signed events POSTed by ``--clients`` threads to the receiver (uvicorn, in a
   child process) which stores each in the inbox and enqueues its id; a worker process (a
   multiprocessing queue stands in for Celery on Redis) applies batches to the SQL sink
   (SQLite files). Measured from the first POST
   until every event is a row in the sink. Target ≥ 500 events/s.
2. Pulls: 100,000 SmartKasa receipts (closed shifts of 2,000 receipts) and 100,000 SmartEPI
   withdrawals in the sandboxes (in-process, ASGI), pulled with a counting sink. The lower
   bound is ceil(records / max page size) list requests; target ratio ≤ 1.05.

    python bench/inbound.py [--events 3000] [--clients 8] [--receipts 100000] [--withdrawals 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "inbound"))

WEBHOOK_TARGET = 500.0
RATIO_TARGET = 1.05
SECRET = "whsec_bench_secret_0123456789abcdef"
TENANT = "bench"


def _tenant_settings(kasa: bool = False) -> Any:
    from sync.settings import TenantSettings

    data: dict[str, Any] = {
        "erp": {"kind": "sql", "url": "sqlite://"},
        "mappings": ["none.yaml"],
        "smartepi": {"base_url": "http://127.0.0.1:9", "api_key": "sk_bench", "webhook_secrets": [SECRET]},
    }
    if kasa:
        data["smartkasa"] = {
            "base_url": "http://127.0.0.1:9",
            "api_key": "kasa-bench",
            "phone": "380960000006",
            "password": "123456789",
        }
    return TenantSettings.model_validate(data)


# --- 1. webhooks ------------------------------------------------------------------------


def _open(folder: str) -> tuple[Any, Any]:
    from sync.sinks.sql import SqlSink
    from sync.state.store import StateStore

    store = StateStore(f"sqlite:///{folder}/state.db")
    sink = SqlSink(f"sqlite:///{folder}/erp.db", tenant=TENANT, store=store)
    return store, sink


def _worker(folder: str, work: Any) -> None:
    """Stands in for the Celery worker (its own process): applies enqueued inbox rows in batches."""
    from sync.engine.inbound import process_inbox

    store, sink = _open(folder)
    tenant = _tenant_settings()
    while (batch := work.get()) is not None:
        while len(batch) < 500:
            try:
                more = work.get_nowait()
            except queue.Empty:
                break
            if more is None:
                work.put(None)
                break
            batch += more
        process_inbox(store, TENANT, tenant, sink, batch)


def _receiver(port: int, folder: str, work: Any, ready: Any, stop: Any) -> None:
    import uvicorn
    from fastapi import FastAPI

    from sync.settings import Settings
    from sync.web.webhooks import make_webhook_router

    store, sink = _open(folder)
    settings = Settings(tenants={TENANT: _tenant_settings()})
    app = FastAPI()
    app.include_router(make_webhook_router(lambda: settings, lambda: store, lambda t, ids: work.put(ids)))

    @app.get("/count")
    def count() -> dict[str, int]:
        return {"rows": len(sink.rows("withdrawals"))}

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    )
    threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit", True)), daemon=True).start()
    ready.set()
    server.run()


def bench_webhooks(events: int, clients: int) -> float:
    from inbound_helpers import free_port

    from sync.core.signature import sign

    port = free_port()
    folder = tempfile.mkdtemp(prefix="erpsync-bench-")
    store, sink = _open(folder)
    sink.ensure_tables()
    for i in range(50):
        store.save_base(TENANT, "smartepi", "employees", f"EMP-{i}", f"e-{i}", {})
        store.save_base(TENANT, "smartepi", "products", f"SKU-{i}", f"p-{i}", {})
    from sync.state.db import dispose_engines

    dispose_engines()  # no pooled connection crosses the fork
    ctx = mp.get_context("fork")
    ready, stop, work = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(port, folder, work, ready, stop), daemon=True)
    worker = ctx.Process(target=_worker, args=(folder, work), daemon=True)
    proc.start()
    worker.start()
    ready.wait(30)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/count", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    bodies = []
    for i in range(events):
        data = {"id": f"w-{i}", "employeeId": f"e-{i % 50}", "productId": f"p-{i % 50}", "quantity": 1,
                "withdrawalStatus": "SUCCESS", "createdAt": "2025-06-01T10:00:00Z"}  # fmt: skip
        bodies.append(json.dumps({"id": f"evt_withdrawal_created_w-{i}", "type": "withdrawal.created",
                                  "createdAt": 1750000000, "data": data}).encode())  # fmt: skip
    chunks = [bodies[i::clients] for i in range(clients)]

    def send(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for body in chunk:
                header = sign(body, SECRET, timestamp=int(time.time()))
                r = client.post(
                    f"/webhooks/smartepi/{TENANT}", content=body, headers={"X-SmartEPI-Signature": header}
                )
                r.raise_for_status()

    start = time.perf_counter()
    threads = [threading.Thread(target=send, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    posted = time.perf_counter() - start
    while httpx.get(f"{url}/count", timeout=30).json()["rows"] < events:
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    stop.set()
    work.put(None)
    proc.join(10)
    worker.join(10)
    rate = events / elapsed
    verdict = "OK" if rate >= WEBHOOK_TARGET else "BELOW TARGET"
    print(f"webhooks: {events} events in {elapsed:.2f} s ({posted:.2f} s to POST): {rate:,.0f} events/s"
          f" (target >= {WEBHOOK_TARGET:.0f}) {verdict}")  # fmt: skip
    return rate


# --- 2. pulls ----------------------------------------------------------------------------


class CountingSink:
    """Maps and counts rows without storing them: this part measures requests, not the ERP."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def write_many(self, batches: Any) -> int:
        for stream, rows in batches.items():
            self.rows[stream] = self.rows.get(stream, 0) + len(rows)
        return sum(len(r) for r in batches.values())

    def write(self, stream: str, records: Any) -> int:
        return self.write_many({stream: records})

    def close(self) -> None:
        pass


def bench_kasa(receipts: int, per_shift: int = 2000) -> float:
    from kasa_env import KasaEnv

    from sync.engine.pull import pull_async
    from sync.sandbox.smartkasa import generators
    from sync.state.store import StateStore

    env = KasaEnv(products=20)
    t0 = time.perf_counter()
    left = receipts
    while left > 0:
        shift = generators.open_shift(env.store, env.t, env.rng)
        generators.sell(env.store, env.t, env.rng, shift["id"], min(per_shift, left))
        generators.close_shift(env.store, env.t, shift["id"], with_z_report=False)
        left -= per_shift
    print(f"  (generated {receipts} receipts in {time.perf_counter() - t0:.1f} s)")
    store = StateStore(f"sqlite:///{tempfile.mkdtemp()}/state.db")
    sink = CountingSink()

    async def go() -> Any:
        client = env.client(per_page=100)
        try:
            return await pull_async(store, TENANT, _tenant_settings(kasa=True), sink, kasa_client=client,
                                    streams=["shifts"])  # fmt: skip
        finally:
            await client.aclose()

    t0 = time.perf_counter()
    summary = asyncio.run(go())
    elapsed = time.perf_counter() - t0
    assert sink.rows["receipts"] == receipts, sink.rows
    bound = -(-receipts // 100)
    ratio = summary.requests["smartkasa"] / bound
    verdict = "OK" if ratio <= RATIO_TARGET else "ABOVE TARGET"
    sent = summary.requests["smartkasa"]
    print(f"smartkasa: {receipts} receipts, {sent} requests (login and shift list included) / lower bound"
          f" {bound} = {ratio:.3f} (target <= {RATIO_TARGET}) in {elapsed:.1f} s {verdict}")  # fmt: skip
    return ratio


def bench_epi(withdrawals: int) -> float:
    from epi_env import EpiEnv

    from sync.engine.pull import pull_async
    from sync.state.store import StateStore

    env = EpiEnv()
    t0 = time.perf_counter()
    env.generate("withdrawals", withdrawals, seed=1)
    print(f"  (generated {withdrawals} withdrawals in {time.perf_counter() - t0:.1f} s)")
    store = StateStore(f"sqlite:///{tempfile.mkdtemp()}/state.db")
    env.bind_all(store, TENANT)
    sink = CountingSink()

    async def go() -> Any:
        client = env.client()
        try:
            return await pull_async(store, TENANT, _tenant_settings(), sink, epi_client=client,
                                    streams=["withdrawals"])  # fmt: skip
        finally:
            await client.aclose()

    t0 = time.perf_counter()
    summary = asyncio.run(go())
    elapsed = time.perf_counter() - t0
    assert sink.rows["withdrawals"] == withdrawals, sink.rows
    bound = -(-withdrawals // 100)
    ratio = summary.requests["smartepi"] / bound
    verdict = "OK" if ratio <= RATIO_TARGET else "ABOVE TARGET"
    sent = summary.requests["smartepi"]
    print(f"smartepi: {withdrawals} withdrawals, {sent} requests / lower bound {bound} = {ratio:.3f}"
          f" (target <= {RATIO_TARGET}) in {elapsed:.1f} s {verdict}")  # fmt: skip
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--withdrawals", type=int, default=100_000)
    args = parser.parse_args()
    if args.events:
        bench_webhooks(args.events, args.clients)
    if args.receipts:
        bench_kasa(args.receipts)
    if args.withdrawals:
        bench_epi(args.withdrawals)


if __name__ == "__main__":
    main()
