"""Table tests for the planner: three-way cases, adopt, deletes, safety valve, fast mode."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from sync.core.plan import Action
from sync.core.planner import EntityInputs, estimate_requests, make_plan, plan_entity
from sync.core.records import Base, Desired, EntityPolicy, FieldPolicy, QuarantineEntry, Remote
from sync.errors import PlanError, SafetyValveTripped

POLICY = EntityPolicy(
    platform="smartepi",
    entity="employees",
    level=2,
    natural_key=("identification", "email"),
    fields={
        "name": FieldPolicy("name"),
        "email": FieldPolicy("email", direction="both"),
        "identification": FieldPolicy("identification", sensitive=True),
        "phone": FieldPolicy("phone", direction="both", conflict="remote_wins"),
        "notes": FieldPolicy("notes", conflict="report"),
        "badge": FieldPolicy("badge", direction="pull"),
        "active": FieldPolicy("active"),
        "sectorId": FieldPolicy("sectorId", ref="sectors"),
    },
    delete="deactivate",
    deactivate_field="active",
)

BASE_FIELDS: dict[str, Any] = {
    "name": "Ana",
    "email": "ana@x.io",
    "identification": "111",
    "phone": "1",
    "notes": "n",
    "badge": "B1",
    "active": True,
    "sectorId": "S1",
}


def desired(key: str = "E1", policy: EntityPolicy = POLICY, **changes: Any) -> Desired:
    fields = {**BASE_FIELDS, **changes}
    return Desired(policy.platform, policy.entity, key, {k: v for k, v in fields.items() if v is not None})


def base(key: str = "E1", rid: str = "r1", **changes: Any) -> Base:
    fields = {**BASE_FIELDS, **changes}
    return Base(key, rid, {k: v for k, v in fields.items() if v is not None}, version="v1")


def remote(rid: str = "r1", policy: EntityPolicy = POLICY, version: str = "v2", **changes: Any) -> Remote:
    fields = {**BASE_FIELDS, **changes}
    return Remote(
        policy.platform,
        policy.entity,
        rid,
        {k: v for k, v in fields.items() if v is not None},
        version=version,
    )


def one(
    d: Desired | None, b: Base | None, r: Remote | None, *, full: bool = True, policy: EntityPolicy = POLICY
) -> list[Action]:
    bases = {b.erp_key: b} if b else {}
    remotes = ({r.remote_id: r} if r else {}) if full else None
    return plan_entity(policy, [d] if d else [], bases, remotes, source_complete=False).actions


def single(*args: Any, **kw: Any) -> Action:
    actions = one(*args, **kw)
    assert len(actions) == 1, actions
    return actions[0]


# --- three-way, per field -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "erp", "base_v", "remote_v", "kind", "change_kind", "resolution", "payload", "new"),
    [
        # only the ERP changed → push
        ("name", "Bea", "Ana", "Ana", "update", "push", None, {"name": "Bea"}, "Bea"),
        # only the remote changed, field flows back → pull
        ("email", "ana@x.io", "ana@x.io", "a2@x.io", "pull", "pull", None, {}, "a2@x.io"),
        # only the remote changed, push-only field → drift: overwrite, reported
        ("name", "Ana", "Ana", "Zed", "update", "drift", None, {"name": "Ana"}, "Ana"),
        # both changed, default erp_wins
        (
            "email",
            "e@x.io",
            "ana@x.io",
            "r@x.io",
            "update",
            "conflict",
            "erp_wins",
            {"email": "e@x.io"},
            "e@x.io",
        ),
        # both changed, remote_wins on a field that flows back → pull
        ("phone", "2", "1", "3", "pull", "conflict", "remote_wins", {}, "3"),
        # both changed, report → nothing written, action blocks as conflict
        ("notes", "e", "n", "r", "conflict", "conflict", "report", {}, "r"),
        # pull-only field differs → pull, never pushed, whatever the base says
        ("badge", "B9", "B1", "B1", "pull", "pull", None, {}, "B1"),
        ("badge", "B1", "B1", "B7", "pull", "pull", None, {}, "B7"),
    ],
)
def test_three_way_field_cases(
    field: str,
    erp: Any,
    base_v: Any,
    remote_v: Any,
    kind: str,
    change_kind: str,
    resolution: str | None,
    payload: dict[str, Any],
    new: Any,
) -> None:
    a = single(desired(**{field: erp}), base(**{field: base_v}), remote(**{field: remote_v}))
    assert a.kind == kind
    assert a.remote_id == "r1"
    assert a.base_version == "v2"
    assert [(c.field, c.kind, c.resolution, c.new) for c in a.changes] == [
        (field, change_kind, resolution, new)
    ]
    assert a.payload == payload
    c = a.changes[0]
    assert (c.erp, c.base, c.remote) == (erp, base_v, remote_v)


def test_equal_everywhere_gives_no_action() -> None:
    assert one(desired(), base(), remote()) == []


def test_both_changed_to_the_same_value_is_no_change() -> None:
    assert one(desired(name="Bea"), base(), remote(name="Bea")) == []


def test_report_conflict_blocks_but_other_changes_still_apply() -> None:
    a = single(desired(notes="e", name="Bea"), base(), remote(notes="r", email="new@x.io"))
    assert a.kind == "conflict"
    assert a.payload == {"name": "Bea"}
    assert a.pulled() == {"email": "new@x.io"}
    assert "notes" in a.reason
    # the base after apply keeps the conflicting field at its old value: it is reported again
    assert a.agreed["notes"] == "n"
    assert a.agreed["name"] == "Bea"
    assert a.agreed["email"] == "new@x.io"


def test_missing_and_none_are_the_same_value() -> None:
    d = desired(phone=None)
    b = base(phone=None)
    r = remote(phone=None)
    assert "phone" not in r.fields
    assert one(d, b, r) == []


def test_not_writable_entity_never_pulls() -> None:
    policy = _replace(POLICY, writable=False)
    # a flows-back field changed remotely: the ERP cannot take it, so the ERP value is restored (drift)
    a = single(desired(policy=policy), base(), remote(policy=policy, email="r@x.io"), policy=policy)
    assert [(c.field, c.kind) for c in a.changes] == [("email", "drift")]
    assert a.payload == {"email": "ana@x.io"}
    # a pull-only field difference is left alone
    assert one(desired(policy=policy), base(), remote(policy=policy, badge="B7"), policy=policy) == []


def _replace(policy: EntityPolicy, **kw: Any) -> EntityPolicy:
    import dataclasses

    return dataclasses.replace(policy, **kw)


# --- children ----------------------------------------------------------------------

PRODUCTS = EntityPolicy(
    platform="smartepi",
    entity="products",
    level=1,
    natural_key=("name",),
    fields={"name": FieldPolicy("name"), "sizes": FieldPolicy("sizes")},
    children=("sizes",),
)


def test_children_compare_as_a_whole_and_ignore_order() -> None:
    s_m, s_l = {"name": "M"}, {"name": "L"}
    d = Desired("smartepi", "products", "P1", {"name": "Glove"}, {"sizes": [s_m, s_l]})
    b = Base("P1", "r1", {"name": "Glove"}, {"sizes": [s_l, s_m]})
    r = Remote("smartepi", "products", "r1", {"name": "Glove"}, {"sizes": [s_m, s_l]})
    assert one(d, b, r, policy=PRODUCTS) == []
    d2 = Desired("smartepi", "products", "P1", {"name": "Glove"}, {"sizes": [s_m, s_l, {"name": "XL"}]})
    a = single(d2, b, r, policy=PRODUCTS)
    assert a.kind == "update"
    assert a.payload == {}
    assert [c.field for c in a.changes] == ["sizes"]
    assert sorted(x["name"] for x in a.children["sizes"]) == ["L", "M", "XL"]
    assert a.agreed_children["sizes"] == a.children["sizes"]


def test_missing_children_equal_empty_list() -> None:
    d = Desired("smartepi", "products", "P1", {"name": "Glove"})
    b = Base("P1", "r1", {"name": "Glove"}, {"sizes": []})
    r = Remote("smartepi", "products", "r1", {"name": "Glove"}, {"sizes": []})
    assert one(d, b, r, policy=PRODUCTS) == []


# --- fast mode ---------------------------------------------------------------------


def test_fast_mode_pushes_erp_changes_only() -> None:
    a = single(desired(name="Bea", badge="B9"), base(), None, full=False)
    assert a.kind == "update"
    assert a.payload == {"name": "Bea"}  # the pull-only badge is never pushed
    assert [c.field for c in a.changes] == ["name"]
    assert a.changes[0].remote is None
    assert a.agreed["badge"] == "B1"  # unverified remote-owned value keeps the base
    assert a.base_version == "v1"


def test_fast_mode_does_not_see_drift_or_deleted_remotes() -> None:
    assert one(desired(), base(), None, full=False) == []


def test_fast_mode_unbound_row_is_created() -> None:
    a = single(desired(), None, None, full=False)
    assert a.kind == "create"
    assert "badge" not in a.payload  # pull fields are never part of a create
    assert a.payload["name"] == "Ana"
    assert a.natural_key == ("identification", "111")


# --- recreate, adopt, ambiguous ----------------------------------------------------


def test_bound_remote_missing_in_full_mode_is_created_again() -> None:
    a = single(desired(), base(rid="gone1"), None)
    assert a.kind == "create"
    assert "gone1" in a.reason and "deleted" in a.reason
    assert a.remote_id == "gone1"  # the gone record: apply drops its stale binding first


def test_unbound_remote_with_same_natural_key_is_adopted_with_diff() -> None:
    r = remote(rid="x9", identification="111", name="ANA SILVA", badge="B5")
    a = single(desired(), None, r)
    assert a.kind == "adopt"
    assert a.remote_id == "x9"
    assert a.payload == {"name": "Ana"}
    assert a.pulled() == {"badge": "B5"}
    assert "x9" in a.reason


def test_adopt_matches_second_key_when_first_is_absent() -> None:
    r = remote(rid="x9", identification=None, email=" ANA@X.IO")
    a = single(desired(identification=None), None, r)
    assert (a.kind, a.remote_id) == ("adopt", "x9")


def test_bound_remotes_are_not_adopted_again() -> None:
    policy = POLICY
    d_new = desired("E2")  # same natural key as E1, whose remote r1 is bound
    ep = plan_entity(policy, [desired("E1"), d_new], {"E1": base()}, {"r1": remote()}, source_complete=True)
    assert [(a.kind, a.erp_key) for a in ep.actions] == [("create", "E2")]


def test_several_matching_remotes_are_skipped_never_guessed() -> None:
    remotes = {"x1": remote("x1"), "x2": remote("x2", email="other@x.io")}
    ep = plan_entity(POLICY, [desired()], {}, remotes, source_complete=True)
    (a,) = ep.actions
    assert a.kind == "skip"
    assert "ambiguous natural key" in a.reason
    assert "x1" in a.reason and "x2" in a.reason


def test_two_erp_rows_claiming_one_remote_are_both_skipped() -> None:
    ep = plan_entity(POLICY, [desired("E1"), desired("E2")], {}, {"x1": remote("x1")}, source_complete=True)
    assert [(a.kind, a.erp_key) for a in ep.actions] == [("skip", "E1"), ("skip", "E2")]
    assert all("ambiguous natural key" in a.reason and "x1" in a.reason for a in ep.actions)


def test_two_new_erp_rows_with_one_natural_key_are_not_created_twice() -> None:
    ep = plan_entity(
        POLICY, [desired("E1"), desired("E2", identification=" 111 ")], {}, None, source_complete=True
    )
    assert [(a.kind, a.erp_key) for a in ep.actions] == [("skip", "E1"), ("skip", "E2")]
    assert "E2" in ep.actions[0].reason


def test_duplicate_erp_key_is_refused() -> None:
    with pytest.raises(PlanError, match="duplicate ERP key 'E1'"):
        plan_entity(POLICY, [desired(), desired()], {}, None, source_complete=True)


# --- deletes -----------------------------------------------------------------------


def _gone_plan(
    policy: EntityPolicy, *, full: bool, complete: bool = True, held: tuple[str, ...] = ()
) -> list[Action]:
    bases = {f"E{i}": base(f"E{i}", f"r{i}") for i in range(10)}
    remotes = {f"r{i}": remote(f"r{i}") for i in range(10)} if full else None
    rows = [desired(f"E{i}") for i in range(1, 10)]
    return plan_entity(policy, rows, bases, remotes, source_complete=complete, held=held).actions


@pytest.mark.parametrize("full", [True, False])
def test_gone_row_is_deactivated(full: bool) -> None:
    (a,) = _gone_plan(POLICY, full=full)
    assert (a.kind, a.erp_key, a.remote_id) == ("deactivate", "E0", "r0")
    assert a.payload == {"active": False}
    assert a.agreed["active"] is False


@pytest.mark.parametrize("full", [True, False])
def test_gone_row_is_deleted(full: bool) -> None:
    (a,) = _gone_plan(_replace(POLICY, delete="delete"), full=full)
    assert (a.kind, a.erp_key, a.remote_id) == ("delete", "E0", "r0")


def test_gone_row_is_ignored_by_policy() -> None:
    assert _gone_plan(_replace(POLICY, delete="ignore"), full=True) == []


def test_no_deletes_inferred_from_an_incomplete_read() -> None:
    assert _gone_plan(_replace(POLICY, delete="delete"), full=True, complete=False) == []


def test_quarantined_rows_are_not_gone() -> None:
    assert _gone_plan(_replace(POLICY, delete="delete"), full=True, held=("E0",)) == []


def test_already_inactive_remote_is_only_recorded() -> None:
    bases = {"E0": base("E0", "r0")}
    ep = plan_entity(POLICY, [], bases, {"r0": remote("r0", active=False)}, source_complete=True)
    (a,) = ep.actions
    assert (a.kind, a.local_only, a.payload, a.agreed["active"]) == ("deactivate", True, {}, False)
    assert ep.removals == 0
    assert estimate_requests([ep], batch_size=100) == {"smartepi": 1}  # the list page only
    inactive = {"E0": base("E0", "r0", active=False)}
    assert (
        plan_entity(POLICY, [], inactive, {"r0": remote("r0", active=False)}, source_complete=True).actions
        == []
    )
    assert plan_entity(POLICY, [], inactive, None, source_complete=True).actions == []


def test_gone_on_both_sides_drops_the_binding_without_a_request() -> None:
    ep = plan_entity(
        _replace(POLICY, delete="delete"), [], {"E0": base("E0", "r0")}, {}, source_complete=True
    )
    (a,) = ep.actions
    assert (a.kind, a.remote_id, a.local_only) == ("delete", "r0", True)
    assert "drop the binding" in a.reason
    assert estimate_requests([ep], batch_size=100) == {"smartepi": 1}


def test_deactivate_without_field_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="deactivate_field"):
        plan_entity(_replace(POLICY, deactivate_field=None), [], {}, None, source_complete=True)


# --- make_plan: safety valve, ordering, estimates, quarantine ----------------------


def _inputs(n_bound: int, n_desired: int, *, complete: bool = True) -> dict[tuple[str, str], EntityInputs]:
    bases = {f"E{i}": base(f"E{i}", f"r{i}") for i in range(n_bound)}
    rows = [desired(f"E{i}") for i in range(n_desired)]
    return {("smartepi", "employees"): EntityInputs(rows, bases, None, source_complete=complete)}


def test_safety_valve_trips_over_share_and_names_entity_and_counts() -> None:
    with pytest.raises(SafetyValveTripped, match=r"smartepi/employees: 3 of 10 bound records"):
        make_plan("t1", [POLICY], _inputs(10, 7), mode="fast")
    plan = make_plan("t1", [POLICY], _inputs(10, 7), mode="fast", force=True)
    assert plan.counts == {("smartepi", "employees", "deactivate"): 3}


def test_safety_valve_allows_share_at_threshold() -> None:
    plan = make_plan("t1", [POLICY], _inputs(10, 8), mode="fast")
    assert plan.counts == {("smartepi", "employees", "deactivate"): 2}


def test_safety_valve_trips_on_an_empty_complete_source() -> None:
    policy = _replace(POLICY, delete="ignore")
    with pytest.raises(SafetyValveTripped, match="returned 0 rows while 3 records are bound"):
        make_plan("t1", [policy], _inputs(3, 0), mode="fast")
    # an incremental (incomplete) read with no rows is normal
    assert make_plan("t1", [policy], _inputs(3, 0, complete=False), mode="fast").actions == []


def test_full_mode_requires_remotes() -> None:
    with pytest.raises(PlanError, match="needs the remote records"):
        make_plan("t1", [POLICY], _inputs(1, 1), mode="full")


SECTORS = EntityPolicy("smartepi", "sectors", 0, ("name",), {"name": FieldPolicy("name")})
SK_PRODUCTS = EntityPolicy(
    "smartkasa", "products", 1, ("number",), {"number": FieldPolicy("number"), "title": FieldPolicy("title")}
)


def test_make_plan_orders_by_level_and_collects_quarantine_and_estimates() -> None:
    q = QuarantineEntry("smartepi", "employees", "E5", "email", "format", "not an email", value="x")
    sk_rows = [
        Desired("smartkasa", "products", f"K{i}", {"number": f"{i}", "title": "t"}) for i in range(250)
    ]
    inputs = {
        ("smartepi", "employees"): EntityInputs([desired("E2", identification="2")], {}, {}, quarantine=[q]),
        ("smartepi", "sectors"): EntityInputs(
            [Desired("smartepi", "sectors", "S1", {"name": "Ops"})], {}, {}
        ),
        ("smartkasa", "products"): EntityInputs(sk_rows, {}, {}),
    }
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    plan = make_plan("t1", [POLICY, SECTORS, SK_PRODUCTS], inputs, mode="full", batch_size=100, now=when)
    assert (plan.actions[0].entity, plan.actions[-1].entity) == ("sectors", "employees")
    assert [a.level for a in plan.actions] == [0] + [1] * 250 + [2]
    assert plan.quarantine == [q]
    assert plan.created_at == when
    assert plan.counts[("smartkasa", "products", "create")] == 250
    # smartepi: 2 list pages + 2 creates; smartkasa: 1 list page + ceil(250/100) batches
    assert plan.request_estimate == {"smartepi": 4, "smartkasa": 4}
    assert plan.sensitive == {"smartepi/employees": ["identification"]}
    assert set(plan.fingerprints) == {
        f"{p}/{e}/{side}"
        for p, e in [("smartepi", "employees"), ("smartepi", "sectors"), ("smartkasa", "products")]
        for side in ("desired", "base", "remote")
    }


def test_fast_mode_estimate_reads_nothing() -> None:
    bases = {f"E{i}": base(f"E{i}", f"r{i}") for i in range(5)}
    rows = [desired(f"E{i}", name="New" if i == 0 else "Ana") for i in range(5)]
    ep = plan_entity(POLICY, rows, bases, None, source_complete=True)
    assert estimate_requests([ep], batch_size=100) == {"smartepi": 1}
    ep_full = plan_entity(
        POLICY, rows, bases, {f"r{i}": remote(f"r{i}") for i in range(5)}, source_complete=True
    )
    assert estimate_requests([ep_full], batch_size=100) == {"smartepi": 2}


def test_smartkasa_updates_and_card_children_count_one_each() -> None:
    cards = EntityPolicy(
        "smartkasa",
        "products",
        1,
        ("number",),
        {"number": FieldPolicy("number"), "price": FieldPolicy("price")},
        children=("cards",),
    )
    d = Desired(
        "smartkasa",
        "products",
        "K1",
        {"number": "1", "price": Decimal("2")},
        {"cards": [{"shop_id": 1, "count": 5}]},
    )
    b = Base("K1", "u1", {"number": "1", "price": Decimal(1)}, {"cards": [{"shop_id": 1, "count": 4}]})
    ep = plan_entity(cards, [d], {"K1": b}, None, source_complete=True)
    # one PATCH for the price + one PUT for the changed card
    assert estimate_requests([ep], batch_size=100) == {"smartkasa": 2}
    create = plan_entity(cards, [d], {}, None, source_complete=True)
    assert estimate_requests([create], batch_size=100) == {"smartkasa": 2}  # batch create + one card


def test_pull_only_action_costs_no_platform_request() -> None:
    ep = plan_entity(
        POLICY, [desired()], {"E1": base()}, {"r1": remote(email="n@x.io")}, source_complete=True
    )
    assert [a.kind for a in ep.actions] == ["pull"]
    assert estimate_requests([ep], batch_size=100) == {"smartepi": 1}  # the list page only
