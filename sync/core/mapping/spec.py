"""The mapping file format, as pydantic models (validated once at load, never per row).

A file maps one platform: ``platform``, optional named ``lookups`` tables and
``entities``. Each entity names its ERP source, its ERP key column, and per platform
field how the value is produced (see docs/mappings.md). Cross-entity checks (references,
lookup names, dependency cycles) live in ``loader.py`` because they span files.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sync.core.platforms import tables as _tables
from sync.core.platforms.model import ValueType
from sync.core.records import ConflictPolicy, DeletePolicy, Direction, Platform

# A field outside the catalogue is almost always a typo, so the loader rejects it.
# What mappings may name on each platform: derived from the platform catalogue
# (sync/core/platforms), the one place platform knowledge lives. A ``constant`` takes its
# field's type from FIELD_TYPES (loader), so ``active: {constant: true}`` is the boolean
# ``True`` the platform returns, not the text "true". Reference fields (KNOWN_REFS) are
# compared in ERP-key space, so their target must be mapped. Natural keys follow design §3
# (``a+b`` is a composite key). The marker is a field erpsync stamps with the ERP key on
# every create where the platform accepts duplicates, so a create whose answer was lost can
# be found again even without a natural-key value; a mapping may choose another field
# (``marker: FIELD``) or turn it off (``marker: false``), and then such a create is held
# for a person, never resent.
KNOWN_FIELDS: Mapping[Platform, Mapping[str, frozenset[str]]] = MappingProxyType(
    cast(dict[Platform, Mapping[str, frozenset[str]]], _tables.known_fields())
)
KNOWN_CHILDREN: Mapping[tuple[Platform, str], Mapping[str, frozenset[str]]] = MappingProxyType(
    cast(dict[tuple[Platform, str], Mapping[str, frozenset[str]]], _tables.known_children())
)
FIELD_TYPES: Mapping[tuple[Platform, str], Mapping[str, ValueType]] = MappingProxyType(
    cast(dict[tuple[Platform, str], Mapping[str, ValueType]], _tables.field_types())
)
KNOWN_REFS: Mapping[tuple[Platform, str], Mapping[str, str]] = MappingProxyType(
    cast(dict[tuple[Platform, str], Mapping[str, str]], _tables.known_refs())
)
DEFAULT_NATURAL_KEYS: Mapping[tuple[Platform, str], tuple[str, ...]] = MappingProxyType(
    cast(dict[tuple[Platform, str], tuple[str, ...]], _tables.natural_keys())
)
DEFAULT_MARKERS: Mapping[tuple[Platform, str], str] = MappingProxyType(
    cast(dict[tuple[Platform, str], str], _tables.markers())
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class FilterSpec(_Strict):
    """One row condition; all conditions of an entity must hold (rows failing one are skipped).

    Values compare as canonical text: numbers without trailing zeros, booleans as ``1``/``0``.
    """

    field: str
    equals: Any = None
    not_equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    not_null: bool | None = None
    is_null: bool | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> FilterSpec:
        ops = self.model_fields_set - {"field"}
        if len(ops) != 1:
            raise ValueError("give exactly one of equals, not_equals, in, not_in, not_null, is_null")
        if ops & {"not_null", "is_null"} and (self.not_null is False or self.is_null is False):
            raise ValueError("not_null/is_null only accept true")
        return self


def template_names(template: str) -> list[str]:
    """Placeholder names in a ``str.format`` template (``"{a} {b}"`` → ``["a", "b"]``)."""
    names = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or not name.isidentifier() or spec or conv:
            raise ValueError(f"template placeholders must be plain column names, got {{{name}}}")
        names.append(name)
    return names


class FieldSpec(_Strict):
    """How one platform field is produced from an ERP row (and, for pull/both, reversed)."""

    from_: str | None = Field(default=None, alias="from")
    template: str | None = None
    concat: list[str] | None = None
    sep: str = " "
    constant: Any = None
    spaces: Literal["trim", "collapse"] = "trim"
    case: Literal["lower", "upper", "title"] | None = None
    lookup: str | dict[str, Any] | None = None
    lookup_default: Any = None
    default: Any = None
    type: ValueType = "string"
    precision: int | None = Field(default=None, ge=0, le=12)
    date_format: str | None = None
    ref: str | None = None
    direction: Direction = "push"
    conflict: ConflictPolicy = "erp_wins"
    sensitive: bool = False
    required: bool = False
    max_length: int | None = Field(default=None, ge=1)
    min_length: int | None = Field(default=None, ge=1)
    min: Decimal | None = None
    max: Decimal | None = None
    format: Literal["email"] | None = None
    pattern: str | None = None

    @field_validator("lookup", mode="before")
    @classmethod
    def _lookup_keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_key_text(k): v for k, v in value.items()}
        return value

    @field_validator("template")
    @classmethod
    def _template_ok(cls, value: str | None) -> str | None:
        if value is not None:
            template_names(value)
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_ok(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        set_ = self.model_fields_set
        sources = [n for n in ("from_", "template", "concat", "constant") if n in set_]
        if len(sources) > 1:
            names = ", ".join("from" if n == "from_" else n for n in sources)
            raise ValueError(f"give at most one of from, template, concat, constant (got {names})")
        if self.precision is not None and self.type != "decimal":
            raise ValueError("precision needs type: decimal")
        if self.date_format is not None and self.type not in ("date", "datetime"):
            raise ValueError("date_format needs type: date or datetime")
        text_only = [n for n in ("case", "max_length", "min_length", "format", "pattern") if getattr(self, n)]
        if text_only and self.type != "string":
            raise ValueError(f"{', '.join(text_only)} only apply to type: string")
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "decimal"):
            raise ValueError("min/max only apply to type: integer or decimal")
        if self.ref is not None and (self.type != "string" or self.lookup is not None):
            raise ValueError("a reference holds the ERP key of the target: no type or lookup")
        if "lookup_default" in set_ and self.lookup is None:
            raise ValueError("lookup_default needs lookup")
        if self.direction != "push":
            if sources and sources != ["from_"]:
                raise ValueError(f"direction {self.direction} needs a plain `from` column (not invertible)")
            if isinstance(self.lookup, dict) and len(set(map(_key_text, self.lookup.values()))) != len(
                self.lookup
            ):
                raise ValueError(f"direction {self.direction} needs a one-to-one lookup table")
        return self

    @property
    def has_constant(self) -> bool:
        return "constant" in self.model_fields_set

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def has_lookup_default(self) -> bool:
        return "lookup_default" in self.model_fields_set


def _key_text(value: Any) -> str:
    """Lookup/filter keys as canonical text (YAML may give ints or booleans)."""
    from sync.core.mapping.transforms import canon_text  # local: transforms imports nothing from here

    text = canon_text(value)
    return "" if text is None else text


def _fields_shorthand(value: Any) -> Any:
    """``name: nome`` means ``name: {from: nome}``; ``name:`` (null) means same column name."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, spec in value.items():
        if isinstance(spec, str):
            out[key] = {"from": spec}
        elif spec is None:
            out[key] = {"from": key}
        else:
            out[key] = spec
    return out


class DeriveKeySpec(_Strict):
    """Derive a natural key for rows that have none (design §3, employees)."""

    field: str
    template: str | None  # null: derivation off, unkeyed rows are quarantined

    @field_validator("template")
    @classmethod
    def _template_ok(cls, value: str | None) -> str | None:
        if value is not None:
            template_names(value)
        return value


class ChildSpec(_Strict):
    """A nested collection (product sizes, certificates, stock cards), compared as a whole."""

    source: str | None = None  # ERP entity holding the child rows; None: a list column of the parent row
    column: str | None = None  # list column in the parent row (default: the child name) when no source
    parent_key: str | None = None  # column of the child rows holding the parent's ERP key
    key: list[str]  # platform fields identifying one child inside its parent (sort + duplicates)
    filter: list[FilterSpec] = Field(default_factory=list)
    fields: dict[str, FieldSpec]

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _fields_shorthand(value)

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> ChildSpec:
        if self.source is not None and self.parent_key is None:
            raise ValueError("a child with a source needs parent_key (the column holding the parent ERP key)")
        if self.source is None and self.parent_key is not None:
            raise ValueError("parent_key needs source")
        missing = [k for k in self.key if k not in self.fields]
        if missing:
            raise ValueError(f"key field(s) {', '.join(missing)} are not mapped")
        for name, spec in self.fields.items():
            if spec.direction != "push":
                raise ValueError(f"{name}: children are push-only")
        return self


class EntitySpec(_Strict):
    """One platform entity fed by one ERP source entity."""

    source: str
    key: str
    natural_key: list[str] | None = None
    filter: list[FilterSpec] = Field(default_factory=list)
    fields: dict[str, FieldSpec]
    children: dict[str, ChildSpec] = Field(default_factory=dict)
    delete: DeletePolicy = "ignore"
    deactivate_field: str | None = None
    # Platform edits of pull/both fields flow back to the ERP. Unset, it follows from the
    # fields: a field written ``direction: both`` (or pull) makes the entity writable, since
    # that is what the user asked for; left out, ``both`` would silently act as ``push`` and
    # a console edit would be overwritten as drift. ``false`` with such fields is an error.
    writable: bool | None = None
    derive_key: DeriveKeySpec | None = None
    marker: str | bool | None = None  # None/true: the platform default (DEFAULT_MARKERS); false: none

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _fields_shorthand(value)

    @field_validator("natural_key", mode="before")
    @classmethod
    def _nk_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> EntitySpec:
        if not self.fields:
            raise ValueError("an entity needs at least one field")
        if self.delete == "deactivate":
            field = self.deactivate_field or "active"
            if field not in self.fields:
                raise ValueError(f"delete: deactivate needs the field {field!r} mapped (deactivate_field)")
        elif self.deactivate_field is not None:
            raise ValueError("deactivate_field needs delete: deactivate")
        for part in {p for k in self.natural_key or () for p in k.split("+")}:
            if part not in self.fields:
                raise ValueError(f"natural key field {part!r} is not mapped")
        if self.derive_key is not None and self.derive_key.field not in self.fields:
            raise ValueError(f"derive_key field {self.derive_key.field!r} is not mapped")
        back = [f"{n} ({s.direction})" for n, s in self.fields.items() if s.direction != "push"]
        if self.writable is False and back:
            raise ValueError(
                f"writable: false, but {', '.join(back)} flow back from the platform: remove "
                "`writable: false` to take platform edits into the ERP, or make them direction: push"
            )
        return self

    @property
    def takes_edits(self) -> bool:
        """Platform edits of pull/both fields flow back (``writable``, implied by them)."""
        if self.writable is not None:
            return self.writable
        return any(s.direction != "push" for s in self.fields.values())


class MappingFileSpec(_Strict):
    """A whole mapping file."""

    version: Literal[1] = 1
    platform: Platform
    lookups: dict[str, dict[str, Any]] = Field(default_factory=dict)
    entities: dict[str, EntitySpec]

    @field_validator("lookups", mode="before")
    @classmethod
    def _lookup_keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                name: ({_key_text(k): v for k, v in table.items()} if isinstance(table, dict) else table)
                for name, table in value.items()
            }
        return value
