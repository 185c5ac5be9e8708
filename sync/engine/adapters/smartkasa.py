"""SmartKasa adapter: categories, subgroups, products and their stock cards.

- Products and categories are created through the batch endpoints, one chunk per
  ``create`` call (the executor chunks by ``batch_size`` and owns the intent log);
  ambiguous and rejected chunks surface as ``AmbiguousWrite``/``BatchRejected``.
- Stock cards are the ``cards`` children of a product, one per shop, keyed by
  ``shop_id``: listed once per collect (``GET /inventory/cards`` returns them all) and
  written after the product (POST for a new product, upsert otherwise). ``count`` is
  an absolute value (contract §5.5), so a push races with till sales in between.
- Updates: PATCH for products, PUT elsewhere; the owned, changed fields are sent, plus the
  fields the platform requires (``title``/``price`` of a product, ``title`` of a category or
  subgroup) when the change lacks them. Whether PATCH/PUT validate those on update is not
  stated (contract §5.4, §8: "send only the fields you own, plus anything required"), so they
  are always sent, with the value the platform already holds: the record as this run read
  it (collect, lookup, get), else read now. Sending what the platform holds changes nothing,
  so a console edit of a field the ERP did not change is never overwritten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from sync.clients.smartkasa.client import SmartKasaClient
from sync.core.keys import fold
from sync.core.normalize import normalize_value
from sync.core.platforms.smartkasa import SMARTKASA
from sync.engine.adapters.base import CreateItem, RawRemote, Written, counts_since
from sync.errors import AmbiguousWrite, ClientError, ErpsyncError, NotFound

log = logging.getLogger(__name__)

BATCHED = SMARTKASA.batch_entities()  # the platform catalogue
_SERVER_FIELDS = frozenset(
    {
        "id",
        "created_at",
        "updated_at",
        "owner_id",
        "user_id",
        "cards",
        "category",
        "category_type",
        "partner",
        "stock",
        "tax_amount",
    }
)
_REQUIRED_ON_UPDATE: dict[str, tuple[str, ...]] = {
    "products": ("title", "price"),
    "categories": ("title",),
    "subgroups": ("title",),
}
_CARD_FIELDS = ("shop_id", "count", "counting_enabled")
_CARD_ATTEMPTS = 3  # upserts per card when its POST keeps ending ambiguously
_FIND_BY_NUMBER_MAX = 8  # more barcode lookups than this: one listing of the catalog is cheaper


def _record(model: Any) -> dict[str, Any]:
    return model.model_dump() if hasattr(model, "model_dump") else dict(model)


def _card_fields(product_id: str, card: Mapping[str, Any]) -> dict[str, Any]:
    """What a card POST or PUT sends: product, shop, count, and ``counting_enabled`` when mapped."""
    fields: dict[str, Any] = {
        "product_id": product_id,
        "shop_id": str(card.get("shop_id")),
        "count": card.get("count") or 0,
    }
    if card.get("counting_enabled") is not None:
        fields["counting_enabled"] = card["counting_enabled"]
    return fields


def _differs(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """A landed card differs from the wanted one in a field the mapping sets."""
    a, b = _card(have), _card(want)
    return any(normalize_value(a[k]) != normalize_value(b[k]) for k in _CARD_FIELDS if b[k] is not None)


def _card(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A card as compared with the ERP: shop ids are integers on SmartKasa (contract §5.7)."""
    out = {k: rec.get(k) for k in _CARD_FIELDS}
    shop = out.get("shop_id")
    if isinstance(shop, str) and shop.isdigit():
        out["shop_id"] = int(shop)
    return out


class SmartKasaAdapter:
    platform = "smartkasa"

    def __init__(self, client: SmartKasaClient, *, batch_size: int = 100, owns_client: bool = True) -> None:
        self.client = client
        self._batch = batch_size
        self._owns_client = owns_client  # False: a kept client outlives this run's adapter
        self._counts_before = client.counters.snapshot()
        self._cards: dict[str, list[dict[str, Any]]] | None = None
        # (entity, id) → the required-on-update fields as the platform holds them (module docstring)
        self._held: dict[tuple[str, str], dict[str, Any]] = {}
        self._held_misses: dict[str, int] = {}

    def _res(self, entity: str) -> Any:
        res = getattr(self.client, entity.replace("-", "_"), None)
        if res is None:
            raise KeyError(f"smartkasa has no resource {entity!r}")
        return res

    def batch_size(self, entity: str) -> int:
        return self._batch if entity in BATCHED else 1

    async def _all_cards(self) -> dict[str, list[dict[str, Any]]]:
        if self._cards is None:
            grouped: dict[str, list[dict[str, Any]]] = {}
            async for card in self.client.cards.iterate():
                rec = _record(card)
                grouped.setdefault(str(rec.get("product_id")), []).append(_card(rec))
            self._cards = grouped
        return self._cards

    def _split(self, entity: str, rec: Mapping[str, Any], cards: list[dict[str, Any]] | None) -> RawRemote:
        fields = {k: v for k, v in rec.items() if k not in _SERVER_FIELDS}
        required = _REQUIRED_ON_UPDATE.get(entity)
        if required:
            self._held[(entity, str(rec["id"]))] = {f: fields.get(f) for f in required}
        children = {"cards": cards} if entity == "products" and cards is not None else {}
        return RawRemote(str(rec["id"]), fields, children, None)

    async def list_remote(
        self, entity: str, *, children: Collection[str] | None = None
    ) -> AsyncIterator[RawRemote]:
        wanted = entity == "products" and (children is None or "cards" in children)
        cards = await self._all_cards() if wanted else None  # no card listing a mapping does not use
        async for model in self._res(entity).iterate():
            rec = _record(model)
            yield self._split(entity, rec, None if cards is None else cards.get(str(rec["id"]), []))

    async def find(self, entity: str, key_fields: Mapping[str, Any]) -> list[RawRemote]:
        found: list[Any]
        if entity == "products":
            number = key_fields.get("number")
            found = await self.client.products.find_by_number(str(number)) if number else []
        elif entity == "categories":
            title = key_fields.get("title")
            found = (
                await self.client.categories.find(str(title), key_fields.get("parent_id")) if title else []
            )
        else:
            title = key_fields.get("title")
            found = [m async for m in self._res(entity).iterate(title=title)] if title else []
        return [self._split(entity, _record(m), None) for m in found]

    async def find_many(
        self, entity: str, queries: Sequence[Mapping[str, Any]], *, marker: str | None = None
    ) -> list[list[RawRemote] | None]:
        """Candidates per query; ``None`` where no lookup could find the record.

        Products: by barcode (``number`` filter) when every query has one and they are few;
        otherwise one listing of the catalog serves every query, matched locally by barcode or
        by the marker (no filter exists for ``alter_number``, contract §5.4). A query with
        neither, or with only a marker the platform is known not to keep, is unsearchable.
        """
        if entity == "categories" and len(queries) > 1:  # few records: one listing serves all
            listed = [self._split(entity, _record(m), None) async for m in self.client.categories.iterate()]
            return [
                [
                    r
                    for r in listed
                    if fold(r.fields.get("title")) == fold(q.get("title"))
                    and str(r.fields.get("parent_id") or "") == str(q.get("parent_id") or "")
                ]
                if q.get("title") not in (None, "")
                else None
                for q in queries
            ]
        if entity != "products":
            out: list[list[RawRemote] | None] = []
            for q in queries:
                usable = q.get("title") not in (None, "")
                out.append(await self.find(entity, q) if usable else None)
            return out
        marker_ok = marker is not None and not self.client.products.marker_lost

        def has_number(q: Mapping[str, Any]) -> bool:
            return q.get("number") not in (None, "")

        def has_marker(q: Mapping[str, Any]) -> bool:
            return marker_ok and marker is not None and q.get(marker) not in (None, "")

        searchable = [has_number(q) or has_marker(q) for q in queries]
        if all(has_number(q) for q, ok in zip(queries, searchable, strict=True) if ok) and (
            sum(searchable) <= _FIND_BY_NUMBER_MAX
        ):
            return [
                await self.find(entity, q) if ok else None for q, ok in zip(queries, searchable, strict=True)
            ]
        by_number: dict[str, list[RawRemote]] = {}
        by_marker: dict[str, list[RawRemote]] = {}
        async for model in self.client.products.iterate():
            raw = self._split(entity, _record(model), None)
            number = str(raw.fields.get("number") or "").strip()
            if number:
                by_number.setdefault(number, []).append(raw)
            if marker is not None:
                tag = str(raw.fields.get(marker) or "").strip()
                if tag:
                    by_marker.setdefault(tag, []).append(raw)
        result: list[list[RawRemote] | None] = []
        for q, ok in zip(queries, searchable, strict=True):
            if not ok:
                result.append(None)
                continue
            hits: dict[str, RawRemote] = {}
            if has_marker(q):
                hits.update((r.remote_id, r) for r in by_marker.get(str(q[marker]).strip(), []))  # type: ignore[index]
            if has_number(q):
                hits.update((r.remote_id, r) for r in by_number.get(str(q["number"]).strip(), []))
            result.append(list(hits.values()))
        return result

    async def get(self, entity: str, remote_id: str) -> RawRemote | None:
        try:
            model = await self._res(entity).get(remote_id)
        except NotFound:
            return None
        rec = _record(model)
        cards = [_card(c) for c in rec.get("cards") or []]
        return self._split(entity, rec, cards if entity == "products" else None)

    async def create(
        self, entity: str, items: Sequence[CreateItem], *, marker: str | None = None
    ) -> list[Written]:
        res = self._res(entity)
        payloads = [dict(i.payload) for i in items]
        if self.verify_later(entity):  # mapped by position; ``finish_creates`` verifies and writes cards
            ids = await res.create_many(payloads, marker=marker, verify=False)
            return [Written(str(i)) for i in ids]
        if entity in BATCHED:
            ids = await res.create_many(payloads, marker=marker)
        else:
            ids = []
            for p in payloads:
                created = await res.create(p)
                ids.append(created if isinstance(created, str) else str(created.id))
        written = [Written(str(i)) for i in ids]
        if entity == "products" and len(written) == len(items):
            for item, w in zip(items, written, strict=True):
                await self._write_cards(w.remote_id, item.children.get("cards") or [], new=True)
        return written

    def verify_later(self, entity: str) -> bool:
        """Products: the batch answer holds ids only, so verifying it means reading the records
        back. The executor gathers a wave of batches and calls ``finish_creates`` once for all:
        one listing of the catalog instead of one per batch."""
        return entity == "products" and self.client.settings.verify_batch_order

    async def finish_creates(
        self, entity: str, created: Sequence[tuple[CreateItem, str]], *, marker: str | None = None
    ) -> list[tuple[str | None, Exception | None]]:
        """Match created ids to their items (``None``: no record matches that item), then write
        each product's stock cards; a card that fails is returned with its product's id."""
        res = self._res(entity)
        ids, leftovers = await res.verify_created(
            [dict(item.payload) for item, _ in created], [rid for _, rid in created], marker=marker
        )
        if leftovers:
            log.warning("smartkasa: %d created %s match no item (resolved by lookup)", len(leftovers), entity)
        errors: dict[int, Exception] = {}
        unsure: list[tuple[int, str, dict[str, Any]]] = []  # card POSTs whose answer was lost
        gate = asyncio.Semaphore(max(1, self.client.settings.max_connections))

        async def post_cards(index: int, product_id: str, cards: list[dict[str, Any]]) -> None:
            async with gate:
                for card in cards:
                    try:
                        await self.client.cards.create(_card_fields(product_id, card))
                    except AmbiguousWrite:
                        unsure.append((index, product_id, card))
                    except ErpsyncError as exc:
                        if exc.kind == "terminal" and not isinstance(exc, ClientError):
                            raise
                        errors[index] = exc

        await asyncio.gather(
            *(
                post_cards(i, rid, item.children.get("cards") or [])
                for i, ((item, _), rid) in enumerate(zip(created, ids, strict=True))
                if rid is not None
            )
        )
        if unsure:
            await self._settle_cards(unsure, errors)
        return [(rid, errors.get(i)) for i, rid in enumerate(ids)]

    async def _settle_cards(
        self, unsure: list[tuple[int, str, dict[str, Any]]], errors: dict[int, Exception]
    ) -> None:
        """Card POSTs whose answers were lost: one listing of every card (the card list is not
        paginated, contract §5.5) tells which landed; a missing one is sent again (that listing
        could have found it), a landed one with other values is updated, the rest is done."""
        try:
            listed: dict[tuple[str, str], dict[str, Any]] = {}
            async for model in self.client.cards.iterate():
                rec = _record(model)
                listed.setdefault((str(rec.get("product_id")), str(rec.get("shop_id"))), rec)
        except ErpsyncError as exc:
            if exc.kind == "terminal" and not isinstance(exc, ClientError):
                raise
            for index, _pid, _c in unsure:
                errors[index] = exc
            return
        for index, product_id, card in unsure:
            have = listed.get((product_id, str(card.get("shop_id"))))
            try:
                if have is None:
                    await self._write_cards(product_id, [card], new=True)
                elif _differs(have, card):
                    await self.client.cards.update(str(have["id"]), _card_fields(product_id, card))
            except ErpsyncError as exc:
                if exc.kind == "terminal" and not isinstance(exc, ClientError):
                    raise
                errors[index] = exc

    async def _write_cards(self, product_id: str, cards: list[dict[str, Any]], *, new: bool) -> None:
        """New product: POST each card (nothing to find). Existing: one lookup of the product's
        cards, then PUT what differs and POST what is missing. A card POST whose answer is lost
        is resolved by the upsert's lookup, never blindly resent."""
        known: dict[str, dict[str, Any]] | None = None
        if not new and len(cards) > 1:  # one request for all shops instead of one per card
            known = {}
            async for model in self.client.cards.iterate(product_id=product_id):
                rec = _record(model)
                if str(rec.get("product_id")) == str(product_id):
                    known.setdefault(str(rec.get("shop_id")), rec)
        for card in cards:
            shop = str(card.get("shop_id"))
            count = card.get("count") or 0
            enabled = card.get("counting_enabled")
            have = known.get(shop) if known is not None else None
            if have is not None:
                if _differs(have, card):
                    await self.client.cards.update(str(have["id"]), _card_fields(product_id, card))
                continue
            # POST first on a new product, or when the product's card list (a lookup that could
            # have found this card) did not show it.
            if new or known is not None:
                try:
                    await self.client.cards.create(_card_fields(product_id, card))
                    continue
                except AmbiguousWrite:
                    pass
            # The upsert looks the card up before it POSTs, so an ambiguous POST inside it may
            # be retried through another upsert (a lookup first, never a blind resend).
            for attempt in range(_CARD_ATTEMPTS):
                try:
                    await self.client.cards.upsert(product_id, shop, count=count, counting_enabled=enabled)
                    break
                except AmbiguousWrite:
                    if attempt == _CARD_ATTEMPTS - 1:
                        raise

    async def update(
        self,
        entity: str,
        remote_id: str,
        payload: Mapping[str, Any],
        children: Mapping[str, list[dict[str, Any]]],
        *,
        version: str | None,
    ) -> Written:
        if payload:
            body = dict(payload)
            required = _REQUIRED_ON_UPDATE.get(entity, ())
            if any(f not in body for f in required):
                held = await self._held_fields(entity, str(remote_id))
                for f in required:
                    if f not in body and held.get(f) is not None:
                        body[f] = held[f]
            await self._res(entity).update(remote_id, body)
            if required:
                held = self._held.setdefault((entity, str(remote_id)), {})
                held.update({f: body[f] for f in required if f in body})
        if entity == "products" and children.get("cards") is not None:
            await self._write_cards(remote_id, children["cards"], new=False)
        return Written(remote_id, None)

    async def _held_fields(self, entity: str, remote_id: str) -> dict[str, Any]:
        """The required fields as the platform holds them: this run's read, else read now (one
        GET each for the first few, then one listing of the entity is cheaper)."""
        held = self._held.get((entity, remote_id))
        if held is None:
            self._held_misses[entity] = self._held_misses.get(entity, 0) + 1
            if self._held_misses[entity] == _FIND_BY_NUMBER_MAX + 1 and entity in ("products", "categories"):
                async for _ in self.list_remote(entity, children=()):
                    pass  # ``_split`` fills the cache
                held = self._held.get((entity, remote_id))
            if held is None:
                await self.get(entity, remote_id)
                held = self._held.get((entity, remote_id))
        return held or {}

    async def delete(self, entity: str, remote_id: str, *, version: str | None) -> None:
        await self._res(entity).delete(remote_id)

    def request_counts(self) -> dict[str, int]:
        """Requests sent through this adapter (a kept client's earlier runs are not counted)."""
        return counts_since(self._counts_before, self.client.counters.snapshot())

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
