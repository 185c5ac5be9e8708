"""Plan model: JSON round-trip with typed values, version check, hash, freshness, order."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from sync.core.plan import Action, FieldChange, Plan, count_actions
from sync.core.records import QuarantineEntry
from sync.errors import PlanError, StalePlan

WHEN = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def sample_plan() -> Plan:
    actions = [
        Action(
            kind="update",
            platform="smartkasa",
            entity="products",
            erp_key="K1",
            remote_id="u1",
            level=1,
            changes=[
                FieldChange(
                    "price", Decimal("1.5"), Decimal("2.25"), Decimal("1.5"), Decimal("2.25"), "push"
                ),
                FieldChange("title", "a", "b", "c", "b", "conflict", "erp_wins"),
            ],
            payload={"price": Decimal("2.25"), "title": "b", "since": dt.date(2026, 1, 31)},
            children={"cards": [{"shop_id": Decimal(7), "count": Decimal("3.5")}]},
            reason="changed: price, title",
            base_version="etag-1",
            agreed={"price": Decimal("2.25"), "title": "b", "at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
            agreed_children={"cards": [{"shop_id": Decimal(7), "count": Decimal("3.5")}]},
        ),
        Action(
            kind="create",
            platform="smartepi",
            entity="sectors",
            erp_key="S1",
            remote_id=None,
            level=0,
            payload={"name": "Ops", "tags": ["a", "b"], "meta": {"$decimal": "not a tag"}},
            natural_key=("name", "ops"),
        ),
    ]
    return Plan(
        tenant="acme",
        mode="full",
        created_at=WHEN,
        actions=actions,
        counts=count_actions(actions),
        request_estimate={"smartepi": 3, "smartkasa": 2},
        fingerprints={"smartepi/sectors/desired": "aa", "smartepi/sectors/base": "bb"},
        quarantine=[
            QuarantineEntry("smartepi", "employees", "E9", "email", "format", "bad email", value="***")
        ],
        sensitive={"smartepi/employees": ["identification"]},
    )


def test_json_round_trip_keeps_types() -> None:
    plan = sample_plan()
    back = Plan.from_json(plan.to_json())
    assert back == plan
    a = back.actions[0]
    assert isinstance(a.payload["price"], Decimal) and a.payload["price"] == Decimal("2.25")
    assert a.payload["since"] == dt.date(2026, 1, 31)
    assert a.agreed["at"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert a.changes[0].base == Decimal("1.5")
    assert back.actions[1].natural_key == ("name", "ops")
    assert back.hash == plan.hash


def test_a_data_dict_that_looks_like_a_tag_survives_as_data() -> None:
    back = Plan.from_json(sample_plan().to_json(indent=2))
    assert back.actions[1].payload["meta"] == {"$decimal": "not a tag"}
    assert back.actions[1].payload["tags"] == ["a", "b"]


def test_unknown_version_is_refused_with_a_clear_error() -> None:
    data = json.loads(sample_plan().to_json())
    data["version"] = 2
    with pytest.raises(PlanError, match="unsupported plan file version 2"):
        Plan.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["not json", "[1, 2]", json.dumps({"version": 1, "tenant": "x"})])
def test_malformed_plan_files_raise_plan_error(text: str) -> None:
    with pytest.raises(PlanError):
        Plan.from_json(text)


def test_unknown_action_kind_is_refused() -> None:
    data = json.loads(sample_plan().to_json())
    data["actions"][0]["kind"] = "explode"
    with pytest.raises(PlanError, match="unknown action kind"):
        Plan.from_dict(data)


def test_hash_ignores_created_at_but_not_content() -> None:
    plan = sample_plan()
    later = sample_plan()
    later.created_at = WHEN + dt.timedelta(hours=1)
    assert later.hash == plan.hash
    changed = sample_plan()
    changed.actions[0].payload["price"] = Decimal("2.26")
    assert changed.hash != plan.hash


def test_stale_check_names_what_changed() -> None:
    plan = sample_plan()
    plan.check_fresh(dict(plan.fingerprints))
    moved = {**plan.fingerprints, "smartepi/sectors/base": "cc", "smartkasa/products/desired": "dd"}
    assert plan.stale_inputs(moved) == ["smartepi/sectors/base", "smartkasa/products/desired"]
    with pytest.raises(StalePlan, match="smartepi/sectors/base, smartkasa/products/desired"):
        plan.check_fresh(moved)


def test_sort_key_puts_dependencies_first_and_deletes_last_in_reverse() -> None:
    def act(kind: str, entity: str, level: int, key: str) -> Action:
        return Action(kind=kind, platform="smartepi", entity=entity, erp_key=key, remote_id=None, level=level)  # type: ignore[arg-type]

    actions = [
        act("delete", "sectors", 0, "S9"),
        act("update", "employees", 2, "E1"),
        act("delete", "employees", 2, "E9"),
        act("create", "sectors", 0, "S2"),
        act("create", "sectors", 0, "S1"),
    ]
    ordered = sorted(actions, key=Action.sort_key)
    assert [(a.kind, a.erp_key) for a in ordered] == [
        ("create", "S1"),
        ("create", "S2"),
        ("update", "E1"),
        ("delete", "E9"),
        ("delete", "S9"),
    ]


def test_pulled_lists_values_for_the_erp() -> None:
    a = Action(
        kind="pull",
        platform="smartepi",
        entity="employees",
        erp_key="E1",
        remote_id="r1",
        level=2,
        changes=[
            FieldChange("email", "a", "a", "b", "b", "pull"),
            FieldChange("phone", "1", "2", "3", "3", "conflict", "remote_wins"),
            FieldChange("name", "x", "y", "x", "y", "push"),
            FieldChange("notes", "x", "y", "z", "z", "conflict", "report"),
        ],
    )
    assert a.pulled() == {"email": "b", "phone": "3"}


def test_is_empty_ignores_skips() -> None:
    plan = sample_plan()
    assert not plan.is_empty()
    plan.actions = [Action("skip", "smartepi", "sectors", "S1", None, 0, reason="ambiguous natural key")]
    assert plan.is_empty()
