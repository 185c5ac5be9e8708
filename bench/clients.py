"""Platform clients: pages to list, client CPU per request, and achieved in-flight concurrency.

Both sandboxes run in their own processes (``bench/_common.py``) with 50 ms latency on every request;
they are seeded through their admin seed endpoints (fast), never through the clients. This process runs
the clients only, so ``time.process_time`` here is the clients' CPU.

1. Requests needed to list N SmartEPI employees and N SmartKasa products with ``SmartEPIClient`` and
   ``SmartKasaClient`` = ceil(N / 100) pages each (the lower bound; SmartKasa adds its one login).
2. Client CPU per request for many small requests (GET one record by id), with the governor's in-flight
   cap (8), and for the list pages of part 1 (100 records per page) separately, on both transports side
   by side: ``stock`` (httpx's own, the default; reported) and ``lean`` (``transport: lean``, the
   high-volume option; target ≤ 0.5 ms). Also what each costs at the platforms' default quota.
3. Achieved in-flight concurrency: many concurrent GETs against a cap of 8; in-flight requests are counted
   on the wire by a wrapping transport and averaged over time (target ≥ 90 % of the cap, both transports).

Usage: ``python bench/clients.py [--records 20000] [--gets 2000] [--cap 8]``; ``--small`` for a quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import KASA_PHONE, Pair, load_text, start_pair
from sync.clients.governor import InProcessGovernor, RateLimits
from sync.clients.http import TransportKind, default_transport
from sync.clients.smartepi.client import SmartEPIClient
from sync.clients.smartkasa.client import SmartKasaClient
from sync.clients.smartkasa.config import SmartKasaSettings

PAGE = 100
KINDS: tuple[TransportKind, ...] = ("stock", "lean")
QUOTA_RPS = 10.0  # the default per-account rate (settings.RateLimit.requests_per_second)
LATENCY_MS = 50.0
CPU_TARGET_MS = 0.5
INFLIGHT_TARGET = 0.9
SEED_CHUNK = 2_000


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps the real transport; integrates the number of requests on the wire over time."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0
        self._area = 0.0
        self._last = time.perf_counter()

    def _tick(self, delta: int) -> None:
        now = time.perf_counter()
        self._area += self.in_flight * (now - self._last)
        self._last = now
        self.in_flight += delta
        self.peak = max(self.peak, self.in_flight)

    def window(self) -> tuple[float, float]:
        """Start a measuring window: returns (area, time) to subtract later."""
        self._tick(0)
        return self._area, self._last

    def average_since(self, mark: tuple[float, float]) -> float:
        self._tick(0)
        area, since = mark
        return (self._area - area) / max(1e-9, self._last - since)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._tick(+1)
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()  # the whole answer is on the client before the slot counts as free
            return response
        finally:
            self._tick(-1)

    async def aclose(self) -> None:
        await self.inner.aclose()


def seed(pair: Pair, n: int) -> None:
    for start in range(0, n, SEED_CHUNK):
        rows = [
            {"name": f"Employee {i:06d}", "email": f"employee.{i}@bench.example.com"}
            for i in range(start, min(n, start + SEED_CHUNK))
        ]
        pair.epi.admin("POST", f"/tenants/{pair.tenant}/seed/employees", json=rows)
        prods = [
            {"title": f"Product {i:06d}", "price": "10.50", "number": f"48{i:011d}"}
            for i in range(start, min(n, start + SEED_CHUNK))
        ]
        pair.kasa.admin("POST", "/seed/products", json=prods)


def make_clients(
    pair: Pair, cap: int, kind: TransportKind
) -> tuple[SmartEPIClient, SmartKasaClient, CountingTransport, CountingTransport]:
    limits = RateLimits(rate=100_000.0, burst=100_000, concurrency=cap)
    # The transport the runtime builds for the ``transport`` setting, wrapped for counting.
    epi_t = CountingTransport(default_transport(cap, kind=kind))
    kasa_t = CountingTransport(default_transport(cap, kind=kind))
    epi = SmartEPIClient(
        pair.epi.url + "/v1",
        pair.epi_key,
        account="bench",
        governor=InProcessGovernor(limits),
        transport=epi_t,
        max_connections=cap,
    )
    kasa = SmartKasaClient(
        SmartKasaSettings(
            base_url=pair.kasa.url,
            api_key=pair.kasa_key,  # type: ignore[arg-type]
            phone_number=KASA_PHONE,  # type: ignore[arg-type]
            password=pair.kasa_password,  # type: ignore[arg-type]
            max_connections=cap,
        ),
        account="bench",
        governor=InProcessGovernor(limits),
        transport=kasa_t,
    )
    return epi, kasa, epi_t, kasa_t


@dataclass
class Phase:
    name: str
    requests: int
    wall: float
    cpu: float
    avg_in_flight: float = 0.0
    peak: int = 0

    @property
    def cpu_ms(self) -> float:
        return self.cpu / max(1, self.requests) * 1000


async def measure(
    name: str, client: Any, transport: CountingTransport, work: Callable[[], Awaitable[Any]]
) -> tuple[Phase, Any]:
    before = client.counters.total
    transport.peak = transport.in_flight
    mark = transport.window()
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = await work()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    avg = transport.average_since(mark)
    return Phase(name, client.counters.total - before, wall, cpu, avg, transport.peak), out


async def many(n: int, tasks: int, one: Callable[[int], Awaitable[Any]]) -> None:
    """``n`` calls of ``one(i)`` from ``tasks`` concurrent workers (the governor caps what is in flight)."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(tasks)))


async def run(pair: Pair, n: int, gets: int, cap: int, tasks: int, kind: TransportKind) -> list[Phase]:
    epi, kasa, epi_t, kasa_t = make_clients(pair, cap, kind)
    phases: list[Phase] = []
    try:
        await kasa.session.access_token()  # log in before measuring (one request, counted below)

        async def list_employees() -> list[str]:
            return [str(r["id"]) async for r in epi.employees.list()]

        async def list_products() -> list[str]:
            return [str(p.id) async for p in kasa.products.iterate()]

        p, emp_ids = await measure("SmartEPI list employees", epi, epi_t, list_employees)
        phases.append(p)
        print(f"  [{kind}] listed {len(emp_ids):,} employees")
        p, prod_ids = await measure("SmartKasa list products", kasa, kasa_t, list_products)
        phases.append(p)
        print(f"  [{kind}] listed {len(prod_ids):,} products")

        async def epi_gets() -> None:
            await many(gets, tasks, lambda i: epi.employees.get(emp_ids[i % len(emp_ids)]))

        async def kasa_gets() -> None:
            await many(gets, tasks, lambda i: kasa.products.get(prod_ids[i % len(prod_ids)]))

        p, _ = await measure(f"SmartEPI GET employee ×{gets}", epi, epi_t, epi_gets)
        phases.append(p)
        p, _ = await measure(f"SmartKasa GET product ×{gets}", kasa, kasa_t, kasa_gets)
        phases.append(p)

        async def epi_pages() -> None:  # concurrent list requests (first page of a filtered list)
            async def one(i: int) -> None:
                # name: a documented filter (there is no e-mail search; ?email= is a 400)
                async for _page in epi.employees.pages(limit=10, name=f"Employee {i % n:06d}"):
                    break

            await many(gets, tasks, one)

        p, _ = await measure(f"SmartEPI filtered list ×{gets}", epi, epi_t, epi_pages)
        phases.append(p)
    finally:
        await epi.aclose()
        await kasa.aclose()
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--gets", type=int, default=2_000, help="concurrent GETs per scenario")
    parser.add_argument("--cap", type=int, default=8, help="the governor's in-flight cap")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent callers (more than the cap)")
    parser.add_argument("--small", action="store_true", help="2,000 records, 400 GETs per scenario")
    args = parser.parse_args()
    if args.small:
        args.records, args.gets = 2_000, 400
    print(f"bench/clients.py: {load_text()}")
    with start_pair() as pair:
        t0 = time.perf_counter()
        seed(pair, args.records)
        print(
            f"seeded {args.records:,} employees and {args.records:,} products"
            f" in {time.perf_counter() - t0:.1f} s"
        )
        pair.set_faults(latency_ms=LATENCY_MS)
        print(
            f"sandboxes at {LATENCY_MS:.0f} ms latency; governor cap {args.cap};"
            f" {args.tasks} concurrent callers"
        )
        runs = {k: asyncio.run(run(pair, args.records, args.gets, args.cap, args.tasks, k)) for k in KINDS}
    bound = math.ceil(args.records / PAGE)
    print(f"\n1. pages to list {args.records:,} records (lower bound ceil(N/100) = {bound} each)")
    for kind in KINDS:
        for p in runs[kind][:2]:
            ok = "ok" if p.requests <= bound else "ABOVE"
            print(
                f"  [{kind:<5}] {p.name:<26} {p.requests:>6} requests (bound {bound}) {ok};"
                f" {p.wall:.1f} s; CPU {p.cpu_ms:.2f} ms/request ({PAGE} records per page)"
            )
    print("  (the SmartKasa login was sent before the measurement: one more request in all)")
    print(
        "\n2. client CPU per request, stock (default) and lean side by side;"
        f" target ≤ {CPU_TARGET_MS} ms on lean"
    )
    print(f"  {'scenario':<32} {'stock ms':>9} {'lean ms':>8} {'stock/lean':>10}   lean")
    for i, (stock, lean) in enumerate(zip(runs["stock"], runs["lean"], strict=True)):
        ok = "ok" if lean.cpu_ms <= CPU_TARGET_MS else "ABOVE"
        if i < 2:
            ok = f"({PAGE} records per request: no target)"
        ratio = stock.cpu_ms / max(1e-9, lean.cpu_ms)
        print(f"  {stock.name:<32} {stock.cpu_ms:>9.3f} {lean.cpu_ms:>8.3f} {ratio:>9.2f}×   {ok}")
    worst = {k: max(p.cpu_ms for p in runs[k][2:]) for k in KINDS}
    print(
        f"  at the default quota ({QUOTA_RPS:.0f} requests/s per account), small requests cost"
        + ";".join(
            f" {k} {worst[k] * QUOTA_RPS:.1f} ms CPU/s ({worst[k] * QUOTA_RPS / 10:.2f} % of a core)"
            for k in KINDS
        )
    )
    print(f"\n3. many small requests, cap {args.cap}, {args.tasks} callers, {LATENCY_MS:.0f} ms latency")
    head = f"  {'transport':<9} {'scenario':<32} {'requests':>8} {'req/s':>7} {'CPU ms/req':>10}"
    head += f" {'avg in flight':>13} {'peak':>5}"
    print(head + f"   target: in flight ≥ {INFLIGHT_TARGET * args.cap:.1f}")
    for kind in KINDS:
        for p in runs[kind][2:]:
            fl_ok = "ok" if p.avg_in_flight >= INFLIGHT_TARGET * args.cap else "BELOW"
            print(
                f"  {kind:<9} {p.name:<32} {p.requests:>8} {p.requests / p.wall:>7.0f} {p.cpu_ms:>10.3f}"
                f" {p.avg_in_flight:>13.2f} {p.peak:>5}   in flight {fl_ok}"
                f" ({p.avg_in_flight / args.cap:.0%} of the cap)"
            )
    print(f"\n{load_text()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
