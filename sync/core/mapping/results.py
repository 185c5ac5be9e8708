"""What mapping a batch of ERP rows produces, and what it needs to know of other entities (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sync.core.mapping.transforms import Row
from sync.core.records import Desired, QuarantineEntry

__all__ = ["MapContext", "MapResult"]


@dataclass(slots=True)
class MapContext:
    """What map_rows needs to know about *other* entities of the same platform.

    ``valid_keys[entity]``: ERP keys that mapped fine; a reference to a key outside the
    set is dangling. An entity absent from the dict is not checked (e.g. an event-driven
    sync of a few rows that did not read the referenced table). ``quarantined[entity]``:
    ERP keys in quarantine; referencing one quarantines the row, naming the parent.
    ``child_rows[child]``: raw child rows grouped by parent ERP key
    (``EntityMapping.group_child_rows``). ``held[entity]``: ERP key → row hash of records
    the platform rejected at an earlier apply (stage ``apply``); while a row's hash is
    unchanged it stays held, so ``record`` counts it as quarantined and the records that
    reference it are quarantined too (``reference_quarantined``), instead of being planned
    and deferred at every apply. ``record`` fills the first two from a result.
    """

    valid_keys: dict[str, Collection[str]] = field(default_factory=dict)
    quarantined: dict[str, Collection[str]] = field(default_factory=dict)
    child_rows: dict[str, Mapping[str, Sequence[Row]]] = field(default_factory=dict)
    held: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def record(self, entity: str, result: MapResult) -> None:
        self.valid_keys[entity] = {d.erp_key for d in result.desired}
        quarantined = {q.erp_key for q in result.quarantine if not q.child_only}
        held = self.held.get(entity)
        if held:
            quarantined.update(
                d.erp_key for d in result.desired if d.erp_hash and held.get(d.erp_key) == d.erp_hash
            )
        self.quarantined[entity] = quarantined


@dataclass(slots=True)
class MapResult:
    """Mapped rows. Quarantined keys are *present* in the ERP: never infer a delete from them."""

    desired: list[Desired] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    rows: int = 0  # rows read
    filtered: int = 0  # rows skipped by the entity's filter (treated as absent from the ERP)
