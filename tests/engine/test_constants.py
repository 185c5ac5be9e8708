"""``active: {constant: true}`` settles (issue 19 item 2): the constant is the boolean the
platform returns, so a second plan after apply is empty instead of updating every employee."""

from __future__ import annotations

from pathlib import Path

from apply_helpers import MakePlayground

from sync.engine.api import Engine
from sync.playground import shipped_mappings

ACTIVE = "      active: {from: situacao, lookup: situacao_ativo, type: boolean, default: true}\n"


def test_boolean_constant_second_plan_is_empty(playground: MakePlayground, tmp_path: Path) -> None:
    epi, kasa = sorted(shipped_mappings(), key=lambda p: "smartkasa" in p.name)
    text = epi.read_text(encoding="utf-8")
    assert ACTIVE in text
    mapping = tmp_path / "smartepi.yaml"
    mapping.write_text(text.replace(ACTIVE, "      active: {constant: true}\n"), encoding="utf-8")
    pg = playground("const", employees=25, products_epi=2, products_kasa=2, seed=4, mappings=[mapping, kasa])

    engine = Engine(pg.settings())
    first = engine.apply()
    assert first.status == "ok", first.counts
    employees = [e for e in pg.epi_state()["employees"] if not e.get("_deleted")]
    assert len(employees) == 25 and all(e["active"] is True for e in employees)

    assert engine.plan().actions == []
    second = engine.apply()
    assert second.status == "ok" and second.writes() == 0
