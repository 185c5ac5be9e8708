"""SmartEPI adapter: org entities and products through ``SmartEPIClient``.

- No batch endpoint: one POST per create (``batch_size`` 1).
- Versions: the ETag of our last write is kept in the base, so an update is one PUT;
  a stale 409 surfaces as ``StaleVersion`` for the executor's re-read-and-retry-once.
- Children: product ``sizes`` (keyed by ``name``) and ``certificates`` (keyed by
  ``number``) are compared without their ids; on update the adapter reads the product
  to re-attach the ids of existing entries (the API upserts nested entries by id and
  adds entries without one). Removing a nested entry is not documented ("no blanking"),
  so an entry gone from the ERP stays on the platform; the diff then keeps reporting it.
- Clearing a field is not documented either: ``null`` is sent; a server that refuses it
  (400 naming the field) gets the update without it, and a field the answer still holds is
  reported as ``Written.kept`` (the executor holds the row, rule ``not_cleared``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from sync.clients.smartepi.client import SmartEPIClient
from sync.clients.smartepi.resources import Resource
from sync.engine.adapters.base import CreateItem, RawRemote, Written, counts_since
from sync.errors import ContractViolation, FieldRejected

CHILD_KEYS: dict[str, str] = {"sizes": "name", "certificates": "number"}
_NOT_FIELDS = frozenset({"id", "createdAt", "updatedAt", *CHILD_KEYS})
# Child fields erpsync maps as dates (§5.5 gives ``expiresAt`` no type; every other ``…At``
# in the contract is a date-time). A server that stores it as a date-time answers
# "2026-01-31T00:00:00Z" for the "2026-01-31" we sent: a midnight-UTC value is read back as
# the date, so the child compares equal and is not rewritten on every run.
CHILD_DATE_FIELDS: dict[str, frozenset[str]] = {"certificates": frozenset({"expiresAt"})}
_MIDNIGHT_UTC = re.compile(r"^(\d{4}-\d{2}-\d{2})T00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?$")


def _as_date(value: Any) -> Any:
    if isinstance(value, str):
        match = _MIDNIGHT_UTC.match(value.strip())
        if match:
            return match.group(1)
    return value


def resource_name(entity: str) -> str:
    return entity.replace("_", "-")


def split_record(record: Mapping[str, Any], etag: str | None = None) -> RawRemote:
    """Platform record → fields without ids/timestamps, children without their ids."""
    fields = {k: v for k, v in record.items() if k not in _NOT_FIELDS}
    children: dict[str, list[dict[str, Any]]] = {}
    for name in CHILD_KEYS:
        entries = record.get(name)
        if isinstance(entries, list):
            dates = CHILD_DATE_FIELDS.get(name, frozenset())
            children[name] = [
                {k: (_as_date(v) if k in dates else v) for k, v in e.items() if k != "id"}
                for e in entries
                if isinstance(e, dict)
            ]
    return RawRemote(str(record["id"]), fields, children, etag)


def attach_child_ids(
    wanted: Mapping[str, list[dict[str, Any]]], current: Mapping[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """Give each wanted child the id of the existing entry with the same key (upsert)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, entries in wanted.items():
        key = CHILD_KEYS.get(name, "name")
        existing = {
            str(e.get(key)).strip().casefold(): e.get("id")
            for e in current.get(name) or []
            if isinstance(e, dict) and e.get(key) is not None
        }
        sent = []
        for entry in entries:
            item = dict(entry)
            ident = existing.get(str(entry.get(key)).strip().casefold())
            if ident:
                item["id"] = ident
            sent.append(item)
        out[name] = sent
    return out


class SmartEPIAdapter:
    platform = "smartepi"

    def __init__(self, client: SmartEPIClient, *, owns_client: bool = True) -> None:
        self.client = client
        self._owns_client = owns_client  # False: a kept client outlives this run's adapter
        self._counts_before = client.counters.snapshot()

    def _res(self, entity: str) -> Resource:
        return self.client.resource(resource_name(entity))

    def batch_size(self, entity: str) -> int:
        return 1

    async def list_remote(
        self, entity: str, *, children: Collection[str] | None = None
    ) -> AsyncIterator[RawRemote]:
        # Sizes and certificates come inside each product record: no read to skip.
        async for record in self._res(entity).list():
            yield split_record(record)

    async def find(self, entity: str, key_fields: Mapping[str, Any]) -> list[RawRemote]:
        """Records matching any of ``key_fields`` (natural key, then the marker if any).

        Only documented filters are sent (employees: ``identification``, and ``name`` to
        narrow an e-mail; else ``name``/``code``, or a full listing) and every hit is
        confirmed on the folded key (``Resource.find_by_key``), so an API that ignores a
        filter never makes us adopt another record. A lookup that cannot be answered
        raises a ``sync.errors`` type, never a raw exception: 400 ``BadRequest``, 5xx
        ``ServerError`` after retries, ``ContractViolation``; the executor defers that record.
        """
        found = await self._res(entity).find_by_key(key_fields)
        out = []
        for record in found:
            if record.get("id") in (None, ""):
                raise ContractViolation(
                    f"{resource_name(entity)}: a lookup answer holds a matching record without an id",
                    platform="smartepi",
                    hint="the record is deferred to the next run; report this platform answer",
                )
            out.append(split_record(record))
        return out

    async def find_many(
        self, entity: str, queries: Sequence[Mapping[str, Any]], *, marker: str | None = None
    ) -> list[list[RawRemote] | None]:
        """One lookup per query; ``None`` for a query without any natural-key value."""
        out: list[list[RawRemote] | None] = []
        for q in queries:
            usable = any(v not in (None, "") for k, v in q.items() if k != marker)
            out.append(await self.find(entity, q) if usable else None)
        return out

    async def get(self, entity: str, remote_id: str) -> RawRemote | None:
        from sync.errors import NotFound

        try:
            got = await self._res(entity).get(remote_id)
        except NotFound:
            return None
        return split_record(got.record, got.etag)

    async def create(
        self, entity: str, items: Sequence[CreateItem], *, marker: str | None = None
    ) -> list[Written]:
        out = []
        for item in items:  # batch_size is 1: the executor sends one item at a time
            body = dict(item.payload)
            body.update({k: v for k, v in item.children.items() if k in CHILD_KEYS})
            done = await self._res(entity).create(body)
            out.append(Written(str(done.record["id"]), done.etag))
        return out

    async def update(
        self,
        entity: str,
        remote_id: str,
        payload: Mapping[str, Any],
        children: Mapping[str, list[dict[str, Any]]],
        *,
        version: str | None,
    ) -> Written:
        res = self._res(entity)
        body = dict(payload)
        if children:
            current = await res.get(remote_id)
            body.update(attach_child_ids(children, current.record))
            version = current.etag if version is None else version
        if version is None:
            version = (await res.get(remote_id)).etag
        # Clearing a field is undocumented (§2.6 "no blanking"): null is sent, and a server
        # that refuses it (400 naming the field) gets the update without the nulls. Either
        # way a field the answer still holds is reported back as kept, not as cleared.
        nulls = {k for k, v in body.items() if v is None and k not in CHILD_KEYS}
        try:
            done = await res.update(remote_id, body, etag=version)
        except FieldRejected as exc:
            if exc.field not in nulls:
                raise
            rest = {k: v for k, v in body.items() if k not in nulls}
            done = await res.update(remote_id, rest, etag=version) if rest else await res.get(remote_id)
        record = done.record if isinstance(done.record, Mapping) else {}
        kept = {k: record[k] for k in sorted(nulls) if record.get(k) not in (None, "", [])}
        return Written(remote_id, done.etag, kept=kept)

    async def delete(self, entity: str, remote_id: str, *, version: str | None) -> None:
        res = self._res(entity)
        if version is None:
            version = (await res.get(remote_id)).etag
        await res.delete(remote_id, etag=version)

    def request_counts(self) -> dict[str, int]:
        """Requests sent through this adapter (a kept client's earlier runs are not counted)."""
        return counts_since(self._counts_before, self.client.counters.snapshot())

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
