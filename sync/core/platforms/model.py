"""The shapes of the platform catalogue (frozen dataclasses: shared, never mutated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ValueType = Literal["string", "integer", "decimal", "boolean", "date", "datetime"]
Direction = Literal["push", "pull", "both"]
ALL_DIRECTIONS: frozenset[Direction] = frozenset({"push", "pull", "both"})


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One platform field. ``name`` is what mappings and request bodies use; ``wire`` is the
    client model's attribute when it differs (SmartEPI's camelCase body vs snake_case models)."""

    name: str
    type: ValueType = "string"
    required: bool = False  # the platform refuses a create without it
    ref: str | None = None  # an entity of the same platform: compared in ERP-key space
    directions: frozenset[Direction] = ALL_DIRECTIONS  # the ``direction`` a mapping may give it
    wire: str | None = None

    @property
    def attribute(self) -> str:
        return self.wire or self.name


@dataclass(frozen=True, slots=True)
class ChildDef:
    """A nested collection of an entity (a product's sizes, certificates or stock cards)."""

    name: str
    fields: tuple[FieldDef, ...]
    key: str  # the field that identifies a child within its parent

    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


@dataclass(frozen=True, slots=True)
class EntityDef:
    name: str
    fields: tuple[FieldDef, ...]
    natural_key: tuple[str, ...] | None = None  # design §3; ``a+b`` is one composite key
    children: tuple[ChildDef, ...] = ()
    marker: str | None = None  # stamped with the ERP key on create (duplicate-accepting platforms)
    batchable: bool = False  # creates and updates go in batch requests
    writable: bool = True  # erpsync may create/update it (false: read-only reference list)

    def field(self, name: str) -> FieldDef | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    def child(self, name: str) -> ChildDef | None:
        for c in self.children:
            if c.name == name:
                return c
        return None


@dataclass(frozen=True, slots=True)
class PlatformDef:
    name: str
    entities: tuple[EntityDef, ...]
    page_size: int = 100  # records per list page (the planner's request cost model)
    accepts_duplicates: bool = False  # a resent POST creates a second record
    # Look a record up by natural key before creating it on runs that do not read the whole
    # platform (change events, fast reconciles): needed where duplicates are accepted.
    lookup_before_create: bool = False
    reference_lists: tuple[str, ...] = field(default=())  # read-only lists `erpsync inspect` shows

    def entity(self, name: str) -> EntityDef | None:
        for e in self.entities:
            if e.name == name:
                return e
        return None

    def writable(self) -> tuple[EntityDef, ...]:
        return tuple(e for e in self.entities if e.writable)

    def batch_entities(self) -> frozenset[str]:
        return frozenset(e.name for e in self.entities if e.batchable)
