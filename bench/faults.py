"""Fault campaign figures (issue #14 "Done when"): exactly once and convergence over many seeded runs.

Part (a), ``--runs`` seeded campaign runs (default 50) at ``--records`` employees + SmartKasa products
(default 2,000 + 2,000), each exactly the run of ``tests/campaign/campaign.py``: hostile ERP data
(products without barcode, employees without identification), random 5xx / 429 with Retry-After /
answers dropped after commit (single and batch creates) / truncated read bodies, SmartKasa batch ids
shuffled on some seeds, the applying process killed with SIGKILL on some seeds; then faults off and at
most ``--max-reconciles`` reconciles; then webhooks (duplicated, reordered, forged, receiver restarted,
enqueues lost) and pulls (read faults, SIGKILL). Reported, summed over the runs (targets in brackets):
duplicates, missing, mismatched and extra platform records [0 each], reconciles needed to converge
[≤ 2], inbound records lost or applied twice [0], plus every failing run's seed and what went wrong.

Part (b), ``--ratio-runs`` runs (default 3): an initial load on fresh sandboxes with 10 % of all
answers dropped (``p_drop_after_commit=0.1`` on every method: a dropped write committed, a dropped
read is a truncated body), nothing else injected. Figure: requests the sandboxes received during
the apply / the lower bound [≤ 1.25], and the same for the apply plus the reconciles it took to
converge. The lower bound is bench/apply.py's (design §4): one list page per entity read (the
platforms are empty), one request per SmartEPI create, ceil(n/100) SmartKasa batch creates per
entity (batch size 100 here) and one request per stock card (cards have no batch endpoint).

    python bench/faults.py                          # 50 runs at 2,000 + 2,000 (long: about a minute a run)
    python bench/faults.py --runs 5 --records 200   # a quick look
    python bench/faults.py --seeds 17,23            # replay given seeds (ERPSYNC_CAMPAIGN_SEED works too)
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "campaign"))

from campaign import (  # noqa: E402
    ALL_METHODS,
    CampaignResult,
    CampaignSpec,
    check_remote,
    desired_records,
    make_hostile,
    run_campaign,
    seeds_from_env,
    start,
)

from bench._common import load_text  # noqa: E402
from bench.apply import PlanShape, lower_bound  # noqa: E402
from sync.engine.api import Engine  # noqa: E402
from sync.sandbox.faults import FaultConfig  # noqa: E402

RATIO_TARGET = 1.25
DROP = 0.10


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# --- (a) the campaign -------------------------------------------------------------------------


def part_a(
    root: Path, seeds: list[int], records: int, max_reconciles: int, inbound: bool
) -> list[CampaignResult]:
    print(f"\n== (a) {len(seeds)} seeded campaign runs at {records:,} + {records:,} records")
    results: list[CampaignResult] = []
    for seed in seeds:
        spec = CampaignSpec.from_seed(seed, records, inbound=inbound)
        r = run_campaign(spec, root / f"a-{seed}", max_reconciles=max_reconciles)
        results.append(r)
        f = r.check.figures()
        inbound_text = (
            f"inbound lost {len(r.inbound.lost)} twice {len(r.inbound.twice)}" if r.inbound else "inbound -"
        )
        print(
            f"  seed {seed:>4}: {'ok    ' if r.ok else 'FAILED'} converged after {r.converged_after}"
            f" | dup {f['duplicates']} miss {f['missing']} mismatch {f['mismatches']} extra {f['extra']}"
            f" | {inbound_text} | kill {r.killed_after} | {r.seconds:.0f} s",
            flush=True,
        )
    return results


def report_a(results: list[CampaignResult], max_reconciles: int) -> None:
    totals: Counter[str] = Counter()
    for r in results:
        totals.update(r.check.figures())
    converged = Counter(str(r.converged_after) for r in results)
    worst = max((r.converged_after or max_reconciles + 1) for r in results) if results else 0
    lost = sum(len(r.inbound.lost) for r in results if r.inbound)
    twice = sum(len(r.inbound.twice) for r in results if r.inbound)
    expected = sum(r.inbound.expected for r in results if r.inbound)
    errors = sum(1 for r in results if r.errors)
    print(f"\n  over {len(results)} runs:")
    for name in ("duplicates", "missing", "mismatches", "extra"):
        print(f"    {name:<34} {totals[name]:>7}  (target 0)  {verdict(totals[name] == 0)}")
    print(
        f"    reconciles needed to converge      {dict(sorted(converged.items()))}"
        f"  worst {worst if worst <= max_reconciles else 'not converged'} (target ≤ 2)  {verdict(worst <= 2)}"
    )
    print(
        f"    inbound records lost               {lost:>7} of {expected:,}  (target 0)  {verdict(lost == 0)}"
    )
    print(f"    inbound records applied twice      {twice:>7}  (target 0)  {verdict(twice == 0)}")
    print(f"    runs with a crash or error         {errors:>7}  (target 0)  {verdict(errors == 0)}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\n  {len(failed)} failing run(s); replay one with ERPSYNC_CAMPAIGN_SEED=<seed>:")
        for r in failed:
            print("  " + r.describe().replace("\n", "\n  "))


# --- (b) requests / lower bound with 10 % of answers dropped -----------------------------------


def part_b(root: Path, seeds: list[int], records: int, max_reconciles: int) -> None:
    print(
        f"\n== (b) initial load of {records:,} + {records:,} with {DROP:.0%} of all answers dropped"
        " (nothing else injected), SmartKasa batch size 100"
    )
    worst = 0.0
    for seed in seeds:
        spec = CampaignSpec.from_seed(seed, records, inbound=False)
        spec.batch_size = 100
        pg = start(spec, root / f"b-{seed}")
        try:
            make_hostile(pg.erp_path, spec)
            engine = Engine(pg.settings())
            wanted = desired_records(engine)
            policies = engine.runtime(None).policies()
            for i, p in enumerate(("smartepi", "smartkasa")):
                pg.set_faults(
                    p, FaultConfig(seed=seed * 10 + i, p_drop_after_commit=DROP, write_methods=ALL_METHODS)
                )
            shapes: list[PlanShape] = []
            status = "?"
            try:
                status = engine.apply(on_plan=lambda plan, out=shapes: out.append(PlanShape.of(plan))).status
            except Exception as exc:  # a fault may fail the run; the reconciles below must repair it
                status = type(exc).__name__
            applied = _seen(pg)
            dropped = _dropped(pg)
            per_platform = {p: int(pg.stats(p)["total"]) for p in ("smartepi", "smartkasa")}
            routes = _routes(pg)
            for p in ("smartepi", "smartkasa"):
                pg.set_faults(p, FaultConfig())
            runs = 0
            check = check_remote(pg, wanted)
            while not check.ok and runs < max_reconciles:
                runs += 1
                try:
                    engine.reconcile()
                except Exception as exc:
                    print(f"  seed {seed}: reconcile {runs} failed: {type(exc).__name__}: {exc}"[:300])
                check = check_remote(pg, wanted)
            total = _seen(pg)
            shape = shapes[0] if shapes else PlanShape()
            bounds = lower_bound(shape, policies, {}, stock=True, cards_remote=0)
            bound = sum(bounds.values())
            ratio = applied / bound if bound else math.inf
            worst = max(worst, ratio)
            print(
                f"  seed {seed:>4}: apply ({status}) {applied:>6} requests, {dropped} answers dropped;"
                f" bound {bound:>6}; ratio {ratio:.3f} (target ≤ {RATIO_TARGET})"
                f" {verdict(ratio <= RATIO_TARGET)};"
                f" with {runs} reconcile(s) to converge {total / bound:.3f}; check {check.summary(3)}",
                flush=True,
            )
            print(
                "         per platform: "
                + ", ".join(f"{p} {per_platform[p]} / {bounds[p]}" for p in ("smartepi", "smartkasa"))
                + "; busiest routes: "
                + ", ".join(f"{r} {n}" for r, n in routes.most_common(6))
            )
        finally:
            pg.stop()
    print(f"  worst apply ratio {worst:.3f} (target ≤ {RATIO_TARGET})  {verdict(worst <= RATIO_TARGET)}")


def _routes(pg: Any) -> Counter[str]:
    """Requests per platform route (all statuses) as the sandboxes counted them."""
    out: Counter[str] = Counter()
    for p in ("smartepi", "smartkasa"):
        for route, counts in pg.stats(p)["routes"].items():
            out[f"{p} {route}"] += sum(counts.values())
    return out


def _seen(pg: Any) -> int:
    return int(pg.stats("smartepi")["total"]) + int(pg.stats("smartkasa")["total"])


def _dropped(pg: Any) -> int:
    return sum(
        counts.get("dropped", 0)
        for p in ("smartepi", "smartkasa")
        for counts in pg.stats(p)["routes"].values()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="seeded campaign runs in (a)")
    parser.add_argument("--records", type=int, default=2000, help="employees and SmartKasa products per run")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--seeds", help="comma-separated seeds (overrides --runs/--first-seed)")
    parser.add_argument("--ratio-runs", type=int, default=3, help="runs of (b)")
    parser.add_argument("--max-reconciles", type=int, default=2)
    parser.add_argument("--no-inbound", action="store_true", help="skip webhooks and pulls in (a)")
    parser.add_argument("--parts", default="ab")
    parser.add_argument(
        "--keep", type=Path, help="keep each run's folder (ERP, state, logs) under this folder"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the sandboxes on kill, too
    seeds = (
        [int(s) for s in args.seeds.split(",")]
        if args.seeds
        else seeds_from_env(list(range(args.first_seed, args.first_seed + args.runs)))
    )
    print(f"bench/faults.py: {load_text()}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="erpsync-bench-faults-") as tmp:
        root = args.keep or Path(tmp)
        if "a" in args.parts:
            results = part_a(root, seeds, args.records, args.max_reconciles, not args.no_inbound)
            report_a(results, args.max_reconciles)
        if "b" in args.parts:
            part_b(root, seeds[: args.ratio_runs], args.records, args.max_reconciles)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; {load_text()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
