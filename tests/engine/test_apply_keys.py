"""Employees without CPF and e-mail in the ERP: a derived identification, never an unkeyed POST.

With the shipped mapping they get ``ERP-<matricula>`` and are created once; a second
erpsync install (a fresh state store) finds them by that identification and adopts them.
With derivation switched off they are quarantined and never sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apply_helpers import (
    MakePlayground,
    check_invariants,
    desired_records,
    post_protocol_violations,
    recording_transports,
)

from sync.engine.api import Engine
from sync.playground import shipped_mappings
from sync.state.store import StateStore


def _unkeyed_posts(log: list[dict[str, Any]]) -> list[Any]:
    return [
        e["body"]
        for e in log
        if e["m"] == "POST"
        and e["path"] == "/v1/employees"
        and not ((e["body"] or {}).get("identification") or (e["body"] or {}).get("email"))
    ]


def _unkeyed_erp_keys(pg: Any) -> list[str]:
    import sqlite3

    with sqlite3.connect(pg.erp_path) as conn:
        rows = conn.execute(
            "SELECT matricula FROM funcionarios WHERE coalesce(cpf, '') = '' AND coalesce(email, '') = ''"
        ).fetchall()
    return sorted(r[0] for r in rows)


def test_derived_identification_creates_once_and_is_adopted_later(playground: MakePlayground) -> None:
    pg = playground("derive", employees=200, products_epi=2, products_kasa=2, seed=9)
    unkeyed = _unkeyed_erp_keys(pg)
    assert len(unkeyed) >= 2
    log: list[dict[str, Any]] = []
    engine = Engine(pg.settings(), transports=recording_transports(log))
    engine.apply()
    report = check_invariants(pg, engine=engine)
    assert report.ok, report.summary()
    assert _unkeyed_posts(log) == []
    remote = {e["id"]: e for e in pg.epi_state()["employees"]}
    for key in unkeyed:
        rec = remote[report.ids[("smartepi", "employees")][key]]
        assert rec["identification"] == f"ERP-{key}" and not rec.get("email")

    # erpsync installed again with an empty state store: adopted by the derived key.
    settings = pg.settings().model_copy(update={"state_url": f"sqlite:///{pg.root / 'state2.db'}"})
    again = Engine(settings, transports=recording_transports(log))
    again.apply()
    after = check_invariants(pg, engine=again)
    assert after.ok and not after.extra, after.summary()
    assert after.ids == report.ids
    assert post_protocol_violations(log) == []
    assert len(pg.epi_state()["employees"]) == 200


def test_without_derivation_unkeyed_employees_are_quarantined_not_sent(
    playground: MakePlayground, tmp_path: Path
) -> None:
    epi_map, kasa_map = shipped_mappings()
    text = epi_map.read_text(encoding="utf-8")
    derive = 'derive_key: {field: identification, template: "ERP-{erp_key}"}'
    assert derive in text
    custom = tmp_path / "smartepi.yaml"
    custom.write_text(
        text.replace(derive, "derive_key: {field: identification, template: null}"), encoding="utf-8"
    )
    pg = playground(
        "quarantine", employees=200, products_epi=2, products_kasa=2, seed=9, mappings=[custom, kasa_map]
    )
    unkeyed = _unkeyed_erp_keys(pg)
    log: list[dict[str, Any]] = []
    engine = Engine(pg.settings(), transports=recording_transports(log))
    wanted = desired_records(engine)
    assert wanted[("smartepi", "employees")].quarantined == len(unkeyed)
    engine.apply()
    assert _unkeyed_posts(log) == []
    report = check_invariants(pg, wanted, engine=engine)
    assert report.ok and not report.extra, report.summary()
    held = {
        q.erp_key
        for q in StateStore(pg.settings().state_url).quarantined(pg.tenant)
        if q.entity == "employees"
    }
    assert held == set(unkeyed)
    assert len(pg.epi_state()["employees"]) == 200 - len(unkeyed)
