"""The ``Source`` protocol: how the engine reads (and writes back to) an ERP.

Sources yield plain dict rows lazily and know nothing about mappings or diffs. ERP key
columns come back as strings so keys compare the same whatever the storage type.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
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

    def change_column(self, entity: str) -> str | None:
        """The column dating a row's last change (``erp.entities.<x>.updated_at``, any name),
        or None: then no incremental read is possible and only full reads see changes."""
        ...

    def write_back(self, entity: str, erp_key_field: str, key: str, fields: Mapping[str, Any]) -> int:
        """Update one ERP row with pulled values; returns the number of rows changed."""
        ...

    def close(self) -> None: ...


# Epoch seconds written as text: digits, an optional fraction. "20240501" (8 digits) is
# read as an ISO basic date by ``fromisoformat``, so a plain number needs 9 digits or more.
_EPOCH = re.compile(r"[0-9]{9,}(?:\.[0-9]*)?")


def parse_timestamp(value: Any) -> dt.datetime | None:
    """An ``updated_at`` value as an aware UTC datetime (naive values are taken as UTC).

    Accepts what ERPs store: ISO text (``T`` or space, any offset), SQL date/datetime
    values and epoch seconds (a number, or digits as text). Raises ``ValueError`` on
    anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        stamp = dt.datetime.fromtimestamp(float(value), dt.UTC)  # epoch seconds
    else:
        text = str(value).strip()
        if _EPOCH.fullmatch(text):  # epoch seconds stored as text (SQLite, CSV)
            return dt.datetime.fromtimestamp(float(text), dt.UTC)
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def try_timestamp(value: Any) -> dt.datetime | None:
    """``parse_timestamp``, or None for a value that is no timestamp (a bad ERP cell)."""
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError, OverflowError, OSError):
        return None


def key_str(value: Any) -> str | None:
    """ERP key as text: ``12``, ``"12"`` and ``12.0`` are the same key."""
    from sync.core.mapping.transforms import key_text

    return key_text(value)
