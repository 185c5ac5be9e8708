"""The SmartEPI resources the sandbox serves, and validation of request bodies.

Field sets follow contract §5.5. Validation is strict so client bugs surface in the
sandbox instead of on a real account: an unknown or read-only field, a wrong type or
a blank required string is a 400 naming the field (the contract lists "invalid field"
under 400). ``null`` on an optional field clears it; omitting a field leaves it alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sync.sandbox.smartepi.problems import ApiError, bad_request

Kind = Literal["str", "bool", "int", "date", "datetime", "ids"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind = "str"
    required: bool = False
    ref: str | None = None  # referenced resource, e.g. "cost-centers"
    unique: bool = False  # case-insensitive, trimmed uniqueness among live records
    default: Any = None


@dataclass(frozen=True, slots=True)
class EntitySpec:
    resource: str  # path segment, e.g. "employees"
    prefix: str  # id prefix, e.g. "emp_"
    fields: tuple[FieldSpec, ...]
    writable: bool = True
    transaction: bool = False  # list-only: GET by id is 405
    relationship_filters: tuple[str, ...] = ()
    prefix_filters: tuple[str, ...] = ("name",)  # case-insensitive begins-with, ascending order
    exact_filters: tuple[str, ...] = ()  # served from a unique index
    children: dict[str, tuple[FieldSpec, ...]] = field(default_factory=dict)
    child_prefix: dict[str, str] = field(default_factory=dict)
    event_type: str | None = None  # webhook event for transactions
    get_by_id: bool = True

    def field(self, name: str) -> FieldSpec | None:
        return _FIELD_INDEX[self.resource].get(name)

    @property
    def unique_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.unique)

    @property
    def ref_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.ref is not None)


_NAME = FieldSpec("name", required=True, unique=True)
_TX_COMMON = (
    FieldSpec("employeeId", ref="employees"),
    FieldSpec("productId", ref="products"),
    FieldSpec("sizeId"),
    FieldSpec("quantity", "int", default=1),
    FieldSpec("costCenterId", ref="cost-centers"),
    FieldSpec("sectorId", ref="sectors"),
    FieldSpec("deviceId"),
)
_TX_FILTERS = ("employeeId", "productId", "costCenterId", "sectorId")

SPECS: dict[str, EntitySpec] = {
    spec.resource: spec
    for spec in (
        EntitySpec("sectors", "sec_", (_NAME, FieldSpec("code"))),
        EntitySpec("cost-centers", "cc_", (_NAME, FieldSpec("code")), prefix_filters=("name", "code")),
        EntitySpec("job-roles", "jr_", (_NAME, FieldSpec("description"))),
        EntitySpec("groups", "grp_", (_NAME, FieldSpec("description"))),
        EntitySpec("access-groups", "ag_", (FieldSpec("name", required=True),), writable=False),
        EntitySpec(
            "employees",
            "emp_",
            (
                FieldSpec("name", required=True),
                FieldSpec("identification", unique=True),
                FieldSpec("email", unique=True),
                FieldSpec("sectorId", ref="sectors"),
                FieldSpec("costCenterId", ref="cost-centers"),
                FieldSpec("costCenter2Id", ref="cost-centers"),
                FieldSpec("jobRoleId", ref="job-roles"),
                FieldSpec("groupId", ref="groups"),
                FieldSpec("accessGroupIds", "ids", ref="access-groups", default=()),
                FieldSpec("active", "bool", default=True),
                FieldSpec("admissionDate", "date"),
            ),
            relationship_filters=("sectorId", "costCenterId", "jobRoleId", "groupId"),
            exact_filters=("identification",),
        ),
        EntitySpec(
            "products",
            "prd_",
            (
                _NAME,
                FieldSpec("code"),
                FieldSpec("description"),
                FieldSpec("unit"),
                FieldSpec("active", "bool", default=True),
            ),
            children={
                "sizes": (FieldSpec("name", required=True),),
                "certificates": (FieldSpec("number", required=True), FieldSpec("expiresAt", "date")),
            },
            child_prefix={"sizes": "sz_", "certificates": "cert_"},
        ),
        EntitySpec(
            "withdrawals",
            "w-",
            (*_TX_COMMON, FieldSpec("withdrawalStatus", default="SUCCESS")),
            writable=False,
            transaction=True,
            relationship_filters=_TX_FILTERS,
            prefix_filters=(),
            event_type="withdrawal.created",
        ),
        EntitySpec(
            "returns",
            "r-",
            (*_TX_COMMON, FieldSpec("returnStatus", default="SUCCESS")),
            writable=False,
            transaction=True,
            relationship_filters=_TX_FILTERS,
            prefix_filters=(),
            event_type="return.created",
        ),
        EntitySpec(
            "exchanges",
            "x-",
            (
                *_TX_COMMON,
                FieldSpec("returnedProductId", ref="products"),
                FieldSpec("exchangeStatus", default="SUCCESS"),
            ),
            writable=False,
            transaction=True,
            relationship_filters=_TX_FILTERS,
            prefix_filters=(),
            event_type="exchange.created",
        ),
        EntitySpec(
            "training-records",
            "tr-",
            (
                FieldSpec("employeeId", ref="employees"),
                FieldSpec("title", required=True),
                FieldSpec("completedAt", "datetime"),
                FieldSpec("expiresAt", "datetime"),
            ),
            writable=False,
            transaction=True,
            relationship_filters=("employeeId",),
            prefix_filters=(),
            event_type="training_record.created",
        ),
    )
}
_FIELD_INDEX: dict[str, dict[str, FieldSpec]] = {
    res: {f.name: f for f in spec.fields} for res, spec in SPECS.items()
}
READ_ONLY_FIELDS = frozenset({"id", "createdAt", "updatedAt"})


def normalize_key(value: str) -> str:
    """The uniqueness/search form of names, codes, identifications and emails."""
    return value.strip().casefold()


def parse_datetime(value: str, where: str) -> dt.datetime:
    """ISO-8601; a naive value is taken as UTC (the contract says UTC throughout)."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_request(f"{where}: not an ISO-8601 date-time") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _check_value(spec: FieldSpec, value: Any, where: str) -> Any:
    if value is None:
        if spec.required:
            raise bad_request(f"{where}: required, cannot be null")
        return [] if spec.kind == "ids" else None
    kind = spec.kind
    if kind == "str" or kind == "date" or kind == "datetime":
        if not isinstance(value, str):
            raise bad_request(f"{where}: must be a string")
        if spec.required and not value.strip():
            raise bad_request(f"{where}: must not be blank")
        if kind == "date":
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise bad_request(f"{where}: not an ISO date (YYYY-MM-DD)") from None
            if len(value) != 10:
                raise bad_request(f"{where}: not an ISO date (YYYY-MM-DD)")
        elif kind == "datetime":
            parse_datetime(value, where)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad_request(f"{where}: must be a boolean")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"{where}: must be an integer")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{where}: must be a list of id strings")
    return list(value)


def validate_fields(
    spec: EntitySpec, body: dict[str, Any], *, creating: bool, allow: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Check a create/update body; returns the field values to apply (children excluded)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in allow or key in spec.children:
            continue
        fs = spec.field(key)
        if fs is None:
            what = "read-only field" if key in READ_ONLY_FIELDS else "unknown field"
            raise bad_request(f"{key}: {what}")
        out[key] = _check_value(fs, value, key)
    if creating:
        for fs in spec.fields:
            if fs.name not in out:
                if fs.required:
                    raise bad_request(f"{fs.name}: required")
                out[fs.name] = list(fs.default) if fs.kind == "ids" else fs.default
    return out


def validate_children(
    spec: EntitySpec, body: dict[str, Any]
) -> dict[str, list[tuple[str | None, dict[str, Any]]]]:
    """Nested arrays (product sizes/certificates): ``[(id or None, fields), ...]`` per key."""
    out: dict[str, list[tuple[str | None, dict[str, Any]]]] = {}
    for key, fields in spec.children.items():
        if key not in body:
            continue
        items = body[key]
        if not isinstance(items, list):
            raise bad_request(f"{key}: must be a list of objects")
        parsed: list[tuple[str | None, dict[str, Any]]] = []
        by_name = {f.name: f for f in fields}
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise bad_request(f"{where}: must be an object")
            child_id = item.get("id")
            if child_id is not None and not isinstance(child_id, str):
                raise bad_request(f"{where}.id: must be a string")
            values: dict[str, Any] = {}
            for name, value in item.items():
                if name == "id":
                    continue
                fs = by_name.get(name)
                if fs is None:
                    raise bad_request(f"{where}.{name}: unknown field")
                values[name] = _check_value(fs, value, f"{where}.{name}")
            if child_id is None:
                for fs in fields:
                    if fs.name not in values:
                        if fs.required:
                            raise bad_request(f"{where}.{fs.name}: required")
                        values[fs.name] = fs.default
            parsed.append((child_id, values))
        out[key] = parsed
    return out


def parse_version(raw: Any, where: str) -> int:
    """A version token: an integer (the ETag value without quotes)."""
    if isinstance(raw, bool):
        raise bad_request(f"{where}: must be an integer version")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith('"') and text.endswith('"') and len(text) >= 2:
            text = text[1:-1]
        if text.isdigit():
            return int(text)
    raise bad_request(f"{where}: must be an integer version")


__all__ = [
    "READ_ONLY_FIELDS",
    "SPECS",
    "ApiError",
    "EntitySpec",
    "FieldSpec",
    "normalize_key",
    "parse_datetime",
    "parse_version",
    "validate_children",
    "validate_fields",
]
