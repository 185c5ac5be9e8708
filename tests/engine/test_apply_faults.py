"""Exactly-once creates under faults: 2,000 employees (with their org entities) and 2,000
SmartKasa products pushed through 5xx before commit, responses dropped after commit
(single and batch), random 429s and 429 bursts from a gateway quota.

After the apply plus at most one reconcile: no duplicate, nothing missing, no field
mismatch, an empty plan, no open intent; every POST after an ambiguous one was preceded by
a lookup that found nothing (checked on the recorded wire log); on SmartEPI the POST count
is exactly records + 5xx answers and no POST of ours met a 409.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from apply_helpers import (
    MakePlayground,
    check_invariants,
    committed_posts,
    desired_records,
    iter_posts,
    post_protocol_violations,
    recording_transports,
)

from sync.engine.api import Engine
from sync.sandbox.faults import FaultConfig
from sync.state.store import StateStore

EMPLOYEES = 2000
KASA_PRODUCTS = 2000


def faults(seed: int) -> FaultConfig:
    return FaultConfig(
        seed=seed,
        p_5xx=0.05,
        p_drop_after_commit=0.05,
        p_429=0.02,
        retry_after=0.05,
        quota_rps=400.0,  # below the client's own budget: bursts of 429 from the gateway
        quota_burst=40,
    )


def _status_total(stats: dict[str, Any], pred: Any) -> int:
    return sum(n for route, counts in iter_posts(stats) for s, n in counts.items() if pred(route, s))


@pytest.mark.slow
def test_exactly_once_creates_under_faults(playground: MakePlayground) -> None:
    pg = playground(
        "faults",
        employees=EMPLOYEES,
        products_epi=40,
        products_kasa=KASA_PRODUCTS,
        seed=5,
        kasa_batch=10,  # 200 product batches: dropped and failed batches are certain at 5%
        faults={"smartepi": faults(101), "smartkasa": faults(202)},
        rate={"requests_per_second": 1000.0, "burst": 200, "concurrency": 8},
    )
    log: list[dict[str, Any]] = []
    engine = Engine(pg.settings(), transports=recording_transports(log))
    wanted = desired_records(engine)
    records = {k: len(v.desired) for k, v in wanted.items()}
    assert records[("smartepi", "employees")] == EMPLOYEES
    assert records[("smartkasa", "products")] == KASA_PRODUCTS
    assert all(v.quarantined == 0 for v in wanted.values())

    started = time.monotonic()
    first = engine.apply()
    runs = [first]
    report = check_invariants(pg, wanted, engine=engine)
    if not report.ok:
        runs.append(engine.reconcile())
        report = check_invariants(pg, wanted, engine=engine)
    elapsed = time.monotonic() - started
    print(f"\napply+reconcile: {elapsed:.1f}s, runs={len(runs)}, first={first.status} {first.counts}")

    assert report.ok, report.summary()
    assert not report.extra, report.extra[:10]
    pg.set_faults("smartepi", FaultConfig())
    pg.set_faults("smartkasa", FaultConfig())
    leftover = engine.plan()
    assert not leftover.actions, [(a.platform, a.entity, a.kind, a.erp_key) for a in leftover.actions[:10]]
    counts = StateStore(pg.settings().state_url).intent_counts(pg.tenant)
    assert not {s: n for s, n in counts.items() if s in ("pending", "unknown")}, counts

    # The faults happened (so the test is not vacuous).
    epi, kasa = pg.stats("smartepi"), pg.stats("smartkasa")
    print("smartepi POSTs", dict(iter_posts(epi)))
    print("smartkasa POSTs", dict(iter_posts(kasa)))
    for stats in (epi, kasa):
        assert _status_total(stats, lambda r, s: s == "dropped") > 0
        assert _status_total(stats, lambda r, s: s.startswith("5")) > 0
        assert _status_total(stats, lambda r, s: s == "429") > 0
    batch = {r: c for r, c in iter_posts(kasa) if r.endswith("/products/batch")}
    assert sum(c.get("dropped", 0) for c in batch.values()) > 0
    assert sum(n for c in batch.values() for s, n in c.items() if s.startswith("5")) > 0

    # The protocol on the wire: never a POST repeated without a lookup that found nothing.
    assert post_protocol_violations(log) == []
    # Exactly one POST that may have committed per record (dropped ones resolved by lookup).
    committed = committed_posts(log)
    twice = {k: n for k, n in committed.items() if n > 1}
    assert not twice, list(twice.items())[:10]

    # SmartEPI: POSTs = records + 5xx answers; no 409 on a record we created ourselves.
    for (platform, entity), n in records.items():
        if platform != "smartepi":
            continue
        route = f"POST /v1/{entity.replace('_', '-')}"
        got: Counter[str] = Counter(epi["routes"].get(route, {}))
        assert got["409"] == 0 and got["422"] == 0, (route, dict(got))
        five = sum(v for s, v in got.items() if s.startswith("5"))
        assert got["201"] + got["dropped"] == n, (route, dict(got))
        assert sum(v for s, v in got.items() if s != "429") == n + five, (route, dict(got))
