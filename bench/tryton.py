"""Tryton benchmarks (issue #18): reads (snapshot, fast detection) and, below, the inbound part.

1. Full snapshot: every employee (10,000) and shop product (2,000) through ``TrytonSource.read``
   (keyset pages of 1,000, related analytic rules per page), against Tryton's own cost of the
   same reads: one ``search_read`` of all rows with the same fields (and one of the rules).
   Target ≤ 1.2×.
2. Fast detection: 10 employees changed in Tryton the way people change them (an e-mail
   alone, a name, a CPF identifier, a cost centre rule, the employee row), then one change
   poll (``read(entity, since=watermark)``): calls, wall time, rows returned and the largest
   number of rows any call returned (no call may read unchanged rows). Target ≤ 200 ms.

The database is built once with ``sync.demo.tryton_seed`` at size ``bench`` (10,000
employees, 100 PPE templates, 2,000 shop products; ~2 minutes) and reused with ``--dir``.

    python bench/tryton.py [--dir /tmp/erpsync-bench-tryton] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SNAPSHOT_TARGET = 1.2
FAST_TARGET_MS = 200.0


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


def ensure_database(directory: Path) -> Path:
    """The seeded bench database under ``directory`` (built when missing)."""
    from sync.demo import tryton_seed

    if not (directory / "seed.json").exists():
        started = time.monotonic()
        tryton_seed.build(directory, "bench")
        print(f"built the bench database in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return directory


def _source(url: str, database: str, login: str, password: str) -> Any:
    from sync.sources.config import TrytonSourceConfig
    from sync.sources.tryton import TrytonSource

    return TrytonSource(TrytonSourceConfig(url=url, database=database, user=login, password=password))


class _Recorder:
    """Wraps a sync client: counts calls and the rows each search_read/read returned."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()
        self.largest: dict[str, int] = {}
        self.ms: dict[str, float] = {}

    def install(self) -> Callable[[], None]:
        originals = {name: getattr(self.client, name) for name in ("search_read", "read", "search", "model")}

        def wrap(name: str) -> Callable[..., Any]:
            fn = originals[name]

            def call(model: str, *args: Any, **kw: Any) -> Any:
                started = time.perf_counter()
                result = fn(model, *args, **kw)
                label = f"{model}.{name}" if name != "model" else f"{model}.{args[0]}"
                self.calls[label] += 1
                self.ms[label] = self.ms.get(label, 0.0) + (time.perf_counter() - started) * 1000
                if isinstance(result, list):
                    self.largest[label] = max(self.largest.get(label, 0), len(result))
                return result

            return call

        for name in originals:
            setattr(self.client, name, wrap(name))

        def undo() -> None:
            for name, fn in originals.items():
                setattr(self.client, name, fn)

        return undo


def snapshot(url: str, database: str, creds: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """erpsync's full read of employees and shop products vs one raw search_read each."""
    out: dict[str, Any] = {}
    for entity, login in (("employees", "epi"), ("shop_products", "kasa")):
        src = _source(url, database, *creds[login])
        try:
            c = src.compiled(entity)  # fields_get of the models once, outside the timing
            client = src.client
            ctx = src._context(c)
            started = time.perf_counter()
            rows = client.search_read(c.conf.model, list(c.conf.domain), src._read_fields(c), context=ctx)
            related = 0
            for model, link, _to, _ in c.related:
                cols = c.related[(model, link, _to, _)]
                fields = sorted({link, *(r for col in cols for r in col.requests)})
                related += len(client.search_read(model, list(cols[0].conf.domain), fields, context=ctx))
            raw = time.perf_counter() - started
            before = sum(client.rpc_counts.values())
            started = time.perf_counter()
            n = sum(1 for _ in src.read(entity))
            ours = time.perf_counter() - started
            calls = sum(client.rpc_counts.values()) - before
            out[entity] = {
                "rows": n,
                "raw_rows": len(rows),
                "raw_related_rows": related,
                "raw_s": round(raw, 2),
                "erpsync_s": round(ours, 2),
                "ratio": round(ours / raw, 3) if raw else None,
                "calls": calls,
                "target": SNAPSHOT_TARGET,
            }
        finally:
            src.close()
    return out


def fast_detection(
    url: str, database: str, creds: dict[str, tuple[str, str]], changes: int = 10
) -> dict[str, Any]:
    """Change ``changes`` employees in Tryton, then time one change poll."""
    from sync.clients.tryton import SyncTrytonClient

    src = _source(url, database, *creds["epi"])
    admin = SyncTrytonClient(url, database, *creds["admin"])
    try:
        src.compiled("employees")
        time.sleep(1.1)  # edits of an earlier run in this second stay before the watermark
        watermark = src.max_updated_at("employees")
        assert watermark is not None
        time.sleep(1.1)  # the server's Date header has whole seconds
        assert list(src.read("employees", since=watermark)) == []  # the service polls warm
        employees = admin.search_read(
            "company.employee",
            [],
            ["party", "party.contact_mechanisms.id", "party.contact_mechanisms.type"],
            limit=changes,
            order=[("id", "DESC")],
            context={"active_test": False},
        )
        changed: list[int] = []
        ccs = admin.search(
            "analytic_account.account", [["root.name", "=", "Centros de Custo"], ["type", "=", "normal"]]
        )
        for i, emp in enumerate(employees):
            party = emp["party"]
            kind = i % 4
            mechs = [m["id"] for m in emp["party."]["contact_mechanisms."] if m["type"] == "email"]
            if kind == 0 and mechs:  # an e-mail alone (the employee and party rows do not move)
                admin.write("party.contact_mechanism", mechs[:1], {"value": f"bench.{i}@example.com.br"})
            elif kind == 1:  # the person's name (party)
                admin.write("party.party", [party], {"name": f"Bench Renamed {i}"})
            elif kind == 2:  # the cost centre (analytic rule entry)
                (rule,) = admin.search_read(
                    "analytic_account.rule", [["party", "=", party]], ["analytic_accounts"], limit=1
                )
                entry = rule["analytic_accounts"][0]
                admin.write(
                    "analytic_account.rule",
                    [rule["id"]],
                    {"analytic_accounts": [["write", [entry], {"account": ccs[i % len(ccs)]}]]},
                )
            else:  # the employee row itself
                admin.write("company.employee", [emp["id"]], {"start_date": dt.date(2020, 1, 1 + i % 27)})
            changed.append(emp["id"])
        rec = _Recorder(src.client)
        undo = rec.install()
        before = Counter(src.client.rpc_counts)
        started = time.perf_counter()
        rows = list(src.read("employees", since=watermark))
        took = time.perf_counter() - started
        undo()
        calls = Counter(src.client.rpc_counts)
        calls.subtract(before)
        found = sorted(int(r["id"]) for r in rows)
        return {
            "changed": len(changed),
            "rows": len(rows),
            "found_all": found == sorted(changed),
            "calls": sum(calls.values()),
            "per_call": {k: v for k, v in calls.items() if v},
            "ms_by_call": {k: round(v, 1) for k, v in rec.ms.items()},
            "largest_answer_rows": max(rec.largest.values(), default=0),
            "ms": round(took * 1000, 1),
            "target_ms": FAST_TARGET_MS,
        }
    finally:
        src.close()
        admin.close()


INBOUND_TARGET = 0.1  # calls per withdrawal


def inbound(url: str, database: str, creds: dict[str, tuple[str, str]], n: int = 1000) -> dict[str, Any]:
    """``n`` PPE withdrawals written into Tryton through ``sink: {kind: tryton}`` (internal
    shipments, batched create/wait/assign_force/do): calls per withdrawal, wall time."""
    from decimal import Decimal

    from sync.clients.tryton import SyncTrytonClient
    from sync.settings import TrytonSinkSettings
    from sync.sinks.base import InboundRow
    from sync.sinks.tryton import TrytonSink
    from sync.state.store import StateStore

    state = Path(tempfile.mkdtemp(prefix="erpsync-bench-inbound-")) / "state.db"
    client = SyncTrytonClient(url, database, *creds["epi"])
    try:
        variants = [
            r["code"]
            for r in client.search_read(
                "product.product", [("code", "like", "EPI-%")], ["code"], order=[("id", "ASC")]
            )
        ]
        centres = [
            r["code"]
            for r in client.search_read(
                "analytic_account.account",
                [("root.name", "=", "Centros de Custo"), ("type", "=", "normal"), ("state", "=", "opened")],
                ["code"],
            )
        ]
        rows = [
            InboundRow.make(
                "smartepi",
                f"bench-w-{i}",
                {
                    "employee_key": str(1 + i % 500),
                    "product_key": variants[i % len(variants)],
                    "quantity": Decimal(1 + i % 3),
                    "cost_center_key": centres[i % len(centres)],
                    "status": "SUCCESS",
                    "created_at": "2026-11-30T10:00:00Z",
                },
                {"id": f"bench-w-{i}"},
            )
            for i in range(n)
        ]
        sink = TrytonSink(
            client,
            tenant="bench",
            store=StateStore(f"sqlite:///{state}"),
            options=TrytonSinkSettings(ppe_product_key="code"),
        )
        client.login()
        before = sum(client.rpc_counts.values())
        started = time.perf_counter()
        written = sink.write("withdrawals", rows)
        took = time.perf_counter() - started
        calls = sum(client.rpc_counts.values()) - before
        done = client.search_count(
            "stock.shipment.internal", [("reference", "like", "erpsync:bench:%"), ("state", "=", "done")]
        )
        return {
            "withdrawals": n,
            "written": written,
            "shipments_done": done,
            "calls": calls,
            "calls_per_withdrawal": round(calls / n, 3),
            "per_call": {k: v for k, v in client.rpc_counts.items() if v},
            "s": round(took, 2),
            "target": INBOUND_TARGET,
        }
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "erpsync-bench-tryton")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from sync.demo.tryton_seed import TrytonServer

    directory = ensure_database(args.dir.resolve())
    # A working copy: the fast-detection step edits rows; the built database stays pristine.
    work = Path(tempfile.mkdtemp(prefix="erpsync-bench-tryton-run-"))
    import shutil

    shutil.copytree(directory, work / "db", ignore=shutil.ignore_patterns("trytond.log", "*.lock"))
    server = TrytonServer(work / "db").start()
    try:
        creds = {login: server.credentials(login) for login in ("admin", "epi", "kasa")}
        url = server.url.rstrip("/")
        result: dict[str, Any] = {
            "machine": _load(),
            "snapshot": snapshot(url, server.database, creds),
            "fast_detection": fast_detection(url, server.database, creds),
            "inbound": inbound(url, server.database, creds),
        }
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(result["machine"])
        for entity, r in result["snapshot"].items():
            print(
                f"snapshot {entity}: {r['rows']} rows in {r['erpsync_s']}s ({r['calls']} calls) vs one raw "
                f"search_read {r['raw_s']}s: {r['ratio']}x (target ≤ {SNAPSHOT_TARGET}x)"
            )
        f = result["fast_detection"]
        print(
            f"fast detection: {f['changed']} changed, {f['rows']} rows found (all: {f['found_all']}) in "
            f"{f['ms']} ms, {f['calls']} calls, largest answer {f['largest_answer_rows']} rows "
            f"(target ≤ {FAST_TARGET_MS:.0f} ms)"
        )
        i = result["inbound"]
        print(
            f"inbound: {i['withdrawals']} withdrawals in {i['s']}s, {i['calls']} calls = "
            f"{i['calls_per_withdrawal']} per withdrawal (target ≤ {INBOUND_TARGET}), "
            f"{i['shipments_done']} shipments done"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
