"""SmartEPI resources: declarations (path, model, filters) and the operations on them.

A ``ResourceSpec`` only declares; ``Resource`` turns a spec into calls on the client's
request loop, which owns auth, retries, governor, redaction and counting.

Contract rules enforced *before* sending (``ContractViolation``, no request made):

- filters must be ones the resource declares (a typo'd filter would silently list
  everything, which is dangerous for lookups);
- at most one relationship filter per list request (smartepi.md §0);
- a transaction time window (``createdSince``/``createdUntil``) never combined with a
  relationship filter; windows are ISO-8601 UTC, since inclusive, until exclusive;
- ``limit`` in 1..100; writes only on writable resources, get-by-id only where it
  exists (transactions are list-only); write bodies validated against §5.5 (unknown
  field, wrong type, missing ``name`` on create); read-only fields are dropped.

Pagination: ``limit=100``, the opaque cursor is sent back unchanged, ``null`` or ``""``
ends the list, a cursor seen before raises ``ContractViolation`` (a server loop would
otherwise page forever). Records are yielded lazily as plain dicts.

Versions: every single-record response's ETag is remembered per record (bounded LRU);
``update``/``delete`` send ``If-Match`` with the caller's ETag or else the last one
read. ``update_or_reread``/``delete_or_reread`` turn a stale 409 into a fresh read
handed back to the caller, who re-applies its change on the fresh record.

Natural-key lookups (design §3): ``find_by_name`` sends the leading word of the name
as the (case-insensitive prefix) ``name`` filter and keeps exact matches under
``sync.core.keys.fold``; the leading word, not the whole name, so a remote name with
different inner spacing still comes back. Employees also have ``find_by_identification``
(the documented ``identification`` search; the sandbox serves it as an exact,
case-insensitive match, so a value formatted differently, "123.456.789-00" vs
"12345678900", is found by the client-side ``fold_identification`` only when the server
returned it) and ``find_by_email``, which sends no ``email`` filter (none is documented).
Only documented filters are ever sent, and every hit is re-checked locally on the folded
natural key: a server that ignores a filter returns everything, never a wrong match.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from sync.clients.smartepi import models as m
from sync.core.keys import fold, fold_email, fold_identification, key_values
from sync.errors import BadRequest, ContractViolation, Duplicate, StaleVersion

if TYPE_CHECKING:
    from sync.clients.smartepi.client import SmartEPIClient

MAX_LIMIT = 100
Records = list[dict[str, Any]]
WINDOW_FILTERS = frozenset({"createdSince", "createdUntil"})
PREFIX_FILTERS = frozenset({"name", "code"})  # case-insensitive begins-with (§2.4 B)
_TX_RELATIONS = frozenset({"employeeId", "productId", "costCenterId", "sectorId"})


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    name: str
    path: str
    model: type[BaseModel]
    fields: type[BaseModel] | None = None  # write model; None = read-only (writes are 405)
    gettable: bool = True  # transactions are list-only
    filters: frozenset[str] = frozenset({"name"})
    relationship_filters: frozenset[str] = frozenset()
    windowed: bool = False
    required_on_create: tuple[str, ...] = ("name",)

    @property
    def writable(self) -> bool:
        return self.fields is not None

    def search_for(self, field: str, value: str) -> dict[str, Any] | None:
        """The documented filter that can find ``field == value``, or None (page through all).

        ``name``/``code`` are case-insensitive prefix filters (§2.4 B): the leading word is
        sent, so a remote value with other inner spacing still comes back; any other
        documented search (``identification``) gets the trimmed value.
        """
        if field not in self.filters or not value.strip():
            return None
        if field in PREFIX_FILTERS:
            return {field: value.strip().split()[0]}
        return {field: value.strip()}


def _org(name: str, model: type[BaseModel], fields: type[BaseModel], **kw: Any) -> ResourceSpec:
    return ResourceSpec(name, f"/{name}", model, fields, **kw)


def _tx(name: str, model: type[BaseModel], relations: frozenset[str] = _TX_RELATIONS) -> ResourceSpec:
    return ResourceSpec(
        name,
        f"/{name}",
        model,
        None,
        gettable=False,
        filters=frozenset(),
        relationship_filters=relations,
        windowed=True,
    )


SPECS: dict[str, ResourceSpec] = {
    s.name: s
    for s in (
        _org("sectors", m.Sector, m.SectorFields),
        _org("cost-centers", m.CostCenter, m.CostCenterFields, filters=frozenset({"name", "code"})),
        _org("job-roles", m.JobRole, m.JobRoleFields),
        _org("groups", m.Group, m.GroupFields),
        # read-only; whether GET /access-groups/:id exists is undocumented (§3.7): list only
        ResourceSpec("access-groups", "/access-groups", m.AccessGroup, None, gettable=False),
        _org(
            "employees",
            m.Employee,
            m.EmployeeFields,
            filters=frozenset({"name", "identification"}),  # no e-mail search is documented
            relationship_filters=frozenset({"sectorId", "costCenterId", "jobRoleId", "groupId"}),
        ),
        _org("products", m.Product, m.ProductFields),
        _tx("withdrawals", m.Withdrawal),
        _tx("returns", m.Return),
        _tx("exchanges", m.Exchange),
        _tx("training-records", m.TrainingRecord, frozenset({"employeeId"})),
    )
}


@dataclass(frozen=True, slots=True)
class Versioned:
    """One record and its version (the ETag header, e.g. ``'"5"'``)."""

    record: dict[str, Any]
    etag: str | None


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """Result of a write that may have met a stale version.

    ``applied`` false means the write was refused as stale and ``record``/``etag`` are the
    fresh server state: re-apply the change on it and retry.
    """

    applied: bool
    record: dict[str, Any]
    etag: str | None


def format_instant(value: dt.datetime | dt.date | str, *, round_up: bool = False) -> str:
    """A time-window bound as ISO-8601 UTC with at most millisecond precision:
    ``2025-01-31T12:00:00Z`` or ``2025-01-31T12:00:00.123Z``; a naive value is taken as UTC.

    The format is undocumented (contract §3.8); milliseconds are what a JavaScript or DynamoDB
    backend produces and validates (``toISOString``), microseconds may be refused with 400.
    Sub-millisecond parts are dropped for a lower bound and rounded up for an upper bound
    (``round_up``): since is inclusive and until exclusive, so the window can only grow, and a
    record read twice is absorbed by the upsert by remote id. A string is parsed and written
    out the same way (an unreadable one is refused before sending)."""
    if isinstance(value, str):
        text = value
        try:
            value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ContractViolation(
                f"not an ISO-8601 date-time: {text[:40]!r}", platform="smartepi", hint="no request was sent"
            ) from None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    extra = value.microsecond % 1000
    if extra:
        value -= dt.timedelta(microseconds=extra)
        if round_up:
            value += dt.timedelta(milliseconds=1)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


_DELETED_MARKS = ("deleted", "deletedAt", "isDeleted")
_FALSE_TEXT = frozenset({"", "false", "0", "no", "null", "none"})


def is_deleted(record: Any) -> bool:
    """Whether a list item says it is soft-deleted: ``deleted``/``isDeleted`` true (or a
    true-looking string), or any ``deletedAt`` value (a timestamp)."""
    if not isinstance(record, dict):
        return False
    for mark in _DELETED_MARKS:
        value = record.get(mark)
        if value is None or value is False:
            continue
        if isinstance(value, str):
            if value.strip().lower() not in _FALSE_TEXT:
                return True
        elif value:
            return True
    return False


def check_list_params(spec: ResourceSpec, filters: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """Validate one list request against the contract; returns the query (None values dropped)."""
    query = {k: v for k, v in filters.items() if v is not None}
    allowed = spec.filters | spec.relationship_filters | (WINDOW_FILTERS if spec.windowed else frozenset())
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ContractViolation(
            f"{spec.name}: unsupported list filter(s) {', '.join(unknown)}"
            f"; allowed: {', '.join(sorted(allowed))}",
            platform="smartepi",
            hint="fix the caller; no request was sent",
        )
    relations = sorted(set(query) & spec.relationship_filters)
    if len(relations) > 1:
        raise ContractViolation(
            f"{spec.name}: at most one relationship filter per request, got {', '.join(relations)}",
            platform="smartepi",
            hint="filter by one relationship and narrow the rest on the client; no request was sent",
        )
    windows = set(query) & WINDOW_FILTERS
    if relations and windows:
        raise ContractViolation(
            f"{spec.name}: a time window cannot be combined with relationship filter {relations[0]}",
            platform="smartepi",
            hint="list by time window alone and filter on the client; no request was sent",
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ContractViolation(
            f"limit must be an integer in 1..{MAX_LIMIT}, got {limit!r}", platform="smartepi"
        )
    for key in windows:
        query[key] = format_instant(query[key], round_up=key == "createdUntil")
    query["limit"] = limit
    return query


def prepare_payload(spec: ResourceSpec, fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The JSON body of a create or partial update, validated against §5.5."""
    if spec.fields is None:
        raise ContractViolation(f"{spec.name} is read-only", platform="smartepi", hint="no request was sent")
    body = {k: v for k, v in fields.items() if k not in m.READ_ONLY_FIELDS}
    try:
        model = spec.fields.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
        raise ContractViolation(
            f"{spec.name}: invalid payload ({problems})",
            platform="smartepi",
            hint="fix the mapping; no request was sent",
        ) from None
    payload = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if creating:
        missing = [f for f in spec.required_on_create if payload.get(f) in (None, "")]
        if missing:
            raise ContractViolation(
                f"{spec.name}: create needs {', '.join(missing)}",
                platform="smartepi",
                hint="no request was sent",
            )
    return payload


def quote_etag(etag: str | int) -> str:
    text = str(etag).strip()
    if text.startswith("W/"):
        text = text[2:]
    return text if text.startswith('"') else f'"{text}"'


class ETagCache:
    """Last version seen per (resource, id); bounded so a full listing cannot grow it forever."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._data: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, resource: str, ident: str) -> str | None:
        return self._data.get((resource, ident))

    def put(self, resource: str, ident: str, etag: str | None) -> None:
        if etag is None:
            return
        key = (resource, ident)
        self._data[key] = etag
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def drop(self, resource: str, ident: str) -> None:
        self._data.pop((resource, ident), None)


class Resource:
    """Operations on one SmartEPI resource, bound to a client."""

    def __init__(self, client: SmartEPIClient, spec: ResourceSpec) -> None:
        self.client = client
        self.spec = spec
        self._item = spec.path + "/{id}"

    def __repr__(self) -> str:
        return f"Resource({self.spec.name!r})"

    # --- reads -------------------------------------------------------------------------

    async def pages(self, *, limit: int = MAX_LIMIT, **filters: Any) -> AsyncIterator[Records]:
        """Pages of records, following the cursor until it is null."""
        query = check_list_params(self.spec, filters, limit)
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            params = dict(query)
            if cursor is not None:
                params["cursor"] = cursor
            response = await self.client.request("GET", self.spec.path, params=params)
            body = response.data if isinstance(response.data, dict) else {}
            data = body.get("data")
            if not isinstance(data, list):
                raise ContractViolation(
                    f"{self.spec.name}: list response without a data array",
                    platform="smartepi",
                    method="GET",
                    url=self.spec.path,
                )
            yield data
            nxt = body.get("cursor")
            if nxt is None or nxt == "":
                return
            if not isinstance(nxt, str) or nxt in seen:
                raise ContractViolation(
                    f"{self.spec.name}: the server repeated a pagination cursor"
                    f" (request_id={response.request_id})",
                    platform="smartepi",
                    method="GET",
                    url=self.spec.path,
                )
            seen.add(nxt)
            cursor = nxt

    async def list(self, *, limit: int = MAX_LIMIT, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every live record matching ``filters``, lazily (``limit`` is the page size).

        Whether soft-deleted records appear in lists is undocumented (§2.6, §5.3): an item
        marked deleted (a truthy ``deleted``, ``deletedAt`` or ``isDeleted``) is left out, so
        it is never adopted, matched as a duplicate or diffed (``pages`` keeps every item)."""
        async for page in self.pages(limit=limit, **filters):
            for record in page:
                if not is_deleted(record):
                    yield record

    async def get(self, ident: str) -> Versioned:
        if not self.spec.gettable:
            raise ContractViolation(
                f"{self.spec.name} are list-only (GET by id is 405)",
                platform="smartepi",
                hint="no request was sent",
            )
        return self._versioned(await self.client.request("GET", self._item, path_params={"id": ident}), ident)

    # --- writes ------------------------------------------------------------------------

    async def create(self, fields: Mapping[str, Any]) -> Versioned:
        """POST: never retried by the client; may raise ``AmbiguousWrite`` (resolve by lookup)."""
        payload = prepare_payload(self.spec, fields, creating=True)
        return self._versioned(await self.client.request("POST", self.spec.path, json=payload))

    async def update(
        self, ident: str, fields: Mapping[str, Any], *, etag: str | int | None = None
    ) -> Versioned:
        """Partial PUT with ``If-Match``; a stale version raises ``StaleVersion``."""
        payload = prepare_payload(self.spec, fields, creating=False)
        headers = {"If-Match": self._if_match(ident, etag)}
        response = await self.client.request(
            "PUT", self._item, path_params={"id": ident}, json=payload, headers=headers
        )
        return self._versioned(response, ident)

    async def delete(self, ident: str, *, etag: str | int | None = None) -> Versioned:
        """Soft delete with ``If-Match``; returns the deleted record."""
        if not self.spec.writable:
            raise ContractViolation(
                f"{self.spec.name} is read-only", platform="smartepi", hint="no request was sent"
            )
        headers = {"If-Match": self._if_match(ident, etag)}
        response = await self.client.request("DELETE", self._item, path_params={"id": ident}, headers=headers)
        out = self._versioned(response, ident)
        self.client.etags.drop(self.spec.name, ident)
        return out

    async def update_or_reread(
        self, ident: str, fields: Mapping[str, Any], *, etag: str | int | None = None
    ) -> WriteOutcome:
        """``update``, but a stale 409 re-reads and hands back the fresh record and ETag."""
        try:
            done = await self.update(ident, fields, etag=etag)
        except StaleVersion:
            fresh = await self.get(ident)
            return WriteOutcome(False, fresh.record, fresh.etag)
        return WriteOutcome(True, done.record, done.etag)

    async def delete_or_reread(self, ident: str, *, etag: str | int | None = None) -> WriteOutcome:
        try:
            done = await self.delete(ident, etag=etag)
        except StaleVersion:
            fresh = await self.get(ident)
            return WriteOutcome(False, fresh.record, fresh.etag)
        return WriteOutcome(True, done.record, done.etag)

    # --- natural keys ------------------------------------------------------------------

    async def find_by_name(self, name: str) -> Records:
        """Records whose name equals ``name`` under ``fold`` (usually zero or one)."""
        target = fold(name)
        if target is None:
            return []
        prefix = name.strip().split()[0]
        return [r async for r in self.list(name=prefix) if _folded(r, "name", fold) == target]

    async def find_by_key(self, keys: Mapping[str, Any]) -> Records:
        """Records matching any of ``keys`` (natural-key field -> value, in priority order).

        Each field is searched with a documented filter where one exists (``search_for``)
        and the hits are kept only when the folded field equals the folded value (the
        folding of ``sync.core.keys``), so a server that ignores or loosens a filter never
        yields another record. Fields with no documented filter are matched on one full
        listing (newest first), tried after the searchable ones. The first field that
        matches anything wins, as in ``KeyIndex.find``.
        """
        wanted = [(f, str(v), t) for f, v in keys.items() if v is not None and (t := key_of(f, v))]
        listed: list[tuple[str, str, str]] = []
        for field, value, target in wanted:
            found = await self._search_key(field, value, target)
            if found is None:
                listed.append((field, value, target))
            elif found:
                return found
        if not listed:
            return []
        hits: list[Records] = [[] for _ in listed]
        async for r in self.list():
            if isinstance(r, dict):
                for i, (field, _value, target) in enumerate(listed):
                    if key_of(field, r.get(field)) == target:
                        hits[i].append(r)
        return next((found for found in hits if found), [])

    async def _search_key(self, field: str, value: str, target: str) -> Records | None:
        """Confirmed hits of the documented search for one key field; None: no such search."""
        search = self.spec.search_for(field, value)
        if search is None:
            return None
        found = [
            r async for r in self.list(**search) if _folded(r, field, lambda v: key_of(field, v)) == target
        ]
        if found or field not in PREFIX_FILTERS:
            return found
        # The prefix semantics are revision B's (§2.4); revision A is silent, and a server
        # matching the whole value (exact or contains) finds nothing for the leading word.
        # Ask once more with the whole trimmed value, then match on the full listing (None):
        # this runs only on the lookup paths (after a 409 or an ambiguous create).
        whole: Any = value.strip()
        if whole != search[field]:
            found = [
                r
                async for r in self.list(**{field: whole})
                if _folded(r, field, lambda v: key_of(field, v)) == target
            ]
        return found or None

    # --- helpers -----------------------------------------------------------------------

    def _if_match(self, ident: str, etag: str | int | None) -> str:
        known = etag if etag is not None else self.client.etags.get(self.spec.name, ident)
        if known is None:
            raise ContractViolation(
                f"{self.spec.name}/{ident}: no version known for If-Match",
                platform="smartepi",
                hint="read the record first (get) or pass etag=; no request was sent",
            )
        return quote_etag(known)

    def _versioned(self, response: Any, ident: str | None = None) -> Versioned:
        body = response.data if isinstance(response.data, dict) else {}
        record = body.get("data")
        if not isinstance(record, dict):
            raise ContractViolation(
                f"{self.spec.name}: response without a data object (request_id={response.request_id})",
                platform="smartepi",
            )
        key = ident or record.get("id")
        if isinstance(key, str):
            self.client.etags.put(self.spec.name, key, response.etag)
        return Versioned(record, response.etag)


def key_of(field: str, value: Any) -> str | None:
    """``value`` folded as ``sync.core.keys`` folds natural-key field ``field``."""
    found = key_values({field: value}, (field,))
    return found[0][1] if found else None


def _folded(record: Any, field: str, folder: Any) -> str | None:
    """``folder(record[field])``, or None for a record that is not an object (never a crash)."""
    return folder(record.get(field)) if isinstance(record, dict) else None


class Employees(Resource):
    """Employees add lookups by identification and email (design §3: tried in that order).

    The contract documents an ``identification`` search and a ``name`` prefix search on
    employees, no e-mail search (smartepi.md §0, §3.1), so an e-mail is found by a name
    search compared on e-mail locally when the caller knows the name, else by paging
    through every employee. Every hit is confirmed locally on the folded key, so a
    server that ignores a filter (and returns everyone) never yields a wrong record.

    The name of every employee this client POSTs is remembered by e-mail (bounded), so the
    lookup that resolves an ambiguous create (which knows only the natural key) is one
    name search, not a full listing.
    """

    NAMES_KEPT = 50_000

    def __init__(self, client: SmartEPIClient, spec: ResourceSpec) -> None:
        super().__init__(client, spec)
        self._names: OrderedDict[str, str] = OrderedDict()  # folded e-mail -> name sent

    def remember_name(self, email: Any, name: Any) -> None:
        target = fold_email(email)
        if target is None or not isinstance(name, str) or not name.strip():
            return
        self._names[target] = name
        self._names.move_to_end(target)
        while len(self._names) > self.NAMES_KEPT:
            self._names.popitem(last=False)

    async def create(self, fields: Mapping[str, Any]) -> Versioned:
        self.remember_name(fields.get("email"), fields.get("name"))
        try:
            return await super().create(fields)
        except Duplicate:
            # The e-mail (or identification) belongs to someone else, whose name we do not
            # know: the lookup that follows must page through everyone.
            self._names.pop(fold_email(fields.get("email")) or "", None)
            raise

    async def _search_key(self, field: str, value: str, target: str) -> Records | None:
        """E-mail: a name search when this client POSTed that e-mail, else the full listing.

        The name search is taken as the answer (no listing after it): it resolves our own
        ambiguous create, whose record carries the name we sent. Should a person have
        renamed it meanwhile, the resend collides on the unique e-mail (409, contract §0),
        which forgets the name, and the lookup after the 409 pages through everyone.
        """
        if field == "identification":
            return await self._search_identification(value, target)
        if field != "email":
            return await super()._search_key(field, value, target)
        name = self._names.get(target)
        if name is None:
            return None  # matched on the full listing
        word = name.split()[0]
        return [r async for r in self.list(name=word) if _folded(r, "email", fold_email) == target]

    async def _search_identification(self, value: str, target: str) -> Records | None:
        """Confirmed hits of the ``identification`` search; None (match on the full listing)
        when it finds nothing or is refused with 400.

        The filter is only inferred (§3.1) and the stored format is undocumented: a server
        may match the exact text ("123.456.789-00" vs "12345678900") or reject the parameter.
        This runs only on the lookup paths (after a 409 or an ambiguous create), so the full
        listing compared with ``fold_identification`` is affordable there."""
        try:
            found = await super()._search_key("identification", value, target)
        except BadRequest:
            return None
        return found or None

    async def find_by_identification(self, identification: str) -> Records:
        target = fold_identification(identification)
        if target is None:
            return []
        found = await self._search_identification(identification, target)
        if found is not None:
            return found
        return [r async for r in self.list() if _folded(r, "identification", fold_identification) == target]

    async def find_by_email(self, email: str, *, name: str | None = None) -> Records:
        """Employees whose e-mail equals ``email`` (folded); ``name`` narrows the search.

        With a name: one ``name`` prefix search (its leading word), matched on e-mail.
        Nothing there (or no name): the whole list, newest first, matched on e-mail;
        it costs a page per 100 employees but is the only documented way to be sure.
        """
        target = fold_email(email)
        if target is None:
            return []
        if not (isinstance(name, str) and name.strip()):
            name = self._names.get(target)
        word = name.strip().split()[0] if isinstance(name, str) and name.strip() else None
        if word is not None:
            found = [r async for r in self.list(name=word) if _folded(r, "email", fold_email) == target]
            if found:
                return found
        return [r async for r in self.list() if _folded(r, "email", fold_email) == target]

    async def find_by_natural_key(self, fields: Mapping[str, Any]) -> Records:
        """Matches on the first key the record has: identification, then email.

        ``fields`` may also hold the employee's ``name``, used only to narrow an e-mail
        search (it is not a key: two people may share a name).
        """
        identification = fields.get("identification")
        if identification:
            found = await self.find_by_identification(str(identification))
            if found:
                return found
        email = fields.get("email")
        if email:
            name = fields.get("name")
            return await self.find_by_email(str(email), name=str(name) if name else None)
        return []
