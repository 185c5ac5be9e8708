"""Plain data passed between the pure core (mapping, keys, planner) and the edges.

Nothing here does I/O. Values inside ``fields`` are already *normalized* (see
``sync.core.normalize``): ``Decimal`` for numbers, trimmed ``str``, ISO ``date``
strings, ``None`` for missing. Reference fields hold the ERP key of the target
record (not a remote id): comparison happens in "ERP key space", and the executor
resolves ERP keys to remote ids through bindings only when it sends a request.
That is what lets a plan reference records that do not exist remotely yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Platform = Literal["smartepi", "smartkasa"]
Direction = Literal["push", "pull", "both"]
ConflictPolicy = Literal["erp_wins", "remote_wins", "report"]
DeletePolicy = Literal["ignore", "deactivate", "delete"]

# A reference value the planner could not translate into an ERP key (the remote record
# points at something we have no binding for). Kept as a distinct string so it never
# compares equal to a real ERP key.
UNBOUND_REF_PREFIX = "remote:"


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


@dataclass(frozen=True, slots=True)
class Desired:
    """One ERP row, mapped to the platform's shape: what the platform should hold."""

    platform: Platform
    entity: str
    erp_key: str
    fields: dict[str, Any]
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    erp_hash: str = ""  # content hash of the source row (quarantine release, staleness)


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


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A row that cannot be synced, with a reason naming the row, the field and the rule."""

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

    def reason(self) -> str:
        where = f"{self.entity} {self.erp_key!r}"
        if self.field:
            where += f" field {self.field!r}"
        return f"{where}: {self.rule}: {self.message}"
