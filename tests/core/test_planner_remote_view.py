"""Remote view: platform records become comparable in ERP-key space."""

from __future__ import annotations

from decimal import Decimal

from sync.core.normalize import parse_decimal
from sync.core.planner import plan_entity
from sync.core.records import UNBOUND_REF_PREFIX, Base, Desired, EntityPolicy, FieldPolicy
from sync.core.remote_view import to_remote

POLICY = EntityPolicy(
    platform="smartepi",
    entity="employees",
    level=2,
    natural_key=("identification",),
    fields={
        "name": FieldPolicy("name"),
        "sectorId": FieldPolicy("sectorId", ref="sectors"),
        "groupIds": FieldPolicy("groupIds", ref="groups"),
        "salary": FieldPolicy("salary"),
    },
)
PRODUCTS = EntityPolicy(
    "smartepi",
    "products",
    1,
    ("name",),
    {"name": FieldPolicy("name"), "sizes": FieldPolicy("sizes")},
    children=("sizes",),
)
REVERSE = {"sectors": {"s-1": "SEC-A"}, "groups": {"g-1": "GRP-1", "7": "GRP-7"}}


def test_references_become_erp_keys_and_unbound_ids_are_marked() -> None:
    raw = {"name": " Ana ", "sectorId": "s-1", "groupIds": ["g-1", 7, "g-9"], "salary": "100.0", "extra": 1}
    r = to_remote(POLICY, "r1", raw, REVERSE, version="etag", parsers={"salary": parse_decimal})
    assert r.fields == {
        "name": "Ana",
        "sectorId": "SEC-A",
        "groupIds": ["GRP-1", "GRP-7", UNBOUND_REF_PREFIX + "g-9"],
        "salary": Decimal(100),
    }
    assert (r.remote_id, r.version, r.platform, r.entity) == ("r1", "etag", "smartepi", "employees")


def test_unbound_reference_differs_from_every_erp_key_so_the_erp_value_is_pushed() -> None:
    r = to_remote(POLICY, "r1", {"name": "Ana", "sectorId": "s-404"}, REVERSE)
    assert r.fields["sectorId"] == UNBOUND_REF_PREFIX + "s-404"
    d = Desired("smartepi", "employees", "E1", {"name": "Ana", "sectorId": "SEC-A"})
    b = Base("E1", "r1", {"name": "Ana", "sectorId": "SEC-A"})
    (a,) = plan_entity(POLICY, [d], {"E1": b}, {"r1": r}, source_complete=True).actions
    assert a.payload == {"sectorId": "SEC-A"}
    assert a.changes[0].kind == "drift"


def test_empty_and_missing_references_are_none() -> None:
    r = to_remote(POLICY, "r1", {"name": "Ana", "sectorId": "", "groupIds": None}, REVERSE)
    assert r.fields == {"name": "Ana"}


def test_children_drop_server_keys_and_compare_order_insensitively() -> None:
    raw = {"name": "Glove", "sizes": [{"id": "z2", "name": "L"}, {"id": "z1", "name": "M", "createdAt": "x"}]}
    r = to_remote(PRODUCTS, "p1", raw, {})
    assert r.children == {"sizes": [{"name": "L"}, {"name": "M"}]}
    d = Desired("smartepi", "products", "P1", {"name": "Glove"}, {"sizes": [{"name": "M"}, {"name": "L"}]})
    b = Base("P1", "p1", {"name": "Glove"}, {"sizes": [{"name": "M"}, {"name": "L"}]})
    assert plan_entity(PRODUCTS, [d], {"P1": b}, {"p1": r}, source_complete=True).actions == []


def test_child_keys_select_what_to_keep() -> None:
    raw = {"name": "Glove", "sizes": [{"id": "z1", "name": "M", "code": " 9 "}]}
    r = to_remote(PRODUCTS, "p1", raw, {}, child_keys={"sizes": ("id", "code")})
    assert r.children == {"sizes": [{"code": "9", "id": "z1"}]}
