"""One seeded fault-campaign run: hostile ERP data, random faults, random kill -9, then convergence.

Shared by ``tests/campaign/test_fault_campaign.py`` (small sizes, a few seeds, in CI) and
``bench/faults.py`` (≥ 50 seeds at 2,000 + 2,000). Everything random derives from one seed, so a
failing run is replayed with ``ERPSYNC_CAMPAIGN_SEED=<seed>``.

A run (``run_campaign``):

1. **Data.** The demo ERP (``sync.demo.erpgen``) of the seed, then made hostile: a seeded share of
   SmartKasa products lose their barcode (``number`` NULL: no natural key on the platform) and of
   employees lose their CPF (``identification``; some their e-mail too, so the mapping derives a key).
2. **Faults.** Per platform through the sandboxes' fault layer (``/_admin/faults``): 5xx before the
   handler, answers dropped after commit (single and batch creates alike), 429 with ``Retry-After``,
   and on some seeds reads too (a dropped read is a truncated body: the head and half the body, then
   the connection closes). On some seeds SmartKasa returns batch-created ids shuffled
   (``PATCH /_admin/config {"batch_order": "shuffled"}``; that is the platform's behaviour, not a
   fault, so it stays on after the faults stop).
3. **Faulty runs.** ``erpsync apply`` in a child process, on some seeds killed with SIGKILL after a
   seeded number of requests (counted in the sandbox statistics); then one more apply in this
   process with the faults still on (it may fail: faults are faults).
4. **Convergence.** Faults off; up to ``max_reconciles`` reconciles. After each, the sandboxes are
   listed (their admin dumps: ground truth, independent of erpsync's bindings) and compared with the
   ERP mapped by the tenant's own mapping set (``check_remote``), and the next plan must be empty.
5. **Inbound.** Transactions generated on SmartEPI (delivered as signed webhooks to the real receiver
   router, duplicated, reordered, some forged or stale, the receiver restarted mid-stream, a seeded
   share of enqueues lost as if the worker died) and closed shifts of sales on SmartKasa; ``erpsync
   pull`` with read faults, on some seeds killed with SIGKILL; then clean pulls and the relay (what
   the beat does for rows stored but never applied). Every platform record must land in the sink
   exactly once (``check_inbound``).

``CampaignResult`` carries the figures the bench aggregates and a ``describe()`` for failures.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
if str(ENGINE_TESTS) not in sys.path:
    sys.path.insert(0, str(ENGINE_TESTS))

from apply_helpers import _children_same, _same, desired_records  # noqa: E402

from sync.core.keys import fold, fold_email, fold_identification  # noqa: E402
from sync.core.records import Desired  # noqa: E402
from sync.engine.api import Engine  # noqa: E402
from sync.engine.inbound import process_inbox, relay  # noqa: E402
from sync.playground import Playground, start_playground  # noqa: E402
from sync.sandbox.faults import FaultConfig  # noqa: E402
from sync.sandbox.runner import serve_in_thread  # noqa: E402
from sync.sinks import open_sink  # noqa: E402
from sync.state.store import StateStore  # noqa: E402
from sync.web.webhooks import make_webhook_router  # noqa: E402

SEED_ENV = "ERPSYNC_CAMPAIGN_SEED"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
WRITES = ["POST", "PUT", "PATCH", "DELETE"]
EPI_STREAMS = ("withdrawals", "returns", "exchanges", "training_records")


# --- the plan of one run, derived from the seed ---------------------------------------------------


@dataclass
class CampaignSpec:
    """What one seed decides. ``records`` is employees and SmartKasa products each."""

    seed: int
    records: int = 40
    epi_products: int = 5
    no_barcode: float = 0.3  # share of SmartKasa products without a barcode
    no_cpf: float = 0.2  # share of employees without identification
    no_email_too: float = 0.5  # of those, the share without an e-mail either (derived key)
    batch_size: int = 10
    shuffled: bool = True
    faults: dict[str, FaultConfig] = field(default_factory=dict)
    read_faults: bool = False
    kill_after: int | None = None  # requests seen by the sandboxes before SIGKILL (None: no kill)
    inbound: bool = True
    inbound_kill_after: int | None = None
    transactions: int = 30  # per SmartEPI kind
    receipts_per_shift: int = 5

    @classmethod
    def from_seed(
        cls, seed: int, records: int = 40, *, inbound: bool = True, kill: bool | None = None
    ) -> CampaignSpec:
        rng = random.Random(f"campaign:{seed}")
        read_faults = rng.random() < 0.5
        methods = ALL_METHODS if read_faults else WRITES

        def faults(salt: int) -> FaultConfig:
            return FaultConfig(
                seed=seed * 10 + salt,
                p_5xx=round(rng.uniform(0.0, 0.08), 3),
                p_drop_after_commit=round(rng.uniform(0.05, 0.3), 3),
                p_429=round(rng.uniform(0.0, 0.05), 3),
                retry_after=round(rng.uniform(0.0, 0.05), 3),
                write_methods=methods,
            )

        # Roughly the requests of a whole initial load: the kill lands before its end.
        estimate = max(20, int(records * 2.5))
        killed = rng.random() < 0.6 if kill is None else kill
        return cls(
            seed=seed,
            records=records,
            no_barcode=round(rng.uniform(0.1, 0.5), 2),
            no_cpf=round(rng.uniform(0.05, 0.3), 2),
            no_email_too=round(rng.uniform(0.3, 1.0), 2),
            batch_size=rng.choice([5, 10, 25, 100]),
            shuffled=rng.random() < 0.6,
            faults={"smartepi": faults(1), "smartkasa": faults(2)},
            read_faults=read_faults,
            kill_after=rng.randint(3, estimate) if killed else None,
            inbound=inbound,
            inbound_kill_after=rng.randint(2, 12) if inbound and rng.random() < 0.5 else None,
            transactions=max(10, records // 2),
        )

    @classmethod
    def harsh(cls, seed: int, records: int = 60) -> CampaignSpec:
        """A harsher profile that finds rare interleavings at small sizes: batches of 5, ids shuffled,
        most products without a barcode, 15 % 5xx, 30 % dropped and 10 % 429 on every method
        (so follow-up writes of a batch, such as its stock cards, fail often too)."""
        spec = cls.from_seed(seed, records, inbound=False)
        spec.batch_size, spec.shuffled, spec.no_barcode, spec.read_faults = 5, True, 0.6, True
        spec.faults = {
            p: FaultConfig(
                seed=seed * 10 + i,
                p_5xx=0.15,
                p_drop_after_commit=0.3,
                p_429=0.1,
                retry_after=0.01,
                write_methods=ALL_METHODS,
            )
            for i, p in enumerate(("smartepi", "smartkasa"), start=1)
        }
        return spec

    def brief(self) -> str:
        f = {
            p: c.model_dump(include={"p_5xx", "p_drop_after_commit", "p_429"}) for p, c in self.faults.items()
        }
        return (
            f"seed={self.seed} records={self.records} no_barcode={self.no_barcode} no_cpf={self.no_cpf}"
            f" batch={self.batch_size} shuffled={self.shuffled} read_faults={self.read_faults}"
            f" kill_after={self.kill_after} inbound_kill_after={self.inbound_kill_after} faults={f}"
        )


def seeds_from_env(default: list[int]) -> list[int]:
    """``ERPSYNC_CAMPAIGN_SEED=7`` (or ``7,8,9``) pins the seeds; otherwise ``default``."""
    raw = os.environ.get(SEED_ENV, "").strip()
    return [int(s) for s in raw.split(",") if s.strip()] if raw else default


# --- hostile data -------------------------------------------------------------------------------


def make_hostile(erp: Path, spec: CampaignSpec) -> dict[str, int]:
    """Blank barcodes and identifications on a seeded share of rows; returns how many."""
    rng = random.Random(f"data:{spec.seed}")
    with sqlite3.connect(erp) as conn:
        skus = [r[0] for r in conn.execute("SELECT sku FROM kasa_products ORDER BY sku")]
        blank = [s for s in skus if rng.random() < spec.no_barcode]
        conn.executemany("UPDATE kasa_products SET barcode = NULL WHERE sku = ?", [(s,) for s in blank])
        people = [r[0] for r in conn.execute("SELECT matricula FROM funcionarios ORDER BY matricula")]
        no_cpf = [m for m in people if rng.random() < spec.no_cpf]
        no_email = [m for m in no_cpf if rng.random() < spec.no_email_too]
        conn.executemany("UPDATE funcionarios SET cpf = NULL WHERE matricula = ?", [(m,) for m in no_cpf])
        conn.executemany("UPDATE funcionarios SET email = NULL WHERE matricula = ?", [(m,) for m in no_email])
    return {"products_without_barcode": len(blank), "employees_without_cpf": len(no_cpf)}


# --- the check: list the sandboxes, compare with the mapping's output ---------------------------


@dataclass
class Check:
    duplicates: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # platform records no ERP row accounts for

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.mismatches or self.extra)

    def figures(self) -> dict[str, int]:
        return {
            "duplicates": len(self.duplicates),
            "missing": len(self.missing),
            "mismatches": len(self.mismatches),
            "extra": len(self.extra),
        }

    def summary(self, n: int = 6) -> str:
        parts = []
        for name in ("duplicates", "missing", "mismatches", "extra"):
            xs: list[str] = getattr(self, name)
            if xs:
                parts.append(f"{name}={len(xs)} e.g. {xs[:n]}")
        return "; ".join(parts) or "ok"


def _identity(platform: str, entity: str, rec: dict[str, Any]) -> tuple[str, ...] | None:
    """How a platform record is recognised as one ERP row, independent of erpsync's bindings.

    SmartKasa products by ``alter_number`` (the shipped mapping puts the ERP key there: every row
    has one, barcode or not); employees by identification, else e-mail; categories by title and
    parent; other SmartEPI entities by folded name.
    """
    if platform == "smartkasa" and entity == "products":
        marker = str(rec.get("alter_number") or "").strip()
        return ("alt", marker) if marker else None
    if platform == "smartkasa" and entity == "categories":
        title = fold(rec.get("title"))
        parent = rec.get("parent_id")
        return (title or "", "" if parent in (None, "") else str(parent))
    if entity == "employees":
        ident = fold_identification(rec.get("identification"))
        if ident:
            return ("id", ident)
        email = fold_email(rec.get("email"))
        return ("email", email) if email else None
    name = fold(rec.get("name"))
    return ("name", name) if name else None


def remote_tables(pg: Playground) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The sandboxes' records (admin dumps), SmartKasa products with their cards attached."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for res, rows in pg.epi_state().items():
        out[("smartepi", res.replace("-", "_"))] = [r for r in rows if not r.get("_deleted")]
    kasa = pg.kasa_state()
    cards: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in kasa.get("cards", []):
        cards[str(c.get("product_id"))].append(c)
    out[("smartkasa", "categories")] = list(kasa.get("categories", []))
    out[("smartkasa", "products")] = [
        dict(r, cards=cards.get(str(r["id"]), [])) for r in kasa.get("products", [])
    ]
    out[("smartkasa", "_cards")] = list(kasa.get("cards", []))
    return out


def check_remote(pg: Playground, wanted: dict[tuple[str, str], Any]) -> Check:
    """Every ERP row exactly once per platform, field by field equal, stock cards on its own product."""
    tables = remote_tables(pg)
    out = Check()
    per_card = Counter(
        (str(c.get("product_id")), str(c.get("shop_id"))) for c in tables[("smartkasa", "_cards")]
    )
    out.duplicates += [f"smartkasa/cards {k} x{n}" for k, n in per_card.items() if n > 1]
    product_ids = {str(p["id"]) for p in tables[("smartkasa", "products")]}
    out.extra += [f"smartkasa/cards {k}: no such product" for k in per_card if k[0] not in product_ids]
    ids: dict[tuple[str, str], dict[str, str]] = {}
    for (platform, entity), ed in sorted(wanted.items(), key=lambda kv: (kv[0][0], kv[1].policy.level)):
        policy = ed.policy
        rows = tables.get((platform, entity), [])
        index: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if (k := _identity(platform, entity, r)) is not None:
                index[k].append(r)
            if entity == "employees" and (m := fold_email(r.get("email"))) and (k is None or k[0] != "email"):
                index[("email", m)].append(r)
        for k, rs in index.items():
            if len(rs) > 1:
                seen = [r.get("number") if entity == "products" else r["id"] for r in rs]
                what = "numbers" if entity == "products" else "ids"
                out.duplicates.append(f"{platform}/{entity} {k} x{len(rs)} {what} {seen}")
        if (platform, entity) == ("smartkasa", "products"):
            numbers = Counter(
                str(r.get("number")).strip() for r in rows if str(r.get("number") or "").strip()
            )
            out.duplicates += [f"smartkasa/products number {n} x{c}" for n, c in numbers.items() if c > 1]
        mine = ids.setdefault((platform, entity), {})
        refs = {n: fp.ref for n, fp in policy.fields.items() if fp.ref}

        def resolve(value: Any, target: str, platform: str = platform) -> Any:
            if value is None:
                return None
            if isinstance(value, list):
                return [resolve(v, target) for v in value]
            return ids.get((platform, target), {}).get(str(value), f"<unmatched {target} {value}>")

        matched: set[str] = set()
        pending: list[Desired] = list(ed.desired)
        while pending:
            later: list[Desired] = []
            keys_pending = {d.erp_key for d in pending}
            for d in pending:
                self_refs = [n for n, t in refs.items() if t == entity and d.fields.get(n) is not None]
                if any(str(d.fields[n]) not in mine and str(d.fields[n]) in keys_pending for n in self_refs):
                    later.append(d)
                    continue
                fields = {n: (resolve(v, refs[n]) if n in refs else v) for n, v in d.fields.items()}
                key = _identity(platform, entity, fields)
                hits = index.get(key, []) if key is not None else []
                if not hits:
                    out.missing.append(f"{platform}/{entity} {d.erp_key} {key}")
                    continue
                rec = hits[0]
                mine[d.erp_key] = str(rec["id"])
                matched.update(str(h["id"]) for h in hits)  # duplicates are reported above, once
                for name, value in fields.items():
                    fp = policy.fields.get(name)
                    if fp is not None and fp.direction == "pull":
                        continue
                    if not _same(value, rec.get(name)):
                        where = f"{platform}/{entity} {d.erp_key}.{name}"
                        out.mismatches.append(f"{where}: ERP {value!r} vs remote {rec.get(name)!r}")
                for name, entries in d.children.items():
                    if not _children_same(name, entries, list(rec.get(name) or [])):
                        where = f"{platform}/{entity} {d.erp_key}.{name}"
                        out.mismatches.append(f"{where}: ERP {entries!r} vs remote {rec.get(name)!r}")
            if len(later) == len(pending):
                out.missing += [f"{platform}/{entity} {d.erp_key}: parent never matched" for d in later]
                break
            pending = later
        out.extra += [
            f"{platform}/{entity} {r['id']} {_identity(platform, entity, r)}"
            for r in rows
            if str(r["id"]) not in matched
        ]
    return out


# --- inbound ---------------------------------------------------------------------------------


@dataclass
class InboundCheck:
    expected: int = 0
    lost: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.twice)

    def summary(self, n: int = 6) -> str:
        lost, twice = f"{len(self.lost)} {self.lost[:n]}", f"{len(self.twice)} {self.twice[:n]}"
        return f"expected {self.expected}, lost={lost}, twice={twice}"


def check_inbound(pg: Playground) -> InboundCheck:
    """Every SmartEPI transaction and every receipt of a closed SmartKasa shift once in the sink."""
    settings = pg.settings()
    tid, tenant = settings.tenant(pg.tenant)
    sink: Any = open_sink(tenant, tenant_id=tid, store=StateStore(settings.state_url))
    out = InboundCheck()
    try:
        epi = pg.epi_state()
        kasa = pg.kasa_state()
        closed = {str(s["id"]) for s in kasa.get("shifts", []) if s.get("closed_at") or s.get("state") == 1}
        wanted: dict[str, set[str]] = {
            s: {str(r["id"]) for r in epi.get(s.replace("_", "-"), [])} for s in EPI_STREAMS
        }
        wanted["receipts"] = {
            str(r["id"]) for r in kasa.get("receipts", []) if str(r.get("shift_id")) in closed
        }
        for stream, ids in wanted.items():
            out.expected += len(ids)
            landed = Counter(str(r["remote_id"]) for r in sink.rows(stream))
            out.lost += [f"{stream} {i}" for i in sorted(ids - set(landed))]
            out.twice += [f"{stream} {i} x{n}" for i, n in landed.items() if n > 1]
    finally:
        sink.close()
    return out


# --- the run -------------------------------------------------------------------------------------


@dataclass
class CampaignResult:
    spec: CampaignSpec
    data: dict[str, int] = field(default_factory=dict)
    killed_after: int | None = None  # requests seen when the kill landed (None: not killed)
    faulty_status: list[str] = field(default_factory=list)
    reconciles: int = 0  # reconciles run after the faults stopped
    converged_after: int | None = None  # reconciles needed (None: not within the limit)
    check: Check = field(default_factory=Check)
    leftover: list[str] = field(default_factory=list)  # the next plan's actions after the last reconcile
    inbound: InboundCheck | None = None
    inbound_killed_after: int | None = None
    pulls: int = 0
    webhooks: dict[str, int] = field(default_factory=dict)
    fault_counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        inbound_ok = self.inbound is None or self.inbound.ok
        return self.converged_after is not None and self.check.ok and inbound_ok and not self.errors

    def describe(self) -> str:
        lines = [
            f"campaign {self.spec.brief()}",
            f"  replay: {SEED_ENV}={self.spec.seed} (records={self.spec.records})",
            f"  data: {self.data}; faults seen: {self.fault_counts}",
            f"  faulty runs: {self.faulty_status}; killed after {self.killed_after} requests",
            f"  reconciles: {self.reconciles}, converged after: {self.converged_after}",
            f"  remote check: {self.check.summary()}",
        ]
        if self.leftover:
            lines.append(f"  next plan not empty: {len(self.leftover)} e.g. {self.leftover[:6]}")
        if self.inbound is not None:
            lines.append(
                f"  inbound: {self.inbound.summary()} (pulls {self.pulls},"
                f" killed after {self.inbound_killed_after}; webhooks {self.webhooks})"
            )
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


def _requests_seen(pg: Playground) -> int:
    return int(pg.stats("smartepi")["total"]) + int(pg.stats("smartkasa")["total"])


def _fault_counts(pg: Playground) -> Counter[str]:
    out: Counter[str] = Counter()
    for p in ("smartepi", "smartkasa"):
        for counts in pg.stats(p)["routes"].values():
            for status, n in counts.items():
                if status == "dropped" or status == "429" or status.startswith("5"):
                    out[f"{p}:{status}"] += n
    return out


def child_command(
    pg: Playground, *args: str, root: Path, kill_after: int | None, name: str
) -> tuple[int | None, int | None]:
    """Run ``erpsync <args> --config …`` in a child; SIGKILL it after ``kill_after`` requests.

    Returns (requests seen at the kill or None, the child's exit code or None when killed).
    """
    err = (root / f"{name}.err").open("wb")
    cmd = [sys.executable, "-m", "sync", *args, "--config", str(pg.config_path)]
    child = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=err)
    base = _requests_seen(pg)
    try:
        deadline = time.monotonic() + 600
        while child.poll() is None and time.monotonic() < deadline:
            if kill_after is not None and _requests_seen(pg) - base >= kill_after:
                child.send_signal(signal.SIGKILL)
                child.wait(30)
                return _requests_seen(pg) - base, None
            time.sleep(0.005)
        if child.poll() is None:
            child.kill()
        return None, child.wait(30)
    finally:
        err.close()


def _set_batch_size(pg: Playground, size: int) -> None:
    cfg = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    cfg["tenants"][pg.tenant]["smartkasa"]["batch_size"] = size
    pg.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _no_faults(pg: Playground) -> None:
    pg.set_faults("smartepi", FaultConfig())
    pg.set_faults("smartkasa", FaultConfig())


def start(spec: CampaignSpec, root: Path) -> Playground:
    """The playground of a spec: the generated ERP, the batch size, shuffled batch ids if chosen
    (``make_hostile`` is the caller's next step)."""
    pg = start_playground(
        root,
        employees=spec.records,
        products_epi=spec.epi_products,
        products_kasa=spec.records,
        seed=spec.seed,
        rate={"requests_per_second": 5000.0, "burst": 1000, "concurrency": 8},
    )
    try:
        _set_batch_size(pg, spec.batch_size)
        if spec.shuffled:
            pg.kasa_admin("PATCH", "/config", json={"batch_order": "shuffled"})
    except BaseException:
        pg.stop()
        raise
    return pg


def converge(
    pg: Playground, engine: Engine, wanted: Any, result: CampaignResult, max_reconciles: int
) -> None:
    """Reconcile until the listing matches and the next plan is empty (at most ``max_reconciles``)."""
    for i in range(1, max_reconciles + 1):
        result.reconciles = i
        failed = False
        try:
            engine.reconcile()
        except Exception as exc:  # a crash is a finding, reported with the seed
            result.errors.append(f"reconcile {i}: {type(exc).__name__}: {exc}"[:500])
            failed = True
        result.check = check_remote(pg, wanted)
        try:
            plan = engine.plan()
            result.leftover = [f"{a.platform}/{a.entity} {a.kind} {a.erp_key}" for a in plan.actions]
        except Exception as exc:
            result.leftover = [f"plan failed: {type(exc).__name__}: {exc}"[:300]]
        if result.check.ok and not result.leftover and not failed:
            result.converged_after = i
            return


def run_campaign(spec: CampaignSpec, root: Path, *, max_reconciles: int = 2) -> CampaignResult:
    """One seeded run (see module docstring); never raises for findings, only records them."""
    t0 = time.monotonic()
    result = CampaignResult(spec)
    root.mkdir(parents=True, exist_ok=True)
    pg = start(spec, root)
    try:
        result.data = make_hostile(pg.erp_path, spec)
        engine = Engine(pg.settings())
        wanted = desired_records(engine)
        for p, cfg in spec.faults.items():
            pg.set_faults(p, cfg)
        killed, rc = child_command(
            pg, "apply", "--yes", "--quiet", root=root, kill_after=spec.kill_after, name="apply"
        )
        result.killed_after = killed
        result.faulty_status.append("killed" if killed is not None else f"exit {rc}")
        try:
            result.faulty_status.append(engine.apply().status)
        except Exception as exc:  # faults may fail a run; that is allowed before they stop
            result.faulty_status.append(f"{type(exc).__name__}")
        result.fault_counts = dict(_fault_counts(pg))
        _no_faults(pg)
        converge(pg, engine, wanted, result, max_reconciles)
        if spec.inbound:
            run_inbound(pg, spec, root, result)
    except Exception as exc:
        result.errors.append(f"harness: {type(exc).__name__}: {exc}"[:800])
    finally:
        pg.stop()
        result.seconds = time.monotonic() - t0
    return result


class _Worker:
    """Stands in for the Celery worker: applies enqueued inbox rows; a seeded share of enqueues is
    lost (the worker died holding them, or Redis lost them) and must come back through the relay."""

    def __init__(self, pg: Playground, p_lost: float, seed: int) -> None:
        settings = pg.settings()
        self.tid, self.tenant = settings.tenant(pg.tenant)
        self.store = StateStore(settings.state_url)
        self.sink: Any = open_sink(self.tenant, tenant_id=self.tid, store=self.store)
        self.rng = random.Random(f"worker:{seed}")
        self.p_lost = p_lost
        self.lost = 0
        self.errors: list[str] = []
        self.queue: queue.Queue[list[int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def enqueue(self, tenant: str, ids: list[int]) -> None:
        if self.rng.random() < self.p_lost:
            self.lost += len(ids)
            return
        self.queue.put(list(ids))

    def _run(self) -> None:
        while (ids := self.queue.get()) is not None:
            self.apply(ids)

    def apply(self, ids: list[int]) -> None:
        try:
            process_inbox(self.store, self.tid, self.tenant, self.sink, ids)
        except Exception as exc:  # a failed task is retried by the relay, as in the service
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])

    def relay(self) -> None:
        """What the beat's relay does: hand stored-but-unapplied rows back to a worker."""
        for tenant, ids in relay(self.store, 0):
            if tenant == self.tid:
                self.apply(ids)

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(60)
        self.sink.close()


def _webhook_secret(pg: Playground) -> str:
    return next(v for k, v in pg.env.items() if k.endswith("_WEBHOOK_SECRET"))


def run_inbound(pg: Playground, spec: CampaignSpec, root: Path, result: CampaignResult) -> None:
    """Webhooks (duplicated, reordered, forged, receiver restarted, enqueues lost) and pulls (read
    faults, SIGKILL), then the relay and clean pulls: every record once in the sink."""
    rng = random.Random(f"inbound:{spec.seed}")
    settings = pg.settings()
    store = StateStore(settings.state_url)
    worker = _Worker(pg, p_lost=rng.uniform(0.0, 0.3), seed=spec.seed)
    app = FastAPI()
    app.include_router(make_webhook_router(lambda: settings, lambda: store, worker.enqueue))
    receiver = serve_in_thread(app)
    port = receiver.port
    try:
        pg.epi_admin(
            "PATCH",
            f"/tenants/{pg.tenant}",
            json={
                "webhook_url": f"{receiver.url}/webhooks/smartepi/{pg.tenant}",
                "webhook_secret": _webhook_secret(pg),
            },
        )
        pg.epi_admin(
            "PUT",
            "/webhooks/options",
            json={
                "seed": spec.seed,
                "p_duplicate": round(rng.uniform(0.0, 0.3), 3),
                "reorder": True,
                "p_bad_signature": round(rng.uniform(0.0, 0.1), 3),
                "p_stale_timestamp": round(rng.uniform(0.0, 0.1), 3),
                "max_attempts": 30,
                "backoff_s": 0.02,
                "backoff_factor": 2.0,
                "backoff_max_s": 0.3,
                "timeout_s": 5,
            },
        )
        kinds = ("withdrawals", "returns", "exchanges", "training-records")
        for i, kind in enumerate(kinds):
            pg.epi_admin(
                "POST",
                f"/tenants/{pg.tenant}/generate",
                json={"kind": kind, "count": spec.transactions, "seed": spec.seed * 7 + i},
            )
            if i == 1:  # the receiver goes down mid-stream and comes back on the same port
                receiver.stop()
                time.sleep(0.2)
                receiver = serve_in_thread(app, port=port)
        pg.kasa_admin(
            "POST", "/generate/day", json={"receipts_per_shift": spec.receipts_per_shift, "seed": spec.seed}
        )
        pg.epi_admin("POST", "/webhooks/flush", params={"timeout": 60})
        status = pg.epi_admin("GET", "/webhooks")
        result.webhooks = {
            "deliveries": len(status.get("log", [])),
            "duplicates": sum(1 for e in status.get("log", []) if e.get("duplicate")),
            "gave_up": sum(1 for e in status.get("log", []) if e.get("gave_up")),
        }
    finally:
        receiver.stop()
        worker.stop()
    result.webhooks["enqueues_lost"] = worker.lost

    for p, cfg in spec.faults.items():
        pg.set_faults(p, cfg.model_copy(update={"write_methods": ALL_METHODS}))
    killed, _ = child_command(pg, "pull", root=root, kill_after=spec.inbound_kill_after, name="pull0")
    result.inbound_killed_after = killed
    result.pulls = 1
    _no_faults(pg)
    for _ in range(2):
        name = f"pull{result.pulls}"
        _, rc = child_command(pg, "pull", root=root, kill_after=None, name=name)
        result.pulls += 1
        if rc != 0:
            err = (root / f"{name}.err").read_text(encoding="utf-8", errors="replace")
            result.errors.append(f"pull without faults exited {rc}: {err[-400:]}")
        relayer = _Worker(pg, 0.0, spec.seed)
        relayer.relay()  # rows parked until their references were bound, rows never enqueued
        relayer.stop()
        result.errors += [f"inbox: {e}" for e in worker.errors + relayer.errors]
        worker.errors = []
        result.inbound = check_inbound(pg)
        if result.inbound.ok:
            return
