"""The ``Source`` protocol: how the engine reads (and writes back to) an ERP.

Sources yield plain dict rows lazily and know nothing about mappings or diffs. ERP key
columns come back as strings so keys compare the same whatever the storage type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Source(Protocol):
    def read(self, entity: str, *, since: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
        """Rows of one ERP entity, lazily; with ``since``, only rows updated after it."""
        ...

    def read_keys(
        self, entity: str, keys: Iterable[str], *, key_field: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows whose ERP key is in ``keys`` (event-driven syncs of a few records)."""
        ...

    def count(self, entity: str) -> int: ...

    def max_updated_at(self, entity: str) -> dt.datetime | None:
        """Newest ``updated_at`` of the entity, or ``None`` (no column, or no rows)."""
        ...

    def write_back(self, entity: str, erp_key_field: str, key: str, fields: Mapping[str, Any]) -> int:
        """Update one ERP row with pulled values; returns the number of rows changed."""
        ...

    def close(self) -> None: ...


def parse_timestamp(value: Any) -> dt.datetime | None:
    """An ``updated_at`` value as an aware UTC datetime (naive values are taken as UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float):
        stamp = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        stamp = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def key_str(value: Any) -> str | None:
    """ERP key as text: ``12``, ``"12"`` and ``12.0`` are the same key."""
    from sync.core.mapping.transforms import key_text

    return key_text(value)
