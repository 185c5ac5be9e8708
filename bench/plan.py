"""Planner throughput: records/s of ``plan_entity`` over in-memory desired + base pairs.

Generates N typical 8-field records (strings, decimals, a bool, a reference) with a
share of them changed in the ERP, then times ``plan_entity`` in fast mode (desired ×
base) and in full mode (desired × base × remote, the remote equal to the base except
for a share of drift). Design §4 asks the planner to stay well above 100k records/s;
the target here is 300k records/s in fast mode.

    python bench/plan.py [--records 1000000] [--changed 0.01] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import time
from decimal import Decimal

from sync.core.planner import plan_entity
from sync.core.records import Base, Desired, EntityPolicy, FieldPolicy, Remote

TARGET = 300_000

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = run(args.records, args.changed, args.repeat)
    verdict = "ok" if results["fast"] >= TARGET else "BELOW TARGET"
    print(f"fast mode vs target {TARGET:,} records/s: {results['fast'] / TARGET:.2f}x ({verdict})")


if __name__ == "__main__":
    main()
