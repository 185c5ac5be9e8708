"""Planner throughput and the whole fast-mode ``erpsync plan`` over a 1M-row ERP.

Part 1 (planner only): generates N typical 8-field records (strings, decimals, a bool, a
reference) with a share of them changed in the ERP, then times ``plan_entity`` in fast
mode (desired × base) and in full mode (desired × base × remote, the remote equal to the
base except for a share of drift). Design §4 asks the planner to stay well above 100k
records/s; the target here is 300k records/s in fast mode.

Part 2 (end to end): builds the demo ERP (``sync.demo.erpgen``) with N employees in
SQLite, a state store of N bindings + base snapshots that agree with it (bulk-inserted in
the stored format: JSON with tagged decimals, see ``StateStore.save_base``), changes a
share of the ERP rows, then runs ``Engine(settings).plan(mode="fast")`` in a subprocess
against ``bench/plan_mapping.yaml`` (SmartEPI org entities + employees; base URL
http://127.0.0.1:9, never contacted: every request is counted and must be zero). It
reports the wall time and peak RSS of that subprocess against the targets (30 s,
1.5 GiB), and the same work done naively (one state-store query per ERP row, measured
on a sample and extrapolated) as a ratio.

    python bench/plan.py [--records 1000000] [--changed 0.01] [--repeat 3]
                         [--erp-rows 1000000] [--naive-rows 5000] [--workdir DIR] [--skip-planner]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import yaml

from sync.core.planner import plan_entity
from sync.core.records import Base, Desired, EntityPolicy, FieldPolicy, Remote

TARGET = 300_000
WALL_TARGET = 30.0  # seconds, whole fast-mode `erpsync plan`
RSS_TARGET = 1.5 * 2**30  # bytes
TENANT = "bench"
MAPPING = Path(__file__).resolve().with_name("plan_mapping.yaml")
KEY_ENV = "ERPSYNC_BENCH_PLAN_EPI_KEY"

POLICY = EntityPolicy(
    platform="smartepi",
    entity="products",
    level=1,
    natural_key=("name",),
    fields={
        "name": FieldPolicy("name"),
        "code": FieldPolicy("code"),
        "description": FieldPolicy("description", direction="both"),
        "unit": FieldPolicy("unit"),
        "price": FieldPolicy("price"),
        "quantity": FieldPolicy("quantity", direction="pull"),
        "active": FieldPolicy("active"),
        "groupId": FieldPolicy("groupId", ref="groups"),
    },
    delete="deactivate",
    deactivate_field="active",
)


def generate(
    n: int, changed: float, drift: float
) -> tuple[list[Desired], dict[str, Base], dict[str, Remote]]:
    every = max(1, round(1 / changed)) if changed else 0
    drift_every = max(1, round(1 / drift)) if drift else 0
    desired: list[Desired] = []
    bases: dict[str, Base] = {}
    remotes: dict[str, Remote] = {}
    for i in range(n):
        key = f"P{i:08d}"
        fields = {
            "name": f"Product {i}",
            "code": f"C-{i}",
            "description": "Safety gloves, nitrile, size M",
            "unit": "pcs",
            "price": Decimal(f"{i % 1000}.5"),
            "quantity": Decimal(i % 37),
            "active": True,
            "groupId": f"G{i % 50}",
        }
        base_fields = dict(fields)
        if every and i % every == 0:
            fields = {**fields, "price": fields["price"] + 1}
        rid = f"r{i}"
        desired.append(Desired("smartepi", "products", key, fields))
        bases[key] = Base(key, rid, base_fields)
        remote_fields = base_fields
        if drift_every and i % drift_every == 1:
            remote_fields = {**base_fields, "description": "edited on the platform"}
        remotes[rid] = Remote("smartepi", "products", rid, remote_fields)
    return desired, bases, remotes


def run(n: int, changed: float, repeat: int) -> dict[str, float]:
    desired, bases, remotes = generate(n, changed, drift=changed)
    results: dict[str, float] = {}
    for mode in ("fast", "full"):
        best = float("inf")
        actions = 0
        for _ in range(repeat):
            gc.collect()  # GC stays enabled while timing: real runs pay for it too
            t0 = time.perf_counter()
            ep = plan_entity(
                POLICY, desired, bases, remotes if mode == "full" else None, source_complete=True
            )
            best = min(best, time.perf_counter() - t0)
            actions = len(ep.actions)
        rate = n / best
        results[mode] = rate
        print(f"{mode:>4} mode: {n:,} records in {best:.2f} s = {rate:,.0f} records/s ({actions:,} actions)")
    return results


# --- part 2: the whole fast-mode plan over a 1M-row ERP ---------------------------------


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


def write_config(root: Path, erp: Path, state: Path) -> Path:
    """The ``sync.playground`` config shape, SmartEPI only, at an address nothing listens on."""
    config = {
        "state_url": f"sqlite:///{state}",
        "report_dir": str(root / "reports"),
        "tenants": {
            TENANT: {
                "erp": {
                    "kind": "sql",
                    "url": f"sqlite:///{erp}",
                    "entities": {"funcionarios": {"writable": True, "updated_at": "updated_at"}},
                },
                "mappings": [str(MAPPING)],
                "smartepi": {"base_url": "http://127.0.0.1:9/v1", "api_key": f"${{{KEY_ENV}}}"},
            }
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _sql_stamp(value: dt.datetime) -> str:
    """How SQLAlchemy's DateTime stores a naive UTC value in SQLite."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def populate_state(config: Path, rows: int) -> tuple[int, dict[str, list[Desired]]]:
    """Bindings + base snapshots equal to what an apply of the current ERP would have stored.

    The mapping runs over the ERP (untimed setup), then the rows go in with ``executemany``
    in the stored format: ``encode_value`` (tagged decimals), JSON text, ``content_hash``.
    Returns the binding count and a few desired records per entity for the sanity check.
    """
    from sync.core.normalize import content_hash
    from sync.engine.runtime import build_runtime
    from sync.settings import load_settings
    from sync.state.store import StateStore, encode_value

    settings = load_settings(config)
    store = StateStore(settings.state_url)  # runs the migrations
    rt = build_runtime(settings, TENANT, store=store)
    results = rt.mappings.map_all("smartepi", lambda ent: rt.source.read(ent))
    rt.source.close()
    path = settings.state_url.removeprefix("sqlite:///")
    now = _sql_stamp(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    next_id = 1 + (conn.execute("SELECT COALESCE(MAX(id), 0) FROM bindings").fetchone()[0])
    samples: dict[str, list[Desired]] = {}
    total = 0
    try:
        for entity, result in results.items():
            chunk_b: list[tuple[Any, ...]] = []
            chunk_s: list[tuple[Any, ...]] = []
            for i, d in enumerate(result.desired):
                bid = next_id
                next_id += 1
                data: dict[str, Any] = dict(d.fields)
                if d.children:
                    data["__children__"] = dict(d.children)
                encoded = encode_value(data)
                chunk_b.append((bid, TENANT, "smartepi", entity, d.erp_key, f"{entity[:3]}-{i + 1}", now))
                chunk_s.append((bid, json.dumps(encoded), content_hash(encoded), d.erp_hash, None, now))
                if len(chunk_b) >= 20_000:
                    _insert_state(conn, chunk_b, chunk_s)
            _insert_state(conn, chunk_b, chunk_s)
            total += len(result.desired)
            samples[entity] = result.desired[:: max(1, len(result.desired) // 50)]
        conn.commit()
    finally:
        conn.close()
    if results["employees"].rows != rows:
        raise SystemExit(f"expected {rows:,} ERP employee rows, mapped {results['employees'].rows:,}")
    return total, samples


def _insert_state(
    conn: sqlite3.Connection, bindings: list[tuple[Any, ...]], snaps: list[tuple[Any, ...]]
) -> None:
    conn.executemany(
        "INSERT INTO bindings (id, tenant, platform, entity, erp_key, remote_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        bindings,
    )
    conn.executemany(
        "INSERT INTO base_snapshots (binding_id, fields, fields_hash, erp_hash, version, synced_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        snaps,
    )
    bindings.clear()
    snaps.clear()


def check_state(config: Path, samples: dict[str, list[Desired]]) -> None:
    """The bulk-inserted rows read back through the real store API equal the mapped records."""
    from sync.settings import load_settings
    from sync.state.store import StateStore

    store = StateStore(load_settings(config).state_url)
    for entity, desired in samples.items():
        for d in desired:
            b = store.binding(TENANT, "smartepi", entity, d.erp_key)
            if b is None or b.fields != d.fields or dict(b.children) != dict(d.children):
                raise SystemExit(f"state store sanity check failed for {entity} {d.erp_key!r}")


def change_erp(erp: Path, changed: float) -> int:
    """Change a share of the employees in a mapped column (the name): that many updates."""
    every = max(1, round(1 / changed))
    conn = sqlite3.connect(erp)
    try:
        n = conn.execute(
            "UPDATE funcionarios SET nome = nome || ' Filho', updated_at = '2024-07-01 00:00:00'"
            " WHERE rowid % ? = 0",
            (every,),
        ).rowcount
        conn.commit()
    finally:
        conn.close()
    return int(n)


def naive(config: Path, sample: int) -> tuple[float, int]:
    """The naive loop: read and map ERP rows, then one state-store query per row and a compare.

    Returns seconds per row (measured on ``sample`` employee rows) and the changes it saw.
    """
    from sync.engine.runtime import build_runtime
    from sync.settings import load_settings
    from sync.state.store import StateStore

    settings = load_settings(config)
    store = StateStore(settings.state_url)
    rt = build_runtime(settings, TENANT, store=store)
    em = rt.mappings.entity("smartepi", "employees")
    changes = 0
    t0 = time.perf_counter()
    rows = islice(rt.source.read(em.source_entity), sample)
    result = em.map_rows(rows)
    for d in result.desired:
        b = store.binding(TENANT, "smartepi", "employees", d.erp_key)
        if b is None or b.fields != d.fields:
            changes += 1
    elapsed = time.perf_counter() - t0
    rt.source.close()
    return elapsed / max(1, len(result.desired)), changes


def child(config: Path) -> None:
    """Runs in the measured subprocess: one fast-mode plan, every HTTP request counted."""
    import httpx

    from sync.engine.api import Engine
    from sync.settings import load_settings

    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url}")
        return httpx.Response(503)

    t0 = time.perf_counter()
    settings = load_settings(config)
    engine = Engine(settings, transports={"smartepi": httpx.MockTransport(handler)})
    plan = engine.plan(TENANT, mode="fast")
    elapsed = time.perf_counter() - t0
    kinds: dict[str, int] = {}
    for (_platform, _entity, kind), n in plan.counts.items():
        kinds[kind] = kinds.get(kind, 0) + n
    out = {
        "plan_seconds": elapsed,
        "actions": len(plan.actions),
        "counts": kinds,
        "quarantine": len(plan.quarantine),
        "requests": len(requests),
        "request_sample": requests[:5],
    }
    print(json.dumps(out))


def run_engine(config: Path) -> tuple[float, int, dict[str, Any]]:
    """Wall time and peak RSS (bytes) of a fresh process doing the fast-mode plan."""
    env = {**os.environ, KEY_ENV: "bench-not-a-real-key"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(config)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the plan subprocess failed:\n{proc.stderr[-4000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    return wall, peak, json.loads(proc.stdout.strip().splitlines()[-1])


def run_erp(rows: int, changed: float, naive_rows: int, workdir: Path | None) -> dict[str, float]:
    from sync.demo.erpgen import generate

    root = Path(workdir or tempfile.mkdtemp(prefix="erpsync-bench-plan-"))
    root.mkdir(parents=True, exist_ok=True)
    erp, state = root / "erp.db", root / "state.db"
    for p in (state, state.with_name("state.db-wal"), state.with_name("state.db-shm")):
        p.unlink(missing_ok=True)
    config = write_config(root, erp, state)
    os.environ[KEY_ENV] = "bench-not-a-real-key"
    t0 = time.perf_counter()
    generate(erp, employees=rows, products_epi=10, products_kasa=10)
    t1 = time.perf_counter()
    bound, samples = populate_state(config, rows)
    check_state(config, samples)
    t2 = time.perf_counter()
    n_changed = change_erp(erp, changed)
    print(
        f"setup in {root}: ERP of {rows:,} employees {t1 - t0:.1f} s; state store of {bound:,} bindings"
        f" + bases {t2 - t1:.1f} s; {n_changed:,} ERP rows changed"
    )
    print(f"machine before the plan: {load_text()}")
    wall, peak, out = run_engine(config)
    updates = out["counts"].get("update", 0)
    print(
        f"erpsync plan --fast (subprocess): wall {wall:.2f} s (plan call {out['plan_seconds']:.2f} s),"
        f" peak RSS {peak / 2**30:.2f} GiB, {out['actions']:,} actions {out['counts']},"
        f" {out['quarantine']:,} quarantined, {out['requests']} HTTP requests"
    )
    print(f"machine after the plan: {load_text()}")
    if out["requests"]:
        raise SystemExit(f"fast mode sent requests: {out['request_sample']}")
    if updates != n_changed:
        print(f"WARNING: expected {n_changed:,} updates, the plan has {updates:,}")
    per_row, seen = naive(config, naive_rows)
    naive_total = per_row * bound
    print(
        f"naive baseline (one state-store query per ERP row): {1 / per_row:,.0f} rows/s on {naive_rows:,}"
        f" rows ({seen} changed) -> {naive_total:,.0f} s for {bound:,}"
        f" = {naive_total / wall:.1f}x erpsync's wall time"
    )
    wall_ok = "ok" if wall <= WALL_TARGET else "ABOVE TARGET"
    rss_ok = "ok" if peak <= RSS_TARGET else "ABOVE TARGET"
    print(f"wall vs target {WALL_TARGET:.0f} s: {wall / WALL_TARGET:.2f}x ({wall_ok})")
    print(f"peak RSS vs target {RSS_TARGET / 2**30:.1f} GiB: {peak / RSS_TARGET:.2f}x ({rss_ok})")
    return {"wall": wall, "peak_rss": peak, "naive_ratio": naive_total / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="planner-only records")
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--erp-rows", type=int, default=1_000_000, help="ERP employees (0: skip part 2)")
    parser.add_argument("--naive-rows", type=int, default=5_000, help="rows the naive baseline is timed on")
    parser.add_argument("--workdir", type=Path, help="keep the ERP, state store and config here")
    parser.add_argument("--skip-planner", action="store_true", help="skip the planner-only part")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"machine: {load_text()}")
    if not args.skip_planner:
        results = run(args.records, args.changed, args.repeat)
        verdict = "ok" if results["fast"] >= TARGET else "BELOW TARGET"
        print(f"fast mode vs target {TARGET:,} records/s: {results['fast'] / TARGET:.2f}x ({verdict})")
    if args.erp_rows:
        run_erp(args.erp_rows, args.changed, args.naive_rows, args.workdir)


if __name__ == "__main__":
    main()
