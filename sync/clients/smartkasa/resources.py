"""SmartKasa resources: paths, models and the few operations with logic of their own.

Choices where the contract is silent (see also the package's other docstrings):

- Ids are opaque strings in and out (contract §1.1); integer-id fields are converted on
  the wire (``encoding``). ``user_id``/``owner_id`` are never sent (§5.4: fixture wiring).
- Products are updated with PATCH, everything else with PUT (§5.4); the path id is
  authoritative, and the inner ``id`` is sent too, as the Blueprint does (``encoding``).
- Lookups filter on the server *and* again on the client, because whether a filter is
  exact, partial or honoured at all is not stated: ``products.find_by_number`` returns
  every match under ``sync.core.keys.fold`` (barcodes are not unique, §8); ``categories.find`` matches
  ``(title, parent_id)`` case/space-insensitively, so it sends only ``parent_id`` to the
  server (a server-side ``title`` filter may be exact and would hide ``"tea"`` vs ``"Tea"``).
- ``cards.upsert`` lists the cards of ``(product, shop)`` and PUTs the first or POSTs a
  new one; re-running it after an ``AmbiguousWrite`` is safe (it looks up first).
- Batch creates are chunked (``batch_size``) and yield each chunk's ids mapped to its
  inputs. The answer is trusted positionally unless its length differs from the chunk or
  ``verify_batch_order`` is on; then the created records are matched to the inputs by
  natural key (categories from the answer itself, which holds full objects; products by
  reading each id back). A 422/413 raises :class:`BatchChunkRejected` (split and retry);
  a lost or unreadable answer, or an input no created record matches, raises
  :class:`BatchAmbiguous` (look each ``None`` up before any resend). POSTs are never
  resent here; the shared loop decides what is safe.
- ``z_reports.iterate`` sends the cashier filter under both spellings
  (``termianl_user_id`` sic, and ``terminal_user_id``), since which one works is unknown.
  Dates: ``date`` → ``YYYY-MM-DD``; aware ``datetime`` → ISO 8601 with milliseconds and
  its offset (the platform's own format; callers' overlap windows absorb the sub-ms cut);
  a naive ``datetime`` is refused (its zone would be a guess).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from sync import errors as E
from sync.clients.smartkasa import models as M
from sync.clients.smartkasa.batch import CATEGORY_KEYS, PRODUCT_KEYS, KeyFn, field_key, match_ids
from sync.clients.smartkasa.encoding import ids_body
from sync.clients.smartkasa.errors import PLATFORM, BatchAmbiguous, BatchChunkRejected
from sync.clients.smartkasa.pagination import next_page_of
from sync.core.keys import fold

if TYPE_CHECKING:
    from sync.clients.smartkasa.client import SmartKasaClient

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
_NEVER_SEND = frozenset({"user_id", "owner_id"})


def _fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in _NEVER_SEND}


def _pages_left(body: Mapping[str, Any], per_page: int) -> int | None:
    """Pages after the first of a Kaminari list (``meta.total_pages``, else from ``total_count``)."""
    raw = body.get("meta")
    meta: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    for name in ("total_pages", "total_count"):
        value = meta.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            pages = value if name == "total_pages" else -(-value // max(1, per_page))
            return max(0, pages - 1)
    return None


async def _confirmed(records: AsyncIterator[ModelT], keep: Callable[[ModelT], bool]) -> list[ModelT]:
    """The records of a lookup that ``keep`` confirms; an unreadable record is a typed error."""
    try:
        return [r async for r in records if keep(r)]
    except ValidationError as exc:
        raise E.ContractViolation(
            f"a lookup answer holds a record that does not parse ({exc.error_count()} error(s))",
            platform=PLATFORM,
            hint="the record is deferred to the next run; report this platform answer",
        ) from None


def _unparsable(path: str, record: Any, exc: ValidationError) -> E.ContractViolation:
    """A listed record our model refuses: which resource, which record, which field(s)."""
    resource = path.rstrip("/").rsplit("/", 1)[-1]
    ident = record.get("id") if isinstance(record, dict) else None
    fields = sorted({".".join(str(p) for p in err["loc"]) or "(record)" for err in exc.errors()})
    first = exc.errors()[0]
    return E.ContractViolation(
        f"a {resource} record (id {ident}) in a listing does not parse: field(s) {', '.join(fields)} "
        f"({first['msg']})",
        platform=PLATFORM,
        hint="the listing stops here rather than skip the record; report this platform answer",
    )


def _id_of(data: Any) -> str:
    if isinstance(data, dict) and data.get("id") is not None:
        return str(data["id"])
    raise E.ContractViolation("write answer without an id", platform=PLATFORM)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One created chunk: ``ids[i]`` was created for ``items[i]`` (= input ``offset + i``)."""

    offset: int
    items: list[Mapping[str, Any]]
    ids: list[str]
    verified: bool


@dataclass(frozen=True, slots=True)
class CardUpsert:
    id: str
    created: bool


class _Resource(Generic[ModelT]):
    path: str
    model: type[ModelT]

    def __init__(self, api: SmartKasaClient) -> None:
        self._api = api

    async def _iterate(self, params: Mapping[str, Any] | None = None) -> AsyncIterator[ModelT]:
        async for record in self._api.iter_list(self.path, params):
            try:
                yield self.model.model_validate(record)
            except ValidationError as exc:
                # Never skipped: a record missing from a listing could be created twice.
                raise _unparsable(self.path, record, exc) from None

    async def _get(self, ident: str) -> ModelT:
        data = await self._api.get_data(self.path + "/{id}", path_params={"id": str(ident)})
        return self.model.model_validate(data)

    async def _delete(self, ident: str) -> None:
        await self._api.send("DELETE", self.path + "/{id}", path_params={"id": str(ident)})


class UnitTypes(_Resource[M.UnitType]):
    path = "/api/v1/inventory/unit_types"
    model = M.UnitType

    def iterate(self) -> AsyncIterator[M.UnitType]:
        return self._iterate()


class Shops(_Resource[M.Shop]):
    path = "/api/v1/rsn/shops"
    model = M.Shop

    def iterate(self) -> AsyncIterator[M.Shop]:
        return self._iterate()

    async def get(self, shop_id: str) -> M.Shop:
        return await self._get(shop_id)


class Subgroups(_Resource[M.Subgroup]):
    path = "/api/v1/inventory/product_subgroups"
    model = M.Subgroup

    def iterate(self, *, title: str | None = None) -> AsyncIterator[M.Subgroup]:
        return self._iterate({"title": title})

    async def get(self, subgroup_id: str) -> M.Subgroup:
        """By the list's ``id`` filter (§5.3 documents no GET by id), confirmed locally."""
        for sub in await _confirmed(
            self._iterate({"id": str(subgroup_id)}), lambda s: s.id == str(subgroup_id)
        ):
            return sub
        raise E.NotFound(f"subgroup {subgroup_id} not found", status=404, platform=PLATFORM)

    async def create(self, fields: Mapping[str, Any]) -> M.Subgroup:
        data = await self._api.send(
            "POST", self.path, json=self._api.record_body("subgroup", _fields(fields))
        )
        return M.Subgroup.model_validate(data)

    async def update(self, subgroup_id: str, fields: Mapping[str, Any]) -> M.Subgroup:
        body = self._api.record_body("subgroup", _fields(fields), inner_id=str(subgroup_id))
        data = await self._api.send(
            "PUT", self.path + "/{id}", path_params={"id": str(subgroup_id)}, json=body
        )
        return M.Subgroup.model_validate(data)

    async def delete(self, subgroup_id: str) -> None:
        await self._delete(subgroup_id)


class _BatchCreate(_Resource[ModelT]):
    """Chunked batch create with id mapping (see module docstring)."""

    collection: str  # batch collection key
    keys: tuple[KeyFn, ...]
    # A marker field we sent was missing from a record read back: the platform does not keep
    # it, so it cannot find a lost create (the engine then holds such creates for a person).
    marker_lost: bool = False

    async def _get_each(self, ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        gate = asyncio.Semaphore(self._api.settings.read_back_concurrency)

        async def one(ident: str) -> tuple[str, Mapping[str, Any]]:
            async with gate:
                try:
                    data = await self._api.get_data(self.path + "/{id}", path_params={"id": ident})
                except E.NotFound:
                    return ident, {}
                return ident, data if isinstance(data, dict) else {}

        return dict(await asyncio.gather(*(one(i) for i in ids)))

    async def _read_back(self, ids: Sequence[str]) -> list[tuple[str, Mapping[str, Any]]]:
        """The created records, by the cheaper of one GET per id and one listing of the catalog.

        The first list page tells the catalog's size (``meta``); when the remaining pages are
        fewer than the ids still unread, the listing goes on, and whatever it did not show
        (records created meanwhile shift pages: the contract promises no consistency) is read
        by id. Small reads (a few ids) skip the probe.
        """
        wanted = {str(i) for i in ids}
        got: dict[str, Mapping[str, Any]] = {}
        per_page = self._api.settings.per_page
        if len(wanted) > 2:
            page: int | None = 1
            while page is not None:
                body = (
                    await self._api.request("GET", self.path, params={"page": page, "per_page": per_page})
                ).data
                try:
                    after = next_page_of(body, page)
                except E.ContractViolation:
                    if not (isinstance(body, dict) and isinstance(body.get("data"), list)):
                        raise
                    after = None  # a server that ignores ``page``: what the listing missed is read by id
                for rec in body["data"]:
                    if isinstance(rec, dict) and str(rec.get("id")) in wanted:
                        got[str(rec["id"])] = rec
                if page == 1 and after is not None:
                    left = _pages_left(body, per_page)
                    if left is None or left > len(wanted - got.keys()):
                        break
                page = after
        missing = [i for i in ids if str(i) not in got]
        if missing:
            got.update(await self._get_each(missing))
        return [(str(i), got.get(str(i), {})) for i in ids]

    async def _map_chunk(
        self, chunk: list[Mapping[str, Any]], data: Any, marker: str | None, verify: bool | None
    ) -> tuple[list[str | None], list[str], bool]:
        if not isinstance(data, list):
            raise E.ContractViolation("batch answer is not a list", platform=PLATFORM)
        created: list[tuple[str, Mapping[str, Any]]] = [
            (str(e["id"]), e) for e in data if isinstance(e, dict) and e.get("id") is not None
        ]
        trusted = len(created) == len(data) == len(chunk)
        if trusted and not (self._api.settings.verify_batch_order if verify is None else verify):
            return [i for i, _ in created], [], False
        ids, leftovers = await self._match(chunk, created, marker)
        return ids, leftovers, True

    async def verify_created(
        self, items: Sequence[Mapping[str, Any]], ids: Sequence[str], *, marker: str | None = None
    ) -> tuple[list[str | None], list[str]]:
        """Which of ``ids`` (created by earlier batches, answers not trusted) was made for which
        item: one read-back of them all (a listing when cheaper), matched by marker, then keys."""
        return await self._match(list(items), [(str(i), {}) for i in ids], marker)

    async def _match(
        self, chunk: list[Mapping[str, Any]], created: list[tuple[str, Mapping[str, Any]]], marker: str | None
    ) -> tuple[list[str | None], list[str]]:
        keys = self.keys if marker is None else (field_key(marker), *self.keys)
        if any(keys[0](rec) is None for _, rec in created):
            created = await self._read_back([i for i, _ in created])
        read = [rec for _, rec in created if rec]
        sent = any(item.get(marker) not in (None, "") for item in chunk) if marker else False
        if marker is not None and sent and read and all(not rec.get(marker) for rec in read):
            if not self.marker_lost:
                log.error(
                    "smartkasa does not keep %s.%s (read back empty): lost creates of records without "
                    "a natural key cannot be found and will be held for a person",
                    self.collection,
                    marker,
                )
            self.marker_lost = True
        return match_ids(chunk, created, keys)

    async def iter_create_batches(
        self, items: Sequence[Mapping[str, Any]], *, marker: str | None = None, verify: bool | None = None
    ) -> AsyncIterator[BatchResult]:
        """Create ``items`` chunk by chunk, yielding each chunk's mapped ids as it lands.

        ``marker``: a field every item carries with a value unique to it (the ERP key); the
        created records are matched to the items by it first. ``verify=False``: a complete answer
        is mapped by position, for a caller that verifies many batches at once (``verify_created``).
        """
        size = self._api.settings.batch_size
        done: list[str] = []
        url = self._api.base_url + self.path + "/batch"
        for offset in range(0, len(items), size):
            chunk: list[Mapping[str, Any]] = [_fields(item) for item in items[offset : offset + size]]
            try:
                data = await self._api.send(
                    "POST", self.path + "/batch", json=self._api.batch_body(self.collection, chunk)
                )
            except E.BatchRejected as exc:
                raise BatchChunkRejected(exc, chunk=chunk, offset=offset, done=list(done)) from None
            except E.AmbiguousWrite as exc:
                raise BatchAmbiguous(
                    f"batch create of {len(chunk)} {self.collection} may have been applied",
                    chunk=chunk,
                    offset=offset,
                    done=list(done),
                    cause=exc,
                    method="POST",
                    url=url,
                ) from None
            except E.ContractViolation as exc:  # 2xx without the envelope: created, ids unknown
                raise BatchAmbiguous(
                    f"batch create answered without ids: {exc.message}",
                    chunk=chunk,
                    offset=offset,
                    done=list(done),
                    cause=exc,
                    method="POST",
                    url=url,
                ) from None
            try:
                ids, leftovers, verified = await self._map_chunk(chunk, data, marker, verify)
            except E.ClientError as exc:
                raise BatchAmbiguous(
                    f"batch of {len(chunk)} {self.collection} created but its ids could not be mapped: {exc}",
                    chunk=chunk,
                    offset=offset,
                    done=list(done),
                    cause=exc,
                    method="POST",
                    url=url,
                ) from None
            if leftovers:
                log.warning(
                    "smartkasa batch created %d %s matching no input", len(leftovers), self.collection
                )
            if any(i is None for i in ids):
                error = BatchAmbiguous(
                    f"{sum(i is None for i in ids)} of {len(chunk)} {self.collection} have no confirmed id",
                    chunk=chunk,
                    offset=offset,
                    done=list(done),
                    ids=ids,
                    unmatched_ids=leftovers,
                    method="POST",
                    url=url,
                )
                raise error
            confirmed = [i for i in ids if i is not None]
            done.extend(confirmed)
            yield BatchResult(offset=offset, items=chunk, ids=confirmed, verified=verified)

    async def create_many(
        self, items: Sequence[Mapping[str, Any]], *, marker: str | None = None, verify: bool | None = None
    ) -> list[str]:
        """Ids of the created records, in input order (errors carry ``done`` for earlier chunks)."""
        out: list[str] = []
        async for result in self.iter_create_batches(items, marker=marker, verify=verify):
            out.extend(result.ids)
        return out

    async def delete_many(self, ids: Sequence[str]) -> None:
        body = ids_body(ids, self._api.settings.body_style)
        await self._api.send("DELETE", self.path + "/batch", json=body)


class Categories(_BatchCreate[M.Category]):
    path = "/api/v1/inventory/categories"
    model = M.Category
    collection = "categories"
    keys = CATEGORY_KEYS

    def iterate(self, *, title: str | None = None, parent_id: str | None = None) -> AsyncIterator[M.Category]:
        return self._iterate({"title": title, "parent_id": parent_id})

    async def find(self, title: str, parent_id: str | None = None) -> list[M.Category]:
        """Categories titled ``title`` (case/space-insensitive) directly under ``parent_id``.

        Sends only ``parent_id`` (a listed parameter, §5.2) and confirms every hit locally,
        so a server that ignores the filter never yields a category from another parent."""
        want = fold(title)
        if want is None:
            return []
        parent = None if parent_id in (None, "") else str(parent_id)
        return await _confirmed(
            self.iterate(parent_id=parent), lambda c: fold(c.title) == want and c.parent_id == parent
        )

    async def get(self, category_id: str) -> M.Category:
        return await self._get(category_id)

    async def create(self, fields: Mapping[str, Any]) -> M.Category:
        data = await self._api.send(
            "POST", self.path, json=self._api.record_body("category", _fields(fields))
        )
        return M.Category.model_validate(data)

    async def update(self, category_id: str, fields: Mapping[str, Any]) -> M.Category:
        body = self._api.record_body("category", _fields(fields), inner_id=str(category_id))
        data = await self._api.send(
            "PUT", self.path + "/{id}", path_params={"id": str(category_id)}, json=body
        )
        return M.Category.model_validate(data)

    async def delete(self, category_id: str) -> None:
        await self._delete(category_id)


class Products(_BatchCreate[M.Product]):
    path = "/api/v1/inventory/products"
    model = M.Product
    collection = "products"
    keys = PRODUCT_KEYS

    def iterate(
        self,
        *,
        q: str | None = None,
        number: str | None = None,
        category_id: str | None = None,
        subgroup_id: str | None = None,
        shop_id: str | None = None,
    ) -> AsyncIterator[M.Product]:
        params = {
            "q": q,
            "number": number,
            "category_id": category_id,
            "subgroup_id": subgroup_id,
            "shop_id": shop_id,
        }
        return self._iterate(params)

    async def get(self, product_id: str) -> M.Product:
        return await self._get(product_id)

    async def find_by_number(self, number: str) -> list[M.Product]:
        """Every product whose barcode equals ``number`` as natural keys compare (``fold``:
        case and spaces ignored); several are possible. Sends the documented ``number``
        filter (§5.4) and confirms each hit locally, whether the server matched exactly,
        partially or not at all."""
        want = fold(number)
        if want is None:
            return []
        return await _confirmed(self.iterate(number=number.strip()), lambda p: fold(p.number) == want)

    async def create(self, fields: Mapping[str, Any]) -> str:
        data = await self._api.send("POST", self.path, json=self._api.record_body("product", _fields(fields)))
        return _id_of(data)

    async def update(self, product_id: str, fields: Mapping[str, Any]) -> str:
        body = self._api.record_body("product", _fields(fields), inner_id=str(product_id))
        data = await self._api.send(
            "PATCH", self.path + "/{id}", path_params={"id": str(product_id)}, json=body
        )
        return _id_of(data) if data is not None else str(product_id)

    async def delete(self, product_id: str) -> None:
        await self._delete(product_id)


class Cards(_Resource[M.Card]):
    path = "/api/v1/inventory/cards"
    model = M.Card

    def iterate(self, *, product_id: str | None = None, shop_id: str | None = None) -> AsyncIterator[M.Card]:
        return self._iterate({"product_id": product_id, "shop_id": shop_id})

    async def get(self, card_id: str) -> M.Card:
        return await self._get(card_id)

    async def create(self, fields: Mapping[str, Any]) -> str:
        """POST a card. A 422 ``product_id`` (the contract's only card error example, §5.5: a
        missing product, someone else's, *or a duplicate card*, cause unknown) or a duplicate
        answer is resolved by one lookup of ``(product, shop)``: a card found there is updated
        (PUT) instead, as a card created by the platform itself (one per shop) would need."""
        try:
            data = await self._api.send(
                "POST", self.path, json=self._api.record_body("card", _fields(fields))
            )
        except (E.Duplicate, E.Unprocessable) as exc:
            duplicate = isinstance(exc, E.Duplicate) and exc.field in (None, "product_id")
            if not (duplicate or exc.field == "product_id") or fields.get("shop_id") is None:
                raise
            existing = await self._find(str(fields.get("product_id")), str(fields.get("shop_id")))
            if not existing:
                raise
            log.info("smartkasa refused a second card for one (product, shop); updating the existing one")
            return await self.update(existing[0].id, fields)
        return _id_of(data)

    async def _find(self, product_id: str, shop_id: str) -> list[M.Card]:
        return [
            c
            async for c in self.iterate(product_id=product_id, shop_id=shop_id)
            if c.product_id == product_id and c.shop_id == shop_id
        ]

    async def update(self, card_id: str, fields: Mapping[str, Any]) -> str:
        body = self._api.record_body("card", _fields(fields), inner_id=str(card_id))
        data = await self._api.send("PUT", self.path + "/{id}", path_params={"id": str(card_id)}, json=body)
        return _id_of(data) if data is not None else str(card_id)

    async def delete(self, card_id: str) -> None:
        await self._delete(card_id)

    async def upsert(
        self, product_id: str, shop_id: str, *, count: Decimal | int, counting_enabled: bool | None = None
    ) -> CardUpsert:
        """Set the absolute stock ``count`` of ``(product, shop)``: PUT the card, or POST one."""
        fields: dict[str, Any] = {"product_id": str(product_id), "shop_id": str(shop_id), "count": count}
        if counting_enabled is not None:
            fields["counting_enabled"] = counting_enabled
        existing = await self._find(str(product_id), str(shop_id))
        if existing:
            if len(existing) > 1:
                log.warning(
                    "smartkasa has %d cards for one (product, shop); updating the first", len(existing)
                )
            return CardUpsert(await self.update(existing[0].id, fields), created=False)
        return CardUpsert(await self.create(fields), created=True)


class Shifts(_Resource[M.Shift]):
    path = "/api/v1/pos/shifts"
    model = M.Shift

    def iterate(self, **filters: Any) -> AsyncIterator[M.Shift]:
        return self._iterate(filters)

    async def get(self, shift_id: str) -> M.Shift:
        return await self._get(shift_id)


class Receipts(_Resource[M.Receipt]):
    """The list embeds ``payment_transactions``; a single GET does not (contract §6.2)."""

    path = "/api/v1/pos/receipts"
    model = M.Receipt

    def iterate(
        self, *, shift_id: str | None = None, shop_id: str | None = None, **filters: Any
    ) -> AsyncIterator[M.Receipt]:
        return self._iterate({"shift_id": shift_id, "shop_id": shop_id, **filters})

    async def get(self, receipt_id: str) -> M.Receipt:
        return await self._get(receipt_id)


def _date_param(value: dt.date | dt.datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("z-report date filters need an aware datetime (or a date)")
        return value.isoformat(timespec="milliseconds")
    return value.isoformat()


class ZReports(_Resource[M.ZReport]):
    path = "/api/v1/reports/z-reports"
    model = M.ZReport

    def iterate(
        self,
        *,
        date_start: dt.date | dt.datetime | str | None = None,
        date_end: dt.date | dt.datetime | str | None = None,
        shop_id: str | None = None,
        terminal_id: str | None = None,
        terminal_user_id: str | None = None,
    ) -> AsyncIterator[M.ZReport]:
        params = {
            "date_start": _date_param(date_start),
            "date_end": _date_param(date_end),
            "shop_id": shop_id,
            "terminal_id": terminal_id,
            "termianl_user_id": terminal_user_id,
            "terminal_user_id": terminal_user_id,
        }
        return self._iterate(params)


class PaymentTransactions(_Resource[M.PaymentTransaction]):
    """No list endpoint: transaction ids come from the receipt list."""

    path = "/api/v1/pos/payment_transactions"
    model = M.PaymentTransaction

    async def get(self, transaction_id: str) -> M.PaymentTransaction:
        return await self._get(transaction_id)
