"""Kill the apply process (SIGKILL) at a seeded random point, apply again: exactly once.

The sandboxes live in the test process (playground); the first apply runs in a child
process (``apply_child.py``) that records its requests as JSON lines and is killed after a
seeded number of requests seen in the sandbox stats. The second apply runs here. Then:
no duplicate, nothing missing, no mismatch, an empty plan, no intent left pending or
unknown, and the POST protocol held across both processes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from apply_helpers import (
    MakePlayground,
    check_invariants,
    post_protocol_violations,
    read_logs,
    recording_transports,
)

from sync.engine.api import Engine
from sync.sandbox.faults import FaultConfig
from sync.state.store import StateStore

HERE = Path(__file__).resolve().parent
EMPLOYEES = 100
KASA_PRODUCTS = 100
# Requests a whole small apply makes (about 380 here): the kill lands before the end.
KILL_RANGE = (3, 300)


def _requests_seen(pg: Any) -> int:
    return int(pg.stats("smartepi")["total"]) + int(pg.stats("smartkasa")["total"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_killed_apply_then_apply_again(playground: MakePlayground, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    faults = {
        p: FaultConfig(seed=seed * 10 + i, p_5xx=0.05, p_drop_after_commit=0.05, p_429=0.02, retry_after=0.02)
        for i, p in enumerate(("smartepi", "smartkasa"))
    }
    pg = playground(
        "kill",
        employees=EMPLOYEES,
        products_epi=10,
        products_kasa=KASA_PRODUCTS,
        seed=seed,
        kasa_batch=10,
        faults=faults,
    )
    logs = tmp_path / "child-log"
    logs.mkdir()
    kill_after = rng.randint(*KILL_RANGE)
    with (tmp_path / "child.err").open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "apply_child.py"), str(pg.config_path), str(logs)],
            cwd=HERE,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while child.poll() is None and _requests_seen(pg) < kill_after and time.monotonic() < deadline:
            time.sleep(0.005)
        killed = child.poll() is None
        if killed:
            child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    err = (tmp_path / "child.err").read_text(encoding="utf-8", errors="replace")
    assert killed, f"the child finished before {kill_after} requests (rc {child.returncode}): {err[-2000:]}"
    seen = _requests_seen(pg)

    log: list[dict[str, Any]] = []
    engine = Engine(pg.settings(), transports=recording_transports(log))
    again = engine.apply()
    print(f"seed {seed}: killed after {seen} requests; intents resolved on restart: {again.resolved_intents}")
    report = check_invariants(pg, engine=engine)
    if not report.ok:
        engine.reconcile()
        report = check_invariants(pg, engine=engine)
    assert report.ok, f"killed after {seen} requests: {report.summary()}"
    assert not report.extra, report.extra[:10]
    leftover = engine.plan()
    assert not leftover.actions, [(a.platform, a.entity, a.kind, a.erp_key) for a in leftover.actions[:10]]
    counts = StateStore(pg.settings().state_url).intent_counts(pg.tenant)
    assert not {s: n for s, n in counts.items() if s in ("pending", "unknown")}, counts

    both = read_logs(logs) + log
    assert post_protocol_violations(both) == [], f"killed after {seen} requests"
