"""A sync settles (#16.3): after any apply, the next full plan is empty, whatever subset of
the optional fields the mappings map.

The shipped mappings (mappings/*.yaml) are run against the in-process sandboxes with
optional fields removed, top-level and in children: a field the mapping leaves out is the
platform's own (a SmartKasa card's ``counting_enabled``), never drift to overwrite.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync.core.mapping import load_mappings
from sync.engine.api import Engine
from sync.errors import ErpsyncError
from sync.playground import shipped_mappings, start_playground
from sync.state.store import StateStore

FILES = shipped_mappings()
SPECS = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in FILES]

# (file index, entity, child or "", field)
Slot = tuple[int, str, str, str]


def _fields(spec: dict[str, Any], slot: Slot) -> dict[str, Any]:
    _, entity, child, _ = slot
    ent = spec["entities"][entity]
    return ent["children"][child]["fields"] if child else ent["fields"]


def _without(slots: frozenset[Slot]) -> list[dict[str, Any]]:
    specs = yaml.safe_load(yaml.safe_dump(SPECS, allow_unicode=True))  # a deep copy
    for slot in slots:
        del _fields(specs[slot[0]], slot)[slot[3]]
    return specs


def _write(specs: list[dict[str, Any]], folder: Path) -> list[Path]:
    paths = []
    for spec, original in zip(specs, FILES, strict=True):
        path = folder / original.name
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def _loads(specs: list[dict[str, Any]]) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            load_mappings(_write(specs, Path(tmp)))
        except ErpsyncError:
            return False
    return True


def _optional() -> list[Slot]:
    """Every field whose removal alone leaves valid mappings and that is not ``required``."""
    out: list[Slot] = []
    for i, spec in enumerate(SPECS):
        for entity, ent in spec["entities"].items():
            groups = [("", ent["fields"])] + [(c, cs["fields"]) for c, cs in ent.get("children", {}).items()]
            for child, fields in groups:
                for name, fs in fields.items():
                    slot = (i, entity, child, name)
                    if isinstance(fs, dict) and fs.get("required"):
                        continue
                    if _loads(_without(frozenset({slot}))):
                        out.append(slot)
    return out


OPTIONAL = _optional()
CARDS_COUNTING: Slot = (1, "products", "cards", "counting_enabled")


def test_the_optional_fields_include_top_level_and_child_fields() -> None:
    assert CARDS_COUNTING in OPTIONAL
    assert any(not child for _, _, child, _ in OPTIONAL)
    assert {child for _, _, child, _ in OPTIONAL} >= {"cards", "certificates"}


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(removed=st.frozensets(st.sampled_from(OPTIONAL), max_size=6))
@example(removed=frozenset({CARDS_COUNTING}))
@example(removed=frozenset({(1, "products", "cards", "count"), (0, "products", "certificates", "expiresAt")}))
def test_plan_after_apply_is_empty(removed: frozenset[Slot]) -> None:
    specs = _without(removed)
    if not _loads(specs):  # two removals that are fine alone may not be together
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "maps").mkdir()
        paths = _write(specs, root / "maps")
        pg = start_playground(root / "pg", employees=6, products_epi=4, products_kasa=8, mappings=paths)
        try:
            conf = pg.settings()
            engine = Engine(conf, store=StateStore(conf.state_url))
            summary = engine.apply(pg.tenant)
            assert summary.status == "ok", summary.to_dict()
            plan = engine.plan(pg.tenant)
            left = [f"{a.platform}/{a.entity} {a.erp_key}: {a.kind} ({a.reason})" for a in plan.actions]
            assert plan.is_empty() and not left, f"removed {sorted(removed)}; next plan: {left[:5]}"
        finally:
            pg.stop()
