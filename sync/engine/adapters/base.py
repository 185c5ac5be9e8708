"""The seam between the engine and one platform: what the executor and collector need.

An adapter turns the generic operations of a plan (list, find by natural key, create,
update, deactivate, delete) into calls on one platform client, and platform records into
plain ``RawRemote`` values. Adding a platform means writing one adapter; the planner,
executor and state store stay as they are.

Children (nested collections such as SmartEPI product sizes or SmartKasa stock cards)
travel as plain lists of dicts keyed by the child spec's key fields; adapters strip
platform ids from them for comparison and re-attach ids when they write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class RawRemote:
    """One platform record in platform field names (values not normalized yet)."""

    remote_id: str
    fields: dict[str, Any]
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    version: str | None = None


@dataclass(slots=True)
class CreateItem:
    """One record to create: resolved payload (remote ids), children, and its ERP key."""

    erp_key: str
    payload: dict[str, Any]
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(slots=True)
class Written:
    """What a successful write returns: the remote id and the new version if known.

    ``kept``: fields an update sent as ``null`` to clear them that the platform kept (how to
    clear a field is undocumented on SmartEPI): the executor holds the row for a person."""

    remote_id: str
    version: str | None = None
    kept: dict[str, Any] = field(default_factory=dict)


def counts_since(
    before: Mapping[tuple[str, str, str], int], now: Mapping[tuple[str, str, str], int]
) -> dict[str, int]:
    """Request counts by ``"METHOD path status"`` added between two counter snapshots."""
    out = {}
    for key, n in now.items():
        delta = n - before.get(key, 0)
        if delta:
            out[" ".join(key)] = delta
    return out


class PlatformAdapter(Protocol):
    platform: str

    def batch_size(self, entity: str) -> int:
        """How many creates go in one request (1 = one request per record)."""

    def list_remote(
        self, entity: str, *, children: Collection[str] | None = None
    ) -> AsyncIterator[RawRemote]:
        """Every live record of ``entity`` (full mode collect). ``children``: the nested
        collections the mapping maps (None: all); one read with requests of its own (SmartKasa's
        stock cards) is skipped when it is not wanted."""

    async def find(self, entity: str, key_fields: Mapping[str, Any]) -> list[RawRemote]:
        """Records matching the natural key (resolves ambiguous creates and 409 duplicates)."""

    async def find_many(
        self, entity: str, queries: Sequence[Mapping[str, Any]], *, marker: str | None = None
    ) -> list[list[RawRemote] | None]:
        """Candidates per query (natural-key values and the marker, as sent); ``None`` where no
        lookup could have found the record (no usable key): such a create is never resent."""

    async def get(self, entity: str, remote_id: str) -> RawRemote | None:
        """One record with its current version, or None when it is gone."""

    async def create(
        self, entity: str, items: Sequence[CreateItem], *, marker: str | None = None
    ) -> list[Written]:
        """Create ``items`` (one request when batched). Raises on failure; never retried.

        ``marker``: the field each payload carries the ERP key in (a batch answer is matched
        to the items by it)."""

    async def update(
        self,
        entity: str,
        remote_id: str,
        payload: Mapping[str, Any],
        children: Mapping[str, list[dict[str, Any]]],
        *,
        version: str | None,
    ) -> Written:
        """Write only ``payload`` (owned, changed fields). Stale version raises StaleVersion."""

    async def delete(self, entity: str, remote_id: str, *, version: str | None) -> None: ...

    def request_counts(self) -> dict[str, int]:
        """Requests sent so far, by ``METHOD path-template status``."""

    async def aclose(self) -> None: ...
