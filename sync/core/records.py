"""Plain data passed between the pure core (mapping, keys, planner) and the edges.

Nothing here does I/O. Values inside ``fields`` are already *normalized* (see
``sync.core.normalize``): ``Decimal`` for numbers, trimmed ``str``, ISO ``date``
strings, ``None`` for missing. Reference fields hold the ERP key of the target
record (not a remote id): comparison happens in "ERP key space", and the executor
resolves ERP keys to remote ids through bindings only when it sends a request.
That is what lets a plan reference records that do not exist remotely yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, Literal

Platform = Literal["smartepi", "smartkasa"]
Direction = Literal["push", "pull", "both"]
ConflictPolicy = Literal["erp_wins", "remote_wins", "report"]
DeletePolicy = Literal["ignore", "deactivate", "delete"]

# A reference value the planner could not translate into an ERP key (the remote record
# points at something we have no binding for). Kept as a distinct string so it never
# compares equal to a real ERP key.
UNBOUND_REF_PREFIX = "remote:"

# The longest ERP key the state store holds (its key columns are VARCHAR(255) on
# PostgreSQL). A longer key is quarantined at mapping (rule ``key_too_long``): it could
# never be bound, and its intent insert would fail the whole apply on every retry.
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """How one platform field flows and how its conflicts resolve."""

    name: str
    direction: Direction = "push"
    conflict: ConflictPolicy = "erp_wins"
    ref: str | None = None  # target entity name when the field is a reference
    sensitive: bool = False  # redact values in reports and quarantine


@dataclass(frozen=True, slots=True)
class EntityPolicy:
    """What the planner needs to know about one mapped platform entity."""

    platform: Platform
    entity: str  # platform entity name, e.g. "employees", "products"
    level: int  # dependency level: 0 first; a reference always points to a lower level
    natural_key: tuple[str, ...]  # platform fields tried in order to find an unbound remote
    fields: dict[str, FieldPolicy]
    delete: DeletePolicy = "ignore"
    deactivate_field: str | None = None  # e.g. "active" (set to False on deactivate)
    children: tuple[str, ...] = ()  # nested collections compared as a whole (sizes, cards)
    writable: bool = True  # ERP source table accepts write-back of pulled fields
    # Platform field stamped with the ERP key on create, so a lost create is findable
    # (spec.DEFAULT_MARKERS); None: the entity has no marker.
    marker: str | None = None
    # Child name → the item fields the mapping sets: the planner compares child items on these
    # only, so a platform field the mapping leaves out (cards' counting_enabled) is never drift.
    # Empty (a hand-built policy): child items compare whole.
    child_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)


_SHAPES: dict[tuple[str, ...], tuple[str, ...]] = {}  # one shared field-name tuple per shape


def field_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The shared copy of a field-name tuple (records of one entity hold the same object)."""
    found = _SHAPES.get(names)
    if found is None:
        if len(_SHAPES) >= 4096:  # a bound, for callers that make many one-off shapes
            _SHAPES.clear()
        found = _SHAPES[names] = names
    return found


class Desired:
    """One ERP row, mapped to the platform's shape: what the platform should hold.

    Behaves as a frozen dataclass of ``(platform, entity, erp_key, fields, children,
    erp_hash)``, but is stored compactly, because a full read holds a million of them at
    once: the field values as a tuple against a field-name tuple shared by every record
    of the same shape, and the row hash as its 16 raw bytes. ``fields`` builds a fresh
    ``dict`` (in field order) on each access; records are never changed after mapping.
    """

    __slots__ = ("_hash", "_names", "_values", "children", "entity", "erp_key", "platform")
    __match_args__ = ("platform", "entity", "erp_key", "fields", "children", "erp_hash")

    platform: Platform
    entity: str
    erp_key: str
    children: dict[str, list[dict[str, Any]]]
    _names: tuple[str, ...]
    _values: tuple[Any, ...]
    _hash: str | bytes

    def __init__(
        self,
        platform: Platform,
        entity: str,
        erp_key: str,
        fields: Mapping[str, Any],
        children: dict[str, list[dict[str, Any]]] | None = None,
        erp_hash: str = "",  # content hash of the source row (quarantine release, staleness)
    ) -> None:
        put = object.__setattr__
        put(self, "platform", platform)
        put(self, "entity", entity)
        put(self, "erp_key", erp_key)
        put(self, "_names", field_names(tuple(fields)))
        put(self, "_values", tuple(fields.values()))
        put(self, "children", {} if children is None else children)
        put(self, "_hash", erp_hash)

    @classmethod
    def packed(
        cls,
        platform: Platform,
        entity: str,
        erp_key: str,
        names: tuple[str, ...],
        values: tuple[Any, ...],
        children: dict[str, list[dict[str, Any]]],
        digest: bytes,
    ) -> Desired:
        """The mapping's constructor: ``names`` from ``field_names``, ``digest`` the raw row hash."""
        self = cls.__new__(cls)
        put = object.__setattr__
        put(self, "platform", platform)
        put(self, "entity", entity)
        put(self, "erp_key", erp_key)
        put(self, "_names", names)
        put(self, "_values", values)
        put(self, "children", children)
        put(self, "_hash", digest)
        return self

    @property
    def fields(self) -> dict[str, Any]:
        return dict(zip(self._names, self._values, strict=False))  # equal lengths by construction

    @property
    def erp_hash(self) -> str:
        h = self._hash
        return h if h.__class__ is str else h.hex()  # type: ignore[union-attr]

    def get(self, name: str, default: Any = None) -> Any:
        """One field value (``fields.get`` without building the dict)."""
        try:
            return self._values[self._names.index(name)]
        except ValueError:
            return default

    def _astuple(self) -> tuple[Any, ...]:
        return (self.platform, self.entity, self.erp_key, self.fields, self.children, self.erp_hash)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Desired)
        return self._astuple() == other._astuple()

    __hash__ = None  # type: ignore[assignment]  # like the frozen dataclass: fields is a dict

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        return (
            f"Desired(platform={self.platform!r}, entity={self.entity!r}, erp_key={self.erp_key!r},"
            f" fields={self.fields!r}, children={self.children!r}, erp_hash={self.erp_hash!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Desired, self._astuple())


@dataclass(frozen=True, slots=True)
class Remote:
    """One record as the platform returned it, converted to the mapped field names."""

    platform: Platform
    entity: str
    remote_id: str
    fields: dict[str, Any]
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    version: str | None = None  # SmartEPI ETag value when known


@dataclass(frozen=True, slots=True)
class Base:
    """The last field values both sides agreed on (three-way diff ancestor)."""

    erp_key: str
    remote_id: str
    fields: dict[str, Any]
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    version: str | None = None


# A child row set aside while its parent syncs: (collection, key fields, folded key), the
# key ``None`` when the row's own key could not be read (a size without a name).
SetAside = tuple[str, tuple[str, ...], tuple[str | None, ...] | None]


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A row that cannot be synced, with a reason naming the row, the field and the rule.

    With ``set_aside`` the entry is about child rows only (a size without a name, a stock
    card whose count is not a number): the parent itself syncs with its other children,
    and the planner leaves the platform's children of those keys alone (never a delete).
    """

    platform: Platform
    entity: str
    erp_key: str
    field: str | None
    rule: str
    message: str
    value: str | None = None  # already redacted where the field is sensitive
    erp_hash: str = ""
    stage: str = "validate"  # validate | apply | inbound
    request_id: str | None = None
    set_aside: tuple[SetAside, ...] = ()
    column: str | None = None  # the ERP column(s) behind ``field``, when known

    @property
    def child_only(self) -> bool:
        """Only child rows are held back: the parent record itself is synced."""
        return bool(self.set_aside)

    def reason(self) -> str:
        where = f"{self.entity} {self.erp_key!r}"
        if self.field:
            where += f" field {self.field!r}"
        return f"{where}: {self.rule}: {self.message}"
