"""Platforms filled by hand before erpsync: records with the same natural keys are adopted
(bound, then updated where they differ), never duplicated.

Full mode finds them in the remote listing (the planner adopts, no POST at all); fast mode
plans without reading the platforms: SmartEPI answers the POST with 409 and the executor
adopts by lookup (one POST per record, never a second), SmartKasa (which accepts duplicate
barcodes) is looked up before the create.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from apply_helpers import (
    MakePlayground,
    check_invariants,
    committed_posts,
    desired_records,
    post_keys,
    post_protocol_violations,
    recording_transports,
)

from sync.engine.api import Engine
from sync.state.store import StateStore

PREFILLED = 8


def _seed_by_hand(pg: Any, wanted: dict[tuple[str, str], Any]) -> dict[tuple[str, str], dict[str, str]]:
    """Create records on both platforms as a person would; returns ERP key -> remote id."""
    out: dict[tuple[str, str], dict[str, str]] = {}

    def epi(entity: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
        got = pg.epi_admin(
            "POST", f"/tenants/{pg.tenant}/seed/{entity.replace('_', '-')}", json=[r for _, r in rows]
        )
        out[("smartepi", entity)] = {k: str(rec["id"]) for (k, _), rec in zip(rows, got["data"], strict=True)}

    def kasa(entity: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
        got = pg.kasa_admin("POST", f"/seed/{entity}", json=[r for _, r in rows])
        out[("smartkasa", entity)] = {
            k: str(rec["id"]) for (k, _), rec in zip(rows, got["data"], strict=True)
        }

    sectors = wanted[("smartepi", "sectors")].desired[:3]
    # Same name in other case and spacing: the natural key folds both.
    epi(
        "sectors",
        [(d.erp_key, {"name": "  " + d.fields["name"].upper() + " ", "code": "X"}) for d in sectors],
    )
    employees = wanted[("smartepi", "employees")].desired
    derived = [d for d in employees if str(d.fields.get("identification", "")).startswith("ERP-")]
    assert derived, "the generated ERP has an employee without CPF and e-mail"
    chosen = employees[: PREFILLED - 1] + derived[:1]
    epi(
        "employees",
        [
            (
                d.erp_key,
                {k: d.fields[k] for k in ("identification", "email") if d.fields.get(k)} | {"name": "À mão"},
            )
            for d in chosen
        ],
    )
    categories = [d for d in wanted[("smartkasa", "categories")].desired if not d.fields.get("parent_id")][:2]
    kasa("categories", [(d.erp_key, {"title": d.fields["title"]}) for d in categories])
    products = wanted[("smartkasa", "products")].desired[:PREFILLED]
    kasa(
        "products",
        [
            (d.erp_key, {"number": d.fields["number"], "title": "typed by hand", "price": "1.00"})
            for d in products
        ],
    )
    return out


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_prefilled_platforms_are_adopted_not_duplicated(playground: MakePlayground, mode: str) -> None:
    pg = playground("adopt", employees=100, products_epi=6, products_kasa=40, seed=3)
    log: list[dict[str, Any]] = []
    engine = Engine(pg.settings(), transports=recording_transports(log))
    wanted = desired_records(engine)
    seeded = _seed_by_hand(pg, wanted)

    summary = engine.apply(mode=mode)  # type: ignore[arg-type]
    print(summary.counts)
    report = check_invariants(pg, wanted, engine=engine)
    assert report.ok, report.summary()
    assert not report.extra, report.extra
    assert not engine.plan().actions
    store = StateStore(pg.settings().state_url)
    assert not {s for s in store.intent_counts(pg.tenant) if s in ("pending", "unknown")}

    # The hand-made records are the ones bound (adopted), with their ids kept.
    for (platform, entity), ids in seeded.items():
        bound = store.bindings(pg.tenant, platform, entity)
        for erp_key, remote_id in ids.items():
            assert report.ids[(platform, entity)][erp_key] == remote_id
            assert bound[erp_key] == remote_id

    # Never a second POST; adopted records never POSTed except SmartEPI's 409 path in fast mode.
    assert post_protocol_violations(log) == []
    assert max(committed_posts(log).values()) == 1
    posted = Counter(k for e in log if e["status"] != 429 for k in post_keys(e))
    kasa_numbers = {
        ("products", wanted[("smartkasa", "products")].desired[i].fields["number"]) for i in range(PREFILLED)
    }
    assert not kasa_numbers & set(posted)
    epi_stats = pg.stats("smartepi")["routes"]
    for entity in ("sectors", "employees"):
        got = Counter(epi_stats.get(f"POST /v1/{entity}", {}))
        n = len(wanted[("smartepi", entity)].desired)
        assert got["201"] == n - len(seeded[("smartepi", entity)])
        assert got["409"] == (len(seeded[("smartepi", entity)]) if mode == "fast" else 0), dict(got)
