"""In-memory, multi-tenant state of the SmartEPI sandbox, with the indexes lists need.

Why the indexes: the benchmarks need ≥1,000 list/create requests/s, so no hot path
scans a table. Each table keeps, for live records only:

- ``by_created``: sorted ``(created_us, seq)``: newest-first lists and time windows;
- ``rel[field][value]``: the same, per relationship-filter value (one index per filter,
  which is why the real API allows only one relationship filter per request);
- ``sorted_by[field]``: sorted ``(casefolded value, seq)`` for the name/code prefix
  filters (ascending order, begins-with);
- ``unique[field]``: casefolded, trimmed value -> id for duplicate checks and the
  exact ``identification`` filter.

Cursors are urlsafe base64 JSON ``{"PK": tenant, "SK": "<resource>#<mode>", "Q": <query
fingerprint>, "K": <last key>}`` (mimicking the DynamoDB-style cursor of the portal);
a cursor that does not decode, or belongs to another tenant, resource or filter set, is
a 400. Paging resumes after the last key returned, so records created between pages
never shift a page and a page is never followed by an empty one.

Assumptions where the contract is silent:
- State lives in memory only (no SQLite); ``dump`` gives everything, deleted included.
- Soft-deleted records are absent from lists, 404 by id, and free their unique keys.
- References must point at live records of the same tenant (else 422). Only live
  employees block deletes of the org entities they reference (``resource_in_use``);
  transactions are history and block nothing.
- Accepted list parameters come from the one table in ``params.py`` (the contract's);
  ``email`` is not among them (the contract documents no e-mail search).
- The ``identification`` filter is an exact (case-insensitive, trimmed) lookup;
  ``name`` and ``code`` are prefix filters and at most one of them per request.
- Blank identification/email are stored but are not unique keys.
- A nested entry sent with an unknown ``id`` is a 422 ``invalid_reference`` naming it.
- A PUT that changes nothing keeps the version and ``updatedAt``.
- If-Match and ``_version`` may both be sent; each must equal the current version.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync.sandbox.smartepi.params import FilterMode, accepted_params, documented
from sync.sandbox.smartepi.problems import ApiError, bad_request, not_found
from sync.sandbox.smartepi.schema import (
    SPECS,
    EntitySpec,
    normalize_key,
    parse_datetime,
    validate_children,
    validate_fields,
)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
TIME_WINDOW = ("createdSince", "createdUntil")


def iso_from_us(us: int) -> str:
    stamp = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")


def us_from_iso(value: str, where: str) -> int:
    parsed = parse_datetime(value, where)
    return (parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


# A time-window bound (contract §3.8: format undocumented, "erpsync assumes ISO-8601 UTC"): the
# sandbox is as strict as a simulator could fairly be: extended format, seconds present, at most
# 6 fractional digits, and UTC spelled ``Z`` or ``+00:00``. Date-only, naive, other offsets,
# basic format and week dates are 400.
# ``window_fraction_digits`` (config) lowers the 6 to mimic a millisecond (3) or seconds (0) API.
_WINDOW_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d{1,6}))?(?:Z|\+00:00)$")


def us_from_window(value: str, where: str, fraction_digits: int = 6) -> int:
    match = _WINDOW_INSTANT.match(value)
    if not match or len(match.group(1) or "") > fraction_digits:
        raise bad_request(f"{where}: expected an ISO-8601 UTC date-time such as 2025-01-31T12:00:00.000Z")
    return us_from_iso(value, where)


@dataclass(slots=True)
class Record:
    id: str
    seq: int
    created_us: int
    updated_us: int
    version: int
    data: dict[str, Any]
    deleted: bool = False

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _insert(lst: list[Any], key: Any) -> None:
    if not lst or key > lst[-1]:
        lst.append(key)
    else:
        bisect.insort(lst, key)


def _remove(lst: list[Any], key: Any) -> None:
    i = bisect.bisect_left(lst, key)
    if i < len(lst) and lst[i] == key:
        del lst[i]


class Table:
    """One resource of one tenant, with the indexes described in the module docstring."""

    def __init__(self, spec: EntitySpec) -> None:
        self.spec = spec
        self.records: dict[str, Record] = {}
        self.by_seq: dict[int, Record] = {}
        self.by_created: list[tuple[int, int]] = []
        self.rel: dict[str, dict[str, list[tuple[int, int]]]] = {f: {} for f in spec.relationship_filters}
        self.sorted_by: dict[str, list[tuple[str, int]]] = {f: [] for f in spec.prefix_filters}
        self.unique: dict[str, dict[str, str]] = {f: {} for f in spec.unique_fields}

    def live(self, record_id: str) -> Record | None:
        rec = self.records.get(record_id)
        return None if rec is None or rec.deleted else rec

    def index(self, rec: Record) -> None:
        key = (rec.created_us, rec.seq)
        _insert(self.by_created, key)
        for name, by_value in self.rel.items():
            value = rec.data.get(name)
            if value is not None:
                _insert(by_value.setdefault(value, []), key)
        for name, lst in self.sorted_by.items():
            value = rec.data.get(name)
            if isinstance(value, str):
                _insert(lst, (normalize_key(value), rec.seq))
        for name, by_norm in self.unique.items():
            value = rec.data.get(name)
            if isinstance(value, str) and value.strip():
                by_norm[normalize_key(value)] = rec.id

    def unindex(self, rec: Record) -> None:
        key = (rec.created_us, rec.seq)
        _remove(self.by_created, key)
        for name, by_value in self.rel.items():
            value = rec.data.get(name)
            if value is not None and value in by_value:
                _remove(by_value[value], key)
        for name, lst in self.sorted_by.items():
            value = rec.data.get(name)
            if isinstance(value, str):
                _remove(lst, (normalize_key(value), rec.seq))
        for name, by_norm in self.unique.items():
            value = rec.data.get(name)
            if isinstance(value, str) and by_norm.get(normalize_key(value)) == rec.id:
                del by_norm[normalize_key(value)]


@dataclass(eq=False)
class Tenant:
    """One organization: its key, webhook settings and tables. Secrets stay out of repr."""

    id: str
    api_key: str = field(repr=False)
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_events: list[str] = field(default_factory=lambda: ["*"])
    allowed_ips: list[str] | None = None
    active_after: float = 0.0  # epoch seconds; the key answers 403 before that
    tables: dict[str, Table] = field(default_factory=dict)
    refcount: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tables = {res: Table(spec) for res, spec in SPECS.items()}

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_url": self.webhook_url,
            "webhook_events": self.webhook_events,
            "has_webhook_secret": self.webhook_secret is not None,
            "allowed_ips": self.allowed_ips,
        }


class Store:
    """All tenants; the single lock serializes mutations (handlers are short)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {}
        self._by_key: dict[str, Tenant] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._last_us = 0

    # -- tenants --------------------------------------------------------------------

    def add_tenant(self, tenant: Tenant) -> Tenant:
        with self.lock:
            if tenant.api_key in self._by_key:
                raise ApiError(409, "conflict", "api_key already belongs to a tenant")
            if tenant.id in self.tenants:
                raise ApiError(409, "conflict", f"tenant {tenant.id} exists")
            self.tenants[tenant.id] = tenant
            self._by_key[tenant.api_key] = tenant
            return tenant

    def new_tenant_id(self) -> str:
        return f"t{next(self._ids)}"

    def tenant_for_key(self, key: str) -> Tenant | None:
        return self._by_key.get(key)

    def reset(self) -> None:
        with self.lock:
            self.tenants.clear()
            self._by_key.clear()

    # -- clocks and ids -----------------------------------------------------------

    def now_us(self) -> int:
        """Strictly increasing wall-clock microseconds, so creation order is total."""
        us = time.time_ns() // 1000
        self._last_us = max(us, self._last_us + 1)
        return self._last_us

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # -- reads ----------------------------------------------------------------------

    def get(self, tenant: Tenant, resource: str, record_id: str) -> Record:
        rec = tenant.tables[resource].live(record_id)
        if rec is None:
            raise not_found()
        return rec

    def list_page(
        self,
        tenant: Tenant,
        resource: str,
        params: Iterable[tuple[str, str]],
        mode: FilterMode = "strict",
        window_digits: int = 6,
        trailing_empty: bool = False,
    ) -> tuple[list[Record], str | None]:
        """One page; ``mode`` says what happens to undocumented or any filters (``params.py``)."""
        query = _ListQuery(tenant, tenant.tables[resource], params, mode, window_digits, trailing_empty)
        return query.run()

    # -- writes ---------------------------------------------------------------------

    def create(
        self,
        tenant: Tenant,
        resource: str,
        body: dict[str, Any],
        *,
        record_id: str | None = None,
        created_us: int | None = None,
    ) -> Record:
        spec = SPECS[resource]
        table = tenant.tables[resource]
        values = validate_fields(spec, body, creating=True)
        children = validate_children(spec, body)
        with self.lock:
            if record_id is not None and record_id in table.records:
                raise ApiError(409, "conflict", f"id {record_id} exists")
            self._check_refs(tenant, spec, values)
            self._check_unique(table, values, None)
            for key, items in children.items():
                for i, (child_id, _) in enumerate(items):
                    if child_id is not None:
                        raise ApiError(422, "invalid_reference", _unknown_ref(f"{key}[{i}].id"))
                values[key] = [{"id": self.new_id(spec.child_prefix[key]), **child} for _, child in items]
            for key in spec.children:
                values.setdefault(key, [])
            now = self.now_us()
            created = created_us if created_us is not None else now
            rec = Record(
                id=record_id or self.new_id(spec.prefix),
                seq=next(self._seq),
                created_us=created,
                updated_us=max(created, now) if created_us is None else created,
                version=1,
                data=values,
            )
            table.records[rec.id] = rec
            table.by_seq[rec.seq] = rec
            table.index(rec)
            self._count_refs(tenant, spec, rec.data, +1)
            return rec

    def update(
        self, tenant: Tenant, resource: str, record_id: str, body: dict[str, Any], versions: list[int] | None
    ) -> Record:
        """Partial update; ``versions`` None means an admin console edit (no check)."""
        spec = SPECS[resource]
        table = tenant.tables[resource]
        with self.lock:
            rec = self.get(tenant, resource, record_id)
            _check_versions(rec, versions)
            values = validate_fields(spec, body, creating=False, allow=frozenset({"_version"}))
            children = validate_children(spec, body)
            self._check_refs(tenant, spec, values)
            self._check_unique(table, values, rec.id)
            merged = {**rec.data, **values}
            for key, items in children.items():
                merged[key] = self._upsert_children(spec, key, rec.data.get(key, []), items)
            if merged == rec.data:
                return rec
            table.unindex(rec)
            self._count_refs(tenant, spec, rec.data, -1)
            rec.data = merged
            rec.version += 1
            rec.updated_us = self.now_us()
            table.index(rec)
            self._count_refs(tenant, spec, rec.data, +1)
            return rec

    def delete(self, tenant: Tenant, resource: str, record_id: str, versions: list[int]) -> Record:
        spec = SPECS[resource]
        table = tenant.tables[resource]
        with self.lock:
            rec = self.get(tenant, resource, record_id)
            _check_versions(rec, versions)
            users = tenant.refcount.get(rec.id, 0)
            if users:
                raise ApiError(
                    409, "resource_in_use", f"{users} record(s) still reference {spec.resource} {rec.id}"
                )
            table.unindex(rec)
            self._count_refs(tenant, spec, rec.data, -1)
            rec.deleted = True
            rec.version += 1
            rec.updated_us = self.now_us()
            if spec.children:  # products cascade to their sizes and certificates
                rec.data = {**rec.data, **{key: [] for key in spec.children}}
            return rec

    # -- helpers --------------------------------------------------------------------

    def _upsert_children(
        self,
        spec: EntitySpec,
        key: str,
        current: list[dict[str, Any]],
        items: list[tuple[str | None, dict[str, Any]]],
    ) -> list[dict[str, Any]]:
        result = [dict(child) for child in current]
        position = {child["id"]: i for i, child in enumerate(result)}
        for i, (child_id, values) in enumerate(items):
            if child_id is None:
                result.append({"id": self.new_id(spec.child_prefix[key]), **values})
            elif child_id in position:
                result[position[child_id]].update(values)
            else:
                raise ApiError(422, "invalid_reference", _unknown_ref(f"{key}[{i}].id"))
        return result

    @staticmethod
    def _check_refs(tenant: Tenant, spec: EntitySpec, values: Mapping[str, Any]) -> None:
        for fs in spec.ref_fields:
            value = values.get(fs.name)
            if value is None:
                continue
            assert fs.ref is not None
            target = tenant.tables[fs.ref]
            ids = value if isinstance(value, list) else [value]
            if any(target.live(ref_id) is None for ref_id in ids):
                raise ApiError(422, "invalid_reference", _unknown_ref(fs.name))

    @staticmethod
    def _check_unique(table: Table, values: Mapping[str, Any], own_id: str | None) -> None:
        for name, by_norm in table.unique.items():
            value = values.get(name)
            if isinstance(value, str) and value.strip():
                holder = by_norm.get(normalize_key(value))
                if holder is not None and holder != own_id:
                    raise ApiError(409, f"duplicate_{name}", f"A record with this {name} already exists")

    @staticmethod
    def _count_refs(tenant: Tenant, spec: EntitySpec, data: Mapping[str, Any], delta: int) -> None:
        if spec.transaction:
            return
        for fs in spec.ref_fields:
            value = data.get(fs.name)
            for ref_id in value if isinstance(value, list) else [value] if value else []:
                tenant.refcount[ref_id] = tenant.refcount.get(ref_id, 0) + delta


def _unknown_ref(name: str) -> str:
    return f"Unknown or cross-tenant reference: {name}"


def _check_versions(rec: Record, versions: list[int] | None) -> None:
    if versions is None:
        return
    if not versions:
        raise bad_request("If-Match header or _version is required")
    if any(v != rec.version for v in versions):
        raise ApiError(409, "conflict", f"Version mismatch: the record is at version {rec.version}")


def dto(spec: EntitySpec, rec: Record) -> dict[str, Any]:
    """The record as GET and webhooks show it (never the version, never deleted state)."""
    out: dict[str, Any] = {"id": rec.id, **rec.data, "createdAt": iso_from_us(rec.created_us)}
    if not spec.transaction:
        out["updatedAt"] = iso_from_us(rec.updated_us)
    return out


class _ListQuery:
    """Validates list parameters and walks the right index for one page."""

    def __init__(
        self,
        tenant: Tenant,
        table: Table,
        params: Iterable[tuple[str, str]],
        mode: FilterMode = "strict",
        window_digits: int = 6,
        trailing_empty: bool = False,
    ) -> None:
        self.trailing_empty = trailing_empty  # a full last page still carries a cursor (DynamoDB)
        self.tenant = tenant
        self.table = table
        spec = table.spec
        self.params: dict[str, str] = {}
        for key, value in accepted_params(spec.resource, "list", params, mode):
            if key in self.params:
                raise bad_request(f"{key}: given more than once")
            if key not in ("cursor", "limit") and value == "":
                raise bad_request(f"{key}: must not be empty")
            self.params[key] = value
        self.limit = _parse_limit(self.params.get("limit"))
        self.rel = [(k, self.params[k]) for k in spec.relationship_filters if k in self.params]
        self.prefix = [(k, self.params[k]) for k in spec.prefix_filters if k in self.params]
        self.exact = [(k, self.params[k]) for k in spec.exact_filters if k in self.params]
        window = [k for k in TIME_WINDOW if k in self.params]
        if len(self.rel) > 1:
            raise bad_request(
                "At most one relationship filter per request: " + ", ".join(k for k, _ in self.rel)
            )
        if self.rel and window:
            raise bad_request("A relationship filter cannot be combined with createdSince/createdUntil")
        if len(self.prefix) > 1:
            raise bad_request("Filter by name or by code, not both")
        self.since = (
            us_from_window(self.params["createdSince"], "createdSince", window_digits)
            if "createdSince" in self.params
            else None
        )
        self.until = (
            us_from_window(self.params["createdUntil"], "createdUntil", window_digits)
            if "createdUntil" in self.params
            else None
        )
        self.mode = "exact" if self.exact else f"asc:{self.prefix[0][0]}" if self.prefix else "desc"
        query = sorted((k, v) for k, v in self.params.items() if k not in ("cursor", "limit"))
        self.fingerprint = hashlib.blake2b(json.dumps(query).encode(), digest_size=6).hexdigest()
        self.after = self._decode_cursor(self.params.get("cursor"))

    def run(self) -> tuple[list[Record], str | None]:
        if self.mode == "exact":
            return self._exact(), None
        if self.prefix:
            page, more = self._ascending()
        else:
            page, more = self._descending()
        if not page or (not more and not (self.trailing_empty and len(page) == self.limit)):
            return page, None
        last = page[-1]
        key: list[Any] = (
            [last.created_us, last.seq]
            if self.mode == "desc"
            else [normalize_key(last.data[self.prefix[0][0]]), last.seq]
        )
        return page, self._encode_cursor(key)

    def _matches(self) -> Callable[[Record], bool] | None:
        checks: list[Callable[[Record], bool]] = []
        if self.rel and (self.prefix or self.exact):
            name, value = self.rel[0]
            checks.append(lambda r: r.data.get(name) == value)
        if self.prefix and self.exact:
            pname, pvalue = self.prefix[0]
            norm = normalize_key(pvalue)
            checks.append(
                lambda r: isinstance(r.data.get(pname), str) and normalize_key(r.data[pname]).startswith(norm)
            )
        if not checks:
            return None
        return lambda r: all(check(r) for check in checks)

    def _exact(self) -> list[Record]:
        found: Record | None = None
        for name, value in self.exact:
            rec_id = self.table.unique[name].get(normalize_key(value))
            rec = self.table.live(rec_id) if rec_id else None
            if rec is None or (found is not None and rec is not found):
                return []
            found = rec
        pred = self._matches()
        return [found] if found is not None and (pred is None or pred(found)) else []

    def _descending(self) -> tuple[list[Record], bool]:
        if self.rel:
            name, value = self.rel[0]
            keys = self.table.rel[name].get(value, [])
        else:
            keys = self.table.by_created
        hi = len(keys)
        if self.after is not None:
            hi = bisect.bisect_left(keys, (self.after[0], self.after[1]))
        if self.until is not None:
            hi = min(hi, bisect.bisect_left(keys, (self.until, -1)))
        page: list[Record] = []
        by_seq = self.table.by_seq
        for i in range(hi - 1, -1, -1):
            created, seq = keys[i]
            if self.since is not None and created < self.since:
                break
            if len(page) == self.limit:
                return page, True
            page.append(by_seq[seq])
        return page, False

    def _ascending(self) -> tuple[list[Record], bool]:
        name, value = self.prefix[0]
        keys = self.table.sorted_by[name]
        norm = normalize_key(value)
        if self.after is not None:
            lo = bisect.bisect_right(keys, (self.after[0], self.after[1]))
        else:
            lo = bisect.bisect_left(keys, (norm, -1))
        pred = self._matches()
        page: list[Record] = []
        by_seq = self.table.by_seq
        for i in range(lo, len(keys)):
            key, seq = keys[i]
            if not key.startswith(norm):
                break
            rec = by_seq[seq]
            if pred is not None and not pred(rec):
                continue
            if len(page) == self.limit:
                return page, True
            page.append(rec)
        return page, False

    def _encode_cursor(self, key: list[Any]) -> str:
        payload = {
            "PK": self.tenant.id,
            "SK": f"{self.table.spec.resource}#{self.mode}",
            "Q": self.fingerprint,
        }
        payload["K"] = key  # type: ignore[assignment]
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()

    def _decode_cursor(self, cursor: str | None) -> tuple[Any, int] | None:
        if cursor is None:
            return None
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            payload = json.loads(base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise bad_request("cursor: invalid or corrupted") from None
        if not isinstance(payload, dict):
            raise bad_request("cursor: invalid or corrupted")
        expected_sk = f"{self.table.spec.resource}#{self.mode}"
        if (
            payload.get("PK") != self.tenant.id
            or payload.get("SK") != expected_sk
            or payload.get("Q") != self.fingerprint
        ):
            raise bad_request("cursor: does not belong to this list query")
        key = payload.get("K")
        first_type = int if self.mode == "desc" else str
        if (
            not isinstance(key, list)
            or len(key) != 2
            or not isinstance(key[0], first_type)
            or isinstance(key[0], bool)
            or not isinstance(key[1], int)
            or isinstance(key[1], bool)
        ):
            raise bad_request("cursor: invalid or corrupted")
        return key[0], key[1]


def _check_documented_filters_are_served() -> None:
    """Every documented list filter must have an index here (else it would be ignored)."""
    for resource, spec in SPECS.items():
        served = {*spec.relationship_filters, *spec.prefix_filters, *spec.exact_filters}
        served |= set(TIME_WINDOW) if spec.transaction else set()
        unserved = documented(resource, "list") - served - {"limit", "cursor"}
        if unserved:  # pragma: no cover - a programming error caught at import
            raise RuntimeError(f"/{resource}: documented filters without an index: {sorted(unserved)}")


_check_documented_filters_are_served()


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_request(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)
