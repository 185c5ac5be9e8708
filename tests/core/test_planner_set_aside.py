"""Child rows set aside by the mapping never make the planner delete the platform's entries
(issue 14 item 8): the product syncs with its other children, the rest is left alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.core.mapping import MapContext, load_mappings
from sync.core.planner import EntityInputs, make_plan
from sync.core.records import Base, Desired, Remote

REPO = Path(__file__).resolve().parents[2]
EPI = load_mappings([REPO / "mappings/smartepi.yaml"])
EM = EPI.entity("smartepi", "products")
POLICY = EM.policy()
FIELDS = {"name": "Luva", "code": "P1", "active": True}


def _map(sizes: list[Any]) -> tuple[Desired, list[Any]]:
    rows = [{"produto": "P1", "tamanho": s} for s in sizes]
    ctx = MapContext(child_rows={"sizes": EM.group_child_rows("sizes", rows), "certificates": {}})
    result = EM.map_rows([{"codigo": "P1", "nome": "Luva", "ativo": 1}], ctx)
    (d,) = result.desired
    return d, result.quarantine


def _plan(d: Desired, quarantine: list[Any], have: list[str], *, full: bool) -> list[Any]:
    children = {"sizes": [{"name": n} for n in sorted(have)], "certificates": []}
    b = Base("P1", "r1", dict(FIELDS), children=children)
    remotes = {"r1": Remote("smartepi", "products", "r1", dict(FIELDS), children)} if full else None
    inputs = EntityInputs([d], {"P1": b}, remotes, quarantine=quarantine)
    plan = make_plan("t", [POLICY], {("smartepi", "products"): inputs}, mode="full" if full else "fast")
    return plan.actions


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize(
    ("erp", "platform"),
    [
        (["G", "M", "m"], ["G", "M"]),  # M and m collide: both set aside, the platform's M stays
        (["G", "M", None], ["G", "M"]),  # a size without a name: nothing is removed
        (["G", None], ["G", "M", "P"]),  # ... not even sizes gone from the ERP, until it is fixed
    ],
)
def test_set_aside_rows_leave_the_platform_entries_alone(
    erp: list[Any], platform: list[str], full: bool
) -> None:
    d, quarantine = _map(erp)
    assert len(quarantine) == 1 and quarantine[0].child_only
    assert _plan(d, quarantine, platform, full=full) == []


@pytest.mark.parametrize("full", [True, False])
def test_other_children_still_sync_next_to_a_set_aside_row(full: bool) -> None:
    d, quarantine = _map(["G", "XG", "M", "m"])  # XG is new; M/m set aside
    (action,) = _plan(d, quarantine, ["G", "M", "P"], full=full)  # P is gone from the ERP
    assert action.kind == "update"
    assert sorted(s["name"] for s in action.children["sizes"]) == ["G", "M", "XG"]


def test_without_the_quarantine_entry_the_platform_size_would_go() -> None:
    d, _ = _map(["G", "M", "m"])
    (action,) = _plan(d, [], ["G", "M"], full=True)
    assert [s["name"] for s in action.children["sizes"]] == ["G"]


def test_adopt_keeps_the_platform_entry_of_a_set_aside_row() -> None:
    d, quarantine = _map(["G", None])
    children = {"sizes": [{"name": "G"}, {"name": "M"}], "certificates": []}
    remotes = {"r9": Remote("smartepi", "products", "r9", dict(FIELDS), children)}
    inputs = EntityInputs([d], {}, remotes, quarantine=quarantine)
    plan = make_plan("t", [POLICY], {("smartepi", "products"): inputs}, mode="full")
    (action,) = plan.actions
    assert action.kind == "adopt" and action.children == {}


def test_create_sends_the_other_children() -> None:
    d, quarantine = _map(["G", None, "P"])
    inputs = EntityInputs([d], {}, {}, quarantine=quarantine)
    (action,) = make_plan("t", [POLICY], {("smartepi", "products"): inputs}, mode="full").actions
    assert action.kind == "create"
    assert action.children["sizes"] == [{"name": "G"}, {"name": "P"}]
