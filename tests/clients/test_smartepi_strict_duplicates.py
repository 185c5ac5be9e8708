"""Audit finding 5: the 409 tokens for a duplicate employee identification/email are undocumented
(contract §2.5). A simulator that answers ``urn:smartepi:error:conflict`` to a create of an
employee that already exists must still lead to the lookup-and-adopt path, not a failed record."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from sync.engine.api import Engine
from sync.playground import start_playground
from sync.state.store import StateStore


def test_an_existing_employee_is_adopted_when_the_409_token_is_conflict(tmp_path: Path) -> None:
    pg = start_playground(tmp_path / "pg", employees=12, products_epi=2, products_kasa=2, seed=5)
    try:
        knobs = httpx.patch(
            f"{pg.epi_url}/_admin/strictness", json={"duplicate_token": "conflict"}, timeout=30
        )
        assert knobs.status_code == 200 and knobs.json()["duplicate_token"] == "conflict"
        engine = Engine(pg.settings())
        plan = engine.plan()
        wanted = [
            a
            for a in plan.actions
            if a.platform == "smartepi"
            and a.entity == "employees"
            and a.kind == "create"
            and a.payload.get("identification")
        ][:3]
        assert wanted, "the generated ERP has employees with an identification"
        seeded = pg.epi_admin(
            "POST",
            f"/tenants/{pg.tenant}/seed/employees",
            json=[{"name": "Typed by hand", "identification": a.payload["identification"]} for a in wanted],
        )["data"]

        summary = engine.apply(mode="fast")
        store = StateStore(pg.settings().state_url)
        bound = store.bindings(pg.tenant, "smartepi", "employees")
        for action, record in zip(wanted, seeded, strict=True):
            assert bound[action.erp_key] == record["id"], summary.counts
        got: Counter[str] = Counter(pg.stats("smartepi")["routes"].get("POST /v1/employees", {}))
        assert got["409"] == len(wanted), dict(got)
        state: dict[str, Any] = pg.epi_state()
        employees = state["employees"] if isinstance(state.get("employees"), list) else None
        if employees is not None:  # no duplicate was created
            idents = [e.get("identification") for e in employees]
            assert all(idents.count(a.payload["identification"]) == 1 for a in wanted)
    finally:
        pg.stop()
