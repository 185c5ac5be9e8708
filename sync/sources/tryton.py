"""Read (and write back to) a Tryton 8.2 ERP over JSON-RPC (docs/tryton.md "Source").

Each ERP entity is a declarative query: a model, a domain, a context and columns, each a
dotted field path (``party.identifiers.code_compact``) optionally filtered on the records
it ends in (``where: {type: br_cpf}``), or read from a related model pointing back at the
row (analytic rules → their party). ``DEFAULT_ENTITIES`` follow the field guide's §4
conventions and feed ``mappings/tryton-smartepi.yaml`` and ``mappings/tryton-smartkasa.yaml``;
``erp.entities.<name>`` in the tenant config overrides any part of them (columns merge one
by one), so a deployment with custom fields points a column at ``employee.x_cost_center``
without code.

Reads:

- keyset paging by id (``[("id", ">", last)]``, ordered by id), ``page_size`` rows per
  call, related columns one extra call per page and related model;
- archived records are read too (``active_test: false``) and carry their ``active`` flag;
  the mappings turn inactive rows into a deactivation (SmartEPI) or, filtered out, into a
  deletion after a complete read (SmartKasa);
- ``stock`` entities give one row per (record, warehouse) with the warehouse's quantity
  (one call per warehouse).

Change detection (``read(entity, since=…)``, the beat's watermark poll): every model that
contributes to a row is polled at once, ``last_modified_at >= since - overlap`` on the
entity's model and on each relational path of its columns (employee, party, identifiers,
contact mechanisms, categories; analytic rules for the cost centre; for stock, done stock
moves), in one OR-domain call per model, all models at once; hits are mapped to their root
records, which the poll only *names* (id, key, many2one columns: the rows carry no list
columns), and the sync it triggers reads just those (``read_keys``). The change column
``_changed_at`` is the *server's* clock at the
poll (from the answer's ``Date`` header), never the client's; the overlap re-reads a window
because Tryton stamps rows with their transaction's start (§5.2), and roots already
emitted for the same watermark chain are not emitted twice. Deletions leave no trace
(§5.4): a complete read (every reconcile) sees the id set and the engine infers deletes.

Write-back (``writable: true`` entities): a column whose path ends in a plain field of
the row or of a many2one target writes that field; one ending in a one2many with ``where``
(the e-mail contact mechanism) writes the first matching record or creates one; one
ending in a many2many ``id`` with ``where`` (the job-role category) replaces the matching
members. Every write carries the ``_timestamp`` of the records as this source last read
them, so a person's concurrent edit in Tryton fails the write with
``TrytonConcurrencyError`` (re-planned next run) instead of being overwritten.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sync.errors import ConfigError, ErpsyncError, SourceError
from sync.sources.base import key_str, try_timestamp
from sync.sources.config import (
    TrytonColumnConfig,
    TrytonEntityConfig,
    TrytonSourceConfig,
    TrytonStockConfig,
)

log = logging.getLogger("sync.sources.tryton")

CHANGE_COLUMN = "_changed_at"
_RELATIONAL = {"many2one": "m2o", "one2one": "m2o", "reference": "m2o", "one2many": "x2m", "many2many": "x2m"}

# --- the §4 conventions -------------------------------------------------------------

_EPI_ROOTS = ["Centros de Custo", "Rateio"]


def _category_under(root: str) -> dict[str, Any]:
    return {"path": "party.categories.id", "where": {"parent.name": root}}


DEFAULT_ENTITIES: dict[str, dict[str, Any]] = {
    # SmartEPI (company 1): party-category roots, analytic roots, employees, PPE.
    "sectors": {
        "model": "party.category",
        "domain": [["parent.name", "=", "Setor"]],
        "columns": {"name": "name", "active": "active"},
    },
    "job_roles": {
        "model": "party.category",
        "domain": [["parent.name", "=", "Cargo"]],
        "columns": {"name": "name", "active": "active"},
    },
    "groups": {
        "model": "party.category",
        "domain": [["parent.name", "=", "Grupo"]],
        "columns": {"name": "name", "active": "active"},
    },
    "cost_centers": {
        "model": "analytic_account.account",
        "domain": [["root.name", "in", _EPI_ROOTS], ["type", "=", "normal"]],
        "columns": {"name": "name", "code": "code", "state": "state", "root": "root.name"},
    },
    "employees": {
        "model": "company.employee",
        "writable": True,
        "columns": {
            "name": "party.name",
            "registration": "party.code",
            "cpf": {"path": "party.identifiers.code_compact", "where": {"type": "br_cpf"}},
            "email": {"path": "party.contact_mechanisms.value", "where": {"type": "email"}},
            "sector": _category_under("Setor"),
            "job_role": _category_under("Cargo"),
            "group": _category_under("Grupo"),
            "cost_center": {
                "model": "analytic_account.rule",
                "link": "party",
                "to": "party",
                "path": "analytic_accounts.account.id",
                "where": {"root.name": "Centros de Custo"},
            },
            "cost_center_2": {
                "model": "analytic_account.rule",
                "link": "party",
                "to": "party",
                "path": "analytic_accounts.account.id",
                "where": {"root.name": "Rateio"},
            },
            "start_date": "start_date",
            "end_date": "end_date",
            "active": "active",
        },
    },
    "ppe_products": {
        "model": "product.template",
        "domain": [["categories", "child_of", "EPI", "parent"]],
        "columns": {
            "name": "name",
            "code": "code",
            "unit": "default_uom.symbol",
            "active": "active",
        },
    },
    "ppe_sizes": {
        "model": "product.product",
        "domain": [["template.categories", "child_of", "EPI", "parent"]],
        "distinct": True,
        "columns": {"template": "template.id", "size": "attributes.tamanho"},
    },
    "ppe_certificates": {
        "model": "product.product",
        "domain": [["template.categories", "child_of", "EPI", "parent"]],
        "distinct": True,
        "columns": {
            "template": "template.id",
            "ca_number": "attributes.ca_numero",
            "ca_expires": "attributes.ca_validade",
        },
    },
    # SmartKasa (company 2): the shop category tree, products, stock per shop.
    "shop_categories": {
        "model": "product.category",
        "domain": [["parent", "child_of", "Магазин"], ["parent", "!=", None]],
        "columns": {
            "title": "name",
            "code": "code",
            "parent": {"path": "parent.id", "where": {"parent": {"!=": None}}},  # top level: no parent
        },
    },
    "shop_products": {
        "model": "product.product",
        "domain": [["template.categories", "child_of", "Магазин", "parent"]],
        "columns": {
            "title": "template.name",
            "sku": "code",
            "barcode": {"path": "identifiers.code", "where": {"type": "ean"}},
            "category": {"path": "template.categories.id", "where": {"parent": {"!=": None}}},
            "price": "gross_price_used",
            "cost_price": "cost_price",
            "taxes": {"path": "template.account_category.customer_taxes_used.rate", "pick": "join"},
            "unit": "default_uom.symbol",
            "active": "active",
            "template_active": "template.active",  # archiving the template archives its variants
        },
        "changes": [
            "",
            "template",
            "identifiers",
            "cost_prices",
            "template.gross_prices",
            "template.list_prices",
            "template.categories",
            "template.account_category",
        ],
    },
    "shop_stock": {
        "model": "product.product",
        "domain": [["template.categories", "child_of", "Магазин", "parent"]],
        "columns": {"product": "code"},
        "stock": {"warehouses": ["KYIV", "LVIV"], "column": "shop", "quantity": "quantity"},
    },
}


def entity_configs(config: TrytonSourceConfig) -> dict[str, TrytonEntityConfig]:
    """The defaults with the tenant's ``erp.entities`` merged over them (columns one by one;
    a new ``model`` with new ``columns`` replaces the default columns)."""
    out: dict[str, dict[str, Any]] = {name: dict(raw) for name, raw in DEFAULT_ENTITIES.items()}
    for name, override in config.entities.items():
        given = override.model_dump(exclude_unset=True, by_alias=False)
        base = out.get(name)
        if base is None:
            if not given.get("model") or not given.get("columns"):
                raise ConfigError(
                    f"erp.entities.{name}: a new Tryton entity needs a model and columns",
                    hint=f"known entities: {', '.join(sorted(out))}",
                )
            out[name] = given
            continue
        merged = dict(base)
        for key, value in given.items():
            if key == "columns":
                replace = "model" in given and given["model"] != base.get("model")
                merged["columns"] = dict(value) if replace else {**base.get("columns", {}), **value}
            else:
                merged[key] = value
        out[name] = merged
    try:
        return {name: TrytonEntityConfig.model_validate(raw) for name, raw in out.items()}
    except ValueError as exc:
        raise ConfigError(f"erp.entities: {exc}") from None


# --- compiled paths -----------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    name: str
    kind: str  # "m2o" | "x2m"
    model: str  # the target model
    field_type: str


@dataclass(frozen=True)
class Cond:
    steps: tuple[str, ...]  # nested keys to the compared value (relational hops end in "<name>.")
    op: str  # "=" | "!=" | "in" | "not in"
    value: Any


@dataclass(frozen=True)
class Column:
    name: str
    conf: TrytonColumnConfig
    hops: tuple[Hop, ...]
    leaf: str
    dict_keys: tuple[str, ...]
    conds: tuple[Cond, ...]
    requests: tuple[str, ...]  # Tryton field paths to read (relative to the column's model)
    base_model: str  # the entity model, or the related model
    to_request: str | None = None  # the root path whose value related rows link to


@dataclass
class Compiled:
    name: str
    conf: TrytonEntityConfig
    columns: list[Column]
    fields: list[str]  # root fields to read
    related: dict[tuple[str, str, str, str], list[Column]]  # (model, link, to, domain repr) -> columns
    change_paths: list[str]
    related_change_paths: dict[tuple[str, str, str, str], list[str]]
    key_column: Column | None  # None: the record id
    stamp_fields: list[str] = field(default_factory=list)  # _timestamp paths (writable entities)


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value


class _Meta:
    """``fields_get`` per model, cached (one call per model per source)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def fields(self, model: str) -> dict[str, Any]:
        with self._lock:
            if model not in self._cache:
                answer = self._client.model(model, "fields_get", None)
                self._cache[model] = dict(answer or {})
            return self._cache[model]

    def resolve(self, model: str, path: str, where: str) -> tuple[tuple[Hop, ...], str, tuple[str, ...]]:
        """(relational hops, leaf field, keys into a dict field) of ``path`` from ``model``."""
        hops: list[Hop] = []
        current = model
        parts = path.split(".")
        for i, part in enumerate(parts):
            if part == "id" and i == len(parts) - 1:
                return tuple(hops), "id", ()
            info = self.fields(current).get(part)
            if info is None:
                raise ConfigError(
                    f"{where}: {current!r} has no field {part!r} (path {path!r})",
                    hint="fix the path in erp.entities (fields are Tryton's technical names)",
                )
            ftype = str(info.get("type"))
            if ftype in _RELATIONAL and info.get("relation"):
                hops.append(Hop(part, _RELATIONAL[ftype], str(info["relation"]), ftype))
                current = str(info["relation"])
                if i == len(parts) - 1:
                    return tuple(hops), "id", ()
                continue
            if ftype == "dict":
                return tuple(hops), part, tuple(parts[i + 1 :])
            if i != len(parts) - 1:
                raise ConfigError(
                    f"{where}: {current}.{part} is a {ftype} field: the path {path!r} cannot go past it",
                    hint="end the path at a plain field",
                )
            return tuple(hops), part, ()
        raise ConfigError(f"{where}: empty path")


def _request(hops: Sequence[Hop], leaf: str) -> str:
    return ".".join([*(h.name for h in hops), leaf])


def _cond(
    meta: _Meta, model: str, hops: tuple[Hop, ...], key: str, value: Any, where: str
) -> tuple[Cond, str]:
    target = hops[-1].model if hops else model
    c_hops, c_leaf, c_dict = meta.resolve(target, key, where)
    steps = tuple([*(f"{h.name}." for h in c_hops), c_leaf, *c_dict])
    if isinstance(value, dict):
        if len(value) != 1:
            raise ConfigError(f"{where}: where {key!r}: give one operator ('!=', 'in', 'not in')")
        op, val = next(iter(value.items()))
        if op not in ("=", "!=", "in", "not in"):
            raise ConfigError(f"{where}: where {key!r}: unknown operator {op!r}")
    elif isinstance(value, list):
        op, val = "in", value
    else:
        op, val = "=", value
    request = _request([*hops, *c_hops], c_leaf)
    return Cond(steps, op, val), request


def compile_entity(meta: _Meta, name: str, conf: TrytonEntityConfig) -> Compiled:
    columns: list[Column] = []
    fields: dict[str, None] = {"id": None}
    related: dict[tuple[str, str, str, str], list[Column]] = {}
    change: dict[str, None] = {"": None}
    rel_change: dict[tuple[str, str, str, str], dict[str, None]] = {}
    for col_name, raw in conf.columns.items():
        cc = raw if isinstance(raw, TrytonColumnConfig) else TrytonColumnConfig(path=raw)
        where = f"erp.entities.{name}.columns.{col_name}"
        base_model = cc.model or conf.model
        hops, leaf, dict_keys = meta.resolve(base_model, cc.path, where)
        conds, cond_requests = [], []
        for key, value in cc.where.items():
            cond, req = _cond(meta, base_model, hops, key, value, where)
            conds.append(cond)
            cond_requests.append(req)
        requests = (_request(hops, leaf), *cond_requests)
        to_request = None
        if cc.model is not None:
            to_hops, to_leaf, _ = meta.resolve(conf.model, cc.to, where + ".to")
            to_request = _request(to_hops, to_leaf)
            fields[to_request] = None
            gkey = (cc.model, str(cc.link), to_request, repr(cc.domain))
            paths = rel_change.setdefault(gkey, {"": None})
        else:
            for r in requests:
                fields[r] = None
            paths = change
        # The records whose fields the column reads date its changes. A path ending in a
        # many2one's id reads only the pointer: the target's own edits (a cost centre
        # renamed) do not change the value, and polling them costs a join per row.
        dated = hops[:-1] if leaf == "id" and hops and hops[-1].kind == "m2o" else hops
        prefix: list[str] = []
        for hop in dated:
            prefix.append(hop.name)
            paths[".".join(prefix)] = None
        column = Column(
            col_name, cc, hops, leaf, dict_keys, tuple(conds), tuple(requests), base_model, to_request
        )
        columns.append(column)
        if cc.model is not None:
            related.setdefault((cc.model, str(cc.link), str(to_request), repr(cc.domain)), []).append(column)
    key_column = None
    if conf.key != "id":
        key_column = next((c for c in columns if c.name == conf.key), None)
        if key_column is None or key_column.conf.model is not None:
            raise ConfigError(
                f"erp.entities.{name}.key: {conf.key!r} is not a column of the entity's own model",
                hint="use id or one of the entity's columns",
            )
    change_paths = list(conf.changes) if conf.changes is not None else list(change)
    for path in change_paths:
        if path:
            meta.resolve(conf.model, path, f"erp.entities.{name}.changes")
    compiled = Compiled(
        name,
        conf,
        columns,
        list(fields),
        related,
        change_paths,
        {k: list(v) for k, v in rel_change.items()},
        key_column,
    )
    if conf.writable:
        compiled.stamp_fields = _stamp_fields(compiled)
    return compiled


def _stamp_fields(c: Compiled) -> list[str]:
    """``_timestamp`` paths of every record a write-back of this entity may touch."""
    out: dict[str, None] = {"_timestamp": None}
    for col in c.columns:
        if col.conf.model is not None:
            continue
        prefix: list[str] = []
        for hop in col.hops:
            prefix.append(hop.name)
            out[".".join([*prefix, "_timestamp"])] = None
    return list(out)


# --- extraction ---------------------------------------------------------------------


def _items(node: Mapping[str, Any], hops: Sequence[Hop]) -> list[Mapping[str, Any]]:
    items: list[Mapping[str, Any]] = [node]
    for hop in hops:
        nxt: list[Mapping[str, Any]] = []
        key = hop.name + "."
        for it in items:
            value = it.get(key)
            if value is None:
                continue
            if isinstance(value, list):
                nxt.extend(v for v in value if isinstance(v, Mapping))
            elif isinstance(value, Mapping):
                nxt.append(value)
        items = nxt
    return items


def _dig(item: Mapping[str, Any], steps: Sequence[str]) -> Any:
    value: Any = item
    for step in steps:
        if isinstance(value, list):  # an x2many inside a condition: any element may match
            return [_dig(v, [step]) for v in value]
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def _holds(cond: Cond, item: Mapping[str, Any]) -> bool:
    value = _dig(item, cond.steps)
    values = value if isinstance(value, list) else [value]

    def eq(a: Any, b: Any) -> bool:
        return a == b or (a is not None and b is not None and str(_norm(a)) == str(_norm(b)))

    if cond.op == "=":
        return any(eq(v, cond.value) for v in values)
    if cond.op == "!=":
        return all(not eq(v, cond.value) for v in values)
    if cond.op == "in":
        return any(eq(v, c) for v in values for c in cond.value)
    return all(not eq(v, c) for v in values for c in cond.value)


def _leaf(item: Mapping[str, Any], column: Column) -> Any:
    value = item.get(column.leaf)
    for key in column.dict_keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def extract(nodes: Sequence[Mapping[str, Any]], column: Column) -> Any:
    items = [it for node in nodes for it in _items(node, column.hops)]
    if column.conds:
        items = [it for it in items if all(_holds(c, it) for c in column.conds)]
    values = [_leaf(it, column) for it in items]
    pick = column.conf.pick
    if pick == "count":
        return len(values)
    values = [v for v in values if v is not None]
    if pick == "all":
        return values
    if pick == "join":
        return column.conf.sep.join(sorted(str(_norm(v)) for v in values))
    return values[0] if values else None


def _stamp(node: Any) -> dt.datetime | None:
    """The newest ``last_modified_at`` anywhere in a nested answer."""
    best: dt.datetime | None = None
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, list):
            stack.extend(cur)
        elif isinstance(cur, Mapping):
            for k, v in cur.items():
                if k == "last_modified_at":
                    s = try_timestamp(v)
                    if s is not None and (best is None or s > best):
                        best = s
                elif k.endswith(".") and v is not None:
                    stack.append(v)
    return best


def _timestamps(node: Mapping[str, Any], root_model: str, hops_by_path: Mapping[str, str]) -> dict[str, str]:
    """``{"<model>,<id>": _timestamp}`` of the root and of the records under the paths read."""
    out: dict[str, str] = {}

    def visit(n: Any, model: str, prefix: str) -> None:
        if isinstance(n, list):
            for x in n:
                visit(x, model, prefix)
            return
        if not isinstance(n, Mapping):
            return
        if n.get("_timestamp") is not None and n.get("id") is not None:
            out[f"{model},{n['id']}"] = str(n["_timestamp"])
        for k, v in n.items():
            if k.endswith(".") and v is not None:
                path = f"{prefix}.{k[:-1]}" if prefix else k[:-1]
                target = hops_by_path.get(path)
                if target:
                    visit(v, target, path)

    visit(node, root_model, "")
    return out


# --- the source ---------------------------------------------------------------------


@dataclass
class _PollMemory:
    expected: dt.datetime  # the watermark the engine stores when the last emission succeeds
    floor: dt.datetime | None  # hits older than this were the baseline's (first poll)
    delivered: dict[str, dt.datetime]  # root key -> change stamp already emitted


class TrytonSource:
    """``Source`` over Tryton JSON-RPC; the client logs in on first use."""

    def __init__(self, config: TrytonSourceConfig, *, client: Any = None) -> None:
        self.config = config
        self.entities = entity_configs(config)
        self._client = client
        self._owns_client = client is None
        self._meta: _Meta | None = None
        self._compiled: dict[str, Compiled] = {}
        self._ids: dict[str, int] = {}
        self._stamps: dict[tuple[str, str], dict[str, str]] = {}
        self._poll: dict[str, _PollMemory] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (
            f"TrytonSource({self.config.url}, database={self.config.database!r}, user={self.config.user!r})"
        )

    # --- plumbing ------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from sync.clients.tryton import SyncTrytonClient

            self._client = SyncTrytonClient(
                self.config.url,
                self.config.database,
                self.config.user,
                self.config.password,
                timeout=self.config.timeout,
                context=self.config.context or None,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def _fail(self, entity: str, exc: Exception) -> Exception:
        if isinstance(exc, ErpsyncError):
            return exc
        return SourceError(f"Tryton entity {entity!r}: {type(exc).__name__}: {exc}")

    def compiled(self, entity: str) -> Compiled:
        with self._lock:
            if entity not in self._compiled:
                conf = self.entities.get(entity)
                if conf is None:
                    known = ", ".join(sorted(self.entities))
                    raise ConfigError(
                        f"the Tryton source has no entity {entity!r} (known: {known})",
                        hint=f"add erp.entities.{entity} (a model and columns) or fix the mapping's source",
                    )
                if self._meta is None:
                    self._meta = _Meta(self.client)
                self._compiled[entity] = compile_entity(self._meta, entity, conf)
            return self._compiled[entity]

    def _context(self, c: Compiled) -> dict[str, Any]:
        ctx = dict(c.conf.context)
        if not c.conf.active_test:
            ctx["active_test"] = False
        return ctx

    def _domain(self, c: Compiled, *extra: Any) -> list[Any]:
        return [*c.conf.domain, *extra]

    def _location(self, code: str) -> int:
        with self._lock:
            if code not in self._ids:
                found = self.client.search(
                    "stock.location", [["code", "=", code], ["type", "=", "warehouse"]], limit=1
                )
                if not found:
                    raise ConfigError(
                        f"Tryton has no warehouse with code {code!r}",
                        hint="fix erp.entities.<stock entity>.stock.warehouses (stock.location codes)",
                    )
                self._ids[code] = int(found[0])
            return self._ids[code]

    # --- rows ----------------------------------------------------------------------

    def _rows_of(
        self, c: Compiled, records: list[dict[str, Any]], seen: set[tuple[Any, ...]] | None = None
    ) -> list[dict[str, Any]]:
        """Entity rows of one page of root records (related columns read for the page)."""
        related_rows: dict[tuple[str, str, str, str], dict[Any, list[dict[str, Any]]]] = {}
        for gkey, cols in c.related.items():
            model, link, to_request, _ = gkey
            targets = sorted(
                {v for r in records for v in _values_at(r, to_request) if v is not None}, key=str
            )
            grouped: dict[Any, list[dict[str, Any]]] = {}
            if targets:
                fields = sorted({link, *(req for col in cols for req in col.requests)})
                domain = [*cols[0].conf.domain, [link, "in", targets]]
                for rel in self.client.search_read(
                    model, domain, fields, order=[("id", "ASC")], context=self._context(c)
                ):
                    grouped.setdefault(rel.get(link), []).append(rel)
            related_rows[gkey] = grouped
        out: list[dict[str, Any]] = []
        seen = set() if seen is None else seen  # distinct: across the pages of one read
        hops_by_path = self._hop_models(c) if c.conf.writable else {}
        for rec in records:
            row: dict[str, Any] = {"id": rec.get("id")}
            for col in c.columns:
                if col.conf.model is None:
                    row[col.name] = extract([rec], col)
                else:
                    gkey = (col.conf.model, str(col.conf.link), str(col.to_request), repr(col.conf.domain))
                    linked = [
                        r for v in _values_at(rec, str(col.to_request)) for r in related_rows[gkey].get(v, [])
                    ]
                    row[col.name] = extract(linked, col)
            key = self._key_of(c, row)
            row[c.conf.key] = key
            if c.conf.distinct:
                sig = tuple((k, repr(v)) for k, v in sorted(row.items()) if k != "id")
                if sig in seen:
                    continue
                seen.add(sig)
            if c.conf.writable and key is not None:
                self._stamps[(c.name, key)] = _timestamps(rec, c.conf.model, hops_by_path)
            out.append(row)
        return out

    def _hop_models(self, c: Compiled) -> dict[str, str]:
        out: dict[str, str] = {}
        for col in c.columns:
            if col.conf.model is not None:
                continue
            prefix: list[str] = []
            for hop in col.hops:
                prefix.append(hop.name)
                out[".".join(prefix)] = hop.model
        return out

    def _key_of(self, c: Compiled, row: Mapping[str, Any]) -> str | None:
        return key_str(row.get(c.conf.key) if c.key_column is not None else row.get("id"))

    def _read_fields(self, c: Compiled) -> list[str]:
        return [*c.fields, *c.stamp_fields]

    def _pages(self, c: Compiled, extra: Sequence[Any] = ()) -> Iterator[list[dict[str, Any]]]:
        """Keyset pages by id. The next page is asked for as soon as a page arrives (its last
        id is all the next domain needs), so Tryton reads page k+1 while erpsync turns page k
        into rows (and reads its related records)."""
        size = self.config.page_size
        fields = self._read_fields(c)
        submit = getattr(self.client, "submit", None)

        def ask(last: int) -> Any:
            args = (c.conf.model, self._domain(c, *extra, ["id", ">", last]), fields)
            kw = {"limit": size, "order": [("id", "ASC")], "context": self._context(c)}
            if submit is not None:
                return submit("search_read", *args, **kw)
            return self.client.search_read(*args, **kw)

        pending: Any = ask(0)
        while pending is not None:
            page = pending.result() if submit is not None else pending
            pending = ask(int(page[-1]["id"])) if len(page) >= size else None
            if not page:
                return
            try:
                yield page
            except GeneratorExit:
                if pending is not None and submit is not None:
                    pending.cancel()
                raise

    def _stock_rows(
        self, c: Compiled, stock: TrytonStockConfig, ids: Sequence[int] | None
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        keyed: dict[int, dict[str, Any]] = {}
        seen: set[tuple[Any, ...]] = set()
        for page in self._pages(c, [["id", "in", list(ids)]] if ids is not None else []):
            for row in self._rows_of(c, page, seen):
                keyed[int(row["id"])] = row
        if not keyed:
            return out
        for code in stock.warehouses:
            location = self._location(code)
            ctx = {**self._context(c), "locations": [location], "with_childs": True}
            quantities: dict[int, Any] = {}
            for start in range(0, len(keyed), self.config.page_size):
                chunk = sorted(keyed)[start : start + self.config.page_size]
                for q in self.client.read(c.conf.model, chunk, ["quantity"], context=ctx):
                    quantities[int(q["id"])] = q.get("quantity")
            for rid in sorted(keyed):
                out.append({**keyed[rid], stock.column: code, stock.quantity: quantities.get(rid)})
        return out

    # --- Source --------------------------------------------------------------------

    def read(self, entity: str, *, since: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
        c = self.compiled(entity)
        if since is not None:
            return iter(self._changed(c, since))
        return self._read_all(c)

    def _read_all(self, c: Compiled) -> Iterator[dict[str, Any]]:
        try:
            if c.conf.stock is not None:
                yield from self._stock_rows(c, c.conf.stock, None)
                return
            seen: set[tuple[Any, ...]] = set()
            for page in self._pages(c):
                yield from self._rows_of(c, page, seen)
        except Exception as exc:
            raise self._fail(c.name, exc) from None

    def read_keys(
        self, entity: str, keys: Iterable[str], *, key_field: str | None = None
    ) -> Iterator[dict[str, Any]]:
        c = self.compiled(entity)
        wanted = sorted({k for k in keys if k is not None})
        if not wanted:
            return iter(())
        column = key_field if key_field is not None else c.conf.key
        try:
            if column == "id":
                ids = sorted({int(k) for k in wanted if k.lstrip("-").isdigit()})
                if not ids:
                    return iter(())
                if c.conf.stock is not None:
                    return iter(self._stock_rows(c, c.conf.stock, ids))
                rows: list[dict[str, Any]] = []
                seen: set[tuple[Any, ...]] = set()
                for start in range(0, len(ids), self.config.page_size):
                    chunk = ids[start : start + self.config.page_size]
                    for page in self._pages(c, [["id", "in", chunk]]):
                        rows.extend(self._rows_of(c, page, seen))
                return iter(rows)
            col = next((x for x in c.columns if x.name == column and x.conf.model is None), None)
            if col is None:
                raise ConfigError(
                    f"Tryton entity {entity!r}: the key {column!r} is not one of its own columns",
                    hint="key the mapping on id or on a column of the entity's model",
                )
            wanted_set = set(wanted)
            rows = []
            seen = set()
            for start in range(0, len(wanted), self.config.page_size):
                part = wanted[start : start + self.config.page_size]
                for page in self._pages(c, [[col.requests[0], "in", part]]):
                    rows.extend(
                        r for r in self._rows_of(c, page, seen) if key_str(r.get(column)) in wanted_set
                    )
            return iter(rows)
        except ErpsyncError:
            raise
        except Exception as exc:
            raise self._fail(entity, exc) from None

    def count(self, entity: str) -> int:
        c = self.compiled(entity)
        n = int(self.client.search_count(c.conf.model, self._domain(c), context=self._context(c)))
        return n * len(c.conf.stock.warehouses) if c.conf.stock is not None else n

    def change_column(self, entity: str) -> str | None:
        return CHANGE_COLUMN

    def max_updated_at(self, entity: str) -> dt.datetime | None:
        """The server's clock now: the first watermark of a poll (its baseline)."""
        now: dt.datetime = self.client.server_time()
        with self._lock:
            self._poll[entity] = _PollMemory(expected=now, floor=now, delivered={})
        return now

    # --- change detection ----------------------------------------------------------

    def _changed(self, c: Compiled, since: dt.datetime) -> list[dict[str, Any]]:
        since = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
        window = since - dt.timedelta(seconds=self.config.overlap_seconds)
        with self._lock:
            memory = self._poll.get(c.name)
            usable = memory is not None and memory.expected == since
            delivered = dict(memory.delivered) if memory is not None and usable else {}
            floor = memory.floor if memory is not None and usable else None
        # Rows older than the baseline (the first poll's server time) are the reconcile's.
        lower = max(window, floor) if floor is not None else window
        t = lower.astimezone(dt.UTC).replace(tzinfo=None)
        polled_at: dt.datetime | None = None
        hits: dict[int, dt.datetime] = {}
        parts: list[dict[int, dt.datetime]] = []
        # The server's clock and every model's poll at once (the client multiplexes them on
        # one connection pool; SQLite reads in parallel): the poll costs its slowest query.
        found: list[dict[int, dict[str, Any]]] = [{} for _ in range(1 + len(c.related_change_paths))]
        with ThreadPoolExecutor(max_workers=2 + len(c.related_change_paths)) as pool:
            clock = pool.submit(self.client.server_time)
            if c.conf.stock is not None:
                jobs = [pool.submit(self._stock_hits, c, t, {}, found[0])]
            else:
                jobs = [pool.submit(self._own_hits, c, t, {}, found[0])]
                jobs += [
                    pool.submit(self._related_hits, c, gkey, paths, t, {}, found[i])
                    for i, (gkey, paths) in enumerate(c.related_change_paths.items(), start=1)
                ]
            try:
                polled_at = clock.result()
                parts = [job.result() for job in jobs]
            except Exception as exc:
                raise self._fail(c.name, exc) from None
        for part in parts:
            for rid, stamp in part.items():
                hits[rid] = max(stamp, hits.get(rid, stamp))
        fresh = {rid: stamp for rid, stamp in hits.items() if delivered.get(str(rid)) != stamp}
        if not fresh:
            return []
        # The poll names the changed records (their keys); the sync it triggers reads them
        # whole (read_keys), so nothing is read twice. The names come from the poll's own
        # answers: the key and the columns reached through many2one links only.
        records: dict[int, dict[str, Any]] = {}
        for answers in found:
            records.update(answers)
        missing = sorted(set(fresh) - set(records))
        try:
            if missing:
                for rec in self.client.search_read(
                    c.conf.model,
                    self._domain(c, ["id", "in", missing]),
                    self._cheap(c)[1],
                    context=self._context(c),
                ):
                    records[int(rec["id"])] = rec
        except Exception as exc:
            raise self._fail(c.name, exc) from None
        rows = [self._named(c, records[rid]) for rid in sorted(fresh) if rid in records]
        stamp = max(polled_at or since, since + dt.timedelta(microseconds=1))
        for row in rows:
            row[CHANGE_COLUMN] = stamp
        with self._lock:
            keep = {k: s for k, s in delivered.items() if s >= window}
            keep.update({str(rid): s for rid, s in fresh.items()})
            self._poll[c.name] = _PollMemory(expected=stamp, floor=floor, delivered=keep)
        return rows

    def _cheap(self, c: Compiled) -> tuple[list[Column], list[str]]:
        """Columns reached through many2one links only (no list, no related model): cheap to
        read with any answer. They carry the entity's key and any parent key."""
        cols = [
            col
            for col in c.columns
            if col is c.key_column
            or (col.conf.model is None and all(h.kind == "m2o" for h in col.hops) and not col.conds)
        ]
        fields = sorted({"id", *(r for col in cols for r in col.requests)})
        return cols, fields

    def _named(self, c: Compiled, rec: Mapping[str, Any]) -> dict[str, Any]:
        """A changed record as the poll names it: id, key and the cheap columns."""
        row: dict[str, Any] = {"id": rec.get("id")}
        for col in self._cheap(c)[0]:
            row[col.name] = extract([rec], col)
        row[c.conf.key] = self._key_of(c, row)
        return row

    def _or_since(self, paths: Sequence[str], t: dt.datetime) -> list[Any]:
        clauses: list[Any] = [[f"{p}.last_modified_at" if p else "last_modified_at", ">=", t] for p in paths]
        return clauses if len(clauses) == 1 else ["OR", *clauses]

    def _model_hits(
        self,
        c: Compiled,
        model: str,
        domain: Sequence[Any],
        paths: Sequence[str],
        t: dt.datetime,
        extra_fields: Sequence[str] = (),
        extra: dict[int, dict[str, Any]] | None = None,
    ) -> dict[int, dt.datetime]:
        """Ids of ``model`` (within ``domain``) whose record or records along ``paths`` changed
        since ``t``, with the newest stamp. One OR-domain call for the joined paths; a
        one2many kept through a reference field (analytic entries' ``origin``) is polled on
        its own model instead (a join through a reference costs seconds on 10k rows)."""
        assert self._meta is not None
        joined: list[str] = []
        direct: list[tuple[str, str]] = []
        for path in paths:
            if path and "." not in path:
                info = self._meta.fields(model).get(path) or {}
                target, back = info.get("relation"), info.get("relation_field")
                through_reference = (
                    info.get("type") == "one2many"
                    and target
                    and back
                    and (self._meta.fields(str(target)).get(str(back)) or {}).get("type") == "reference"
                )
                if through_reference:
                    direct.append((str(target), str(back)))
                    continue
            joined.append(path)
        out: dict[int, dt.datetime] = {}

        def hit(rid: int, stamp: dt.datetime) -> None:
            out[rid] = max(stamp, out.get(rid, stamp))

        queries: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        if joined:
            fields = [f"{p}.last_modified_at" if p else "last_modified_at" for p in joined]
            args = (model, [*domain, self._or_since(joined, t)], [*fields, *extra_fields])
            queries.append(("joined", args, {"order": [("id", "ASC")], "context": self._context(c)}))
        for target, back in direct:
            args = (
                target,
                [["last_modified_at", ">=", t], [back, "like", f"{model},%"]],
                [back, "last_modified_at"],
            )
            queries.append((back, args, {"context": self._context(c)}))
        for (kind, _, _), rows in zip(queries, self._all(queries), strict=True):
            for row in rows:
                if kind == "joined":
                    stamp = _stamp(row)
                    if stamp is not None:
                        hit(int(row["id"]), stamp)
                        if extra is not None:
                            extra[int(row["id"])] = row
                    continue
                stamp = try_timestamp(row.get("last_modified_at"))
                name, _, rid = str(row.get(kind) or "").partition(",")
                if stamp is not None and name == model and rid.isdigit():
                    hit(int(rid), stamp)
        return out

    def _all(
        self, queries: Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]]
    ) -> list[list[dict[str, Any]]]:
        """``search_read`` of each query, one after the other: measured on 10k employees,
        sending one model's polls together was slower (trytond serves them on one GIL) than
        overlapping only the models' threads (``_changed``)."""
        return [self.client.search_read(*args, **kw) for _, args, kw in queries]

    def _own_hits(
        self, c: Compiled, t: dt.datetime, hits: dict[int, dt.datetime], found: dict[int, dict[str, Any]]
    ) -> dict[int, dt.datetime]:
        cheap = self._cheap(c)[1]
        for rid, stamp in self._model_hits(
            c, c.conf.model, c.conf.domain, c.change_paths, t, cheap, found
        ).items():
            hits[rid] = max(stamp, hits.get(rid, stamp))
        return hits

    def _related_hits(
        self,
        c: Compiled,
        gkey: tuple[str, str, str, str],
        paths: Sequence[str],
        t: dt.datetime,
        hits: dict[int, dt.datetime],
        found: dict[int, dict[str, Any]],
    ) -> dict[int, dt.datetime]:
        model, link, to_request, _ = gkey
        cols = c.related[gkey]
        polled: dict[int, dict[str, Any]] = {}  # the joined poll's rows carry the link already
        changed = self._model_hits(c, model, cols[0].conf.domain, paths, t, [link], polled)
        if not changed:
            return hits
        stamps: dict[Any, dt.datetime] = {}
        rows = list(polled.values())
        unlinked = sorted(set(changed) - set(polled))  # hits through a reference field
        if unlinked:
            rows += self.client.search_read(
                model,
                [*cols[0].conf.domain, ["id", "in", unlinked]],
                [link],
                context=self._context(c),
            )
        for row in rows:
            target = row.get(link)
            stamp = changed.get(int(row["id"]))
            if stamp is not None and target is not None:
                stamps[target] = max(stamp, stamps.get(target, stamp))
        if not stamps:
            return hits
        roots = self.client.search_read(
            c.conf.model,
            self._domain(c, [to_request, "in", sorted(stamps, key=str)]),
            [to_request, *self._cheap(c)[1]],
            context=self._context(c),
        )
        for root in roots:
            found[int(root["id"])] = root
            for value in _values_at(root, to_request):
                if value in stamps:
                    rid = int(root["id"])
                    hits[rid] = max(stamps[value], hits.get(rid, stamps[value]))
        return hits

    def _stock_hits(
        self, c: Compiled, t: dt.datetime, hits: dict[int, dt.datetime], found: dict[int, dict[str, Any]]
    ) -> dict[int, dt.datetime]:
        moves = self.client.search_read(
            "stock.move",
            [["state", "=", "done"], ["last_modified_at", ">=", t]],
            ["product", "last_modified_at"],
            context=self._context(c),
        )
        stamps: dict[int, dt.datetime] = {}
        for m in moves:
            stamp = try_timestamp(m.get("last_modified_at"))
            if stamp is not None and m.get("product") is not None:
                pid = int(m["product"])
                stamps[pid] = max(stamp, stamps.get(pid, stamp))
        if not stamps:
            return hits
        # Only the entity's own records (the domain): a PPE move is no shop's stock.
        mine = self.client.search_read(
            c.conf.model,
            self._domain(c, ["id", "in", sorted(stamps)]),
            self._cheap(c)[1],
            context=self._context(c),
        )
        for rec in mine:
            pid = int(rec["id"])
            hits[pid] = stamps[pid]
            found[pid] = rec
        return hits

    # --- write-back ----------------------------------------------------------------

    def write_back(self, entity: str, erp_key_field: str, key: str, fields: Mapping[str, Any]) -> int:
        c = self.compiled(entity)
        if not c.conf.writable:
            raise ConfigError(
                f"Tryton entity {entity!r} is not writable (set erp.entities.{entity}.writable: true)"
            )
        if not fields:
            return 0
        by_name = {col.name: col for col in c.columns}
        for name in fields:
            col = by_name.get(name)
            if col is None or col.conf.model is not None or col.dict_keys or col.conf.pick != "first":
                raise ConfigError(
                    f"Tryton entity {entity!r}: column {name!r} cannot be written back",
                    hint="only plain paths of the entity model are writable, not related or dict columns",
                )
        # The timestamps of erpsync's own last read (the plan's read) guard the write: a
        # person's edit since then makes Tryton refuse it (ConcurrencyException). Taken
        # before the fresh read below, which only supplies the ids of the records to touch.
        known = dict(self._stamps.get((entity, key), {}))
        try:
            rid = self._record_id(c, key)
            if rid is None:
                return 0
            page = next(iter(self._pages(c, [["id", "=", rid]])), [])
            if not page:
                return 0
            record = page[0]
            guard = {**_timestamps(record, c.conf.model, self._hop_models(c)), **known}
            changed = 0
            for name, value in fields.items():
                changed += self._write_column(c, by_name[name], record, value, guard)
        except ErpsyncError:
            raise
        except Exception as exc:
            raise self._fail(entity, exc) from None
        self._stamps.pop((entity, key), None)  # our own write moved them: the next read sets them
        return 1 if changed else 0

    def _record_id(self, c: Compiled, key: str) -> int | None:
        if c.key_column is None:
            return int(key) if key.lstrip("-").isdigit() else None
        found = self.client.search(
            c.conf.model,
            self._domain(c, [c.key_column.requests[0], "=", key]),
            limit=2,
            context=self._context(c),
        )
        return int(found[0]) if len(found) == 1 else None

    def _write_column(
        self, c: Compiled, col: Column, record: Mapping[str, Any], value: Any, guard: Mapping[str, str]
    ) -> int:
        hops = col.hops
        x2m = [i for i, h in enumerate(hops) if h.kind == "x2m"]
        ctx_base = dict(c.conf.context)
        if not x2m:
            owners = _items(record, hops)
            model = hops[-1].model if hops else c.conf.model
            if col.leaf == "id":  # a many2one re-pointed: write it on the record holding it
                holder_hops = hops[:-1]
                owners = _items(record, holder_hops)
                model = holder_hops[-1].model if holder_hops else c.conf.model
                field_name, new = hops[-1].name, (int(value) if value not in (None, "") else None)
            else:
                field_name, new = col.leaf, value
            if not owners or owners[0].get("id") is None:
                return 0
            oid = int(owners[0]["id"])
            self._write(model, [oid], {field_name: new}, guard, ctx_base)
            return 1
        last = x2m[-1]
        if last != len(hops) - 1 and not (last == len(hops) - 2 and col.leaf == "id"):
            raise ConfigError(
                f"Tryton entity {c.name!r}: column {col.name!r} goes past a one2many/many2many: not writable"
            )
        holder_hops = hops[:last]
        list_hop = hops[last]
        holders = _items(record, holder_hops)
        if not holders or holders[0].get("id") is None:
            return 0
        holder = holders[0]
        holder_model = holder_hops[-1].model if holder_hops else c.conf.model
        items = [it for it in _items(holder, [list_hop]) if all(_holds(cd, it) for cd in col.conds)]
        if list_hop.field_type == "many2many" and col.leaf == "id" and last == len(hops) - 1:
            old = [int(it["id"]) for it in items]
            new_id = int(value) if value not in (None, "") else None
            if new_id is not None and old == [new_id]:
                return 0
            actions: list[Any] = []
            gone = [i for i in old if i != new_id]
            if gone:
                actions.append(["remove", gone])
            if new_id is not None and new_id not in old:
                actions.append(["add", [new_id]])
            self._write(holder_model, [int(holder["id"])], {list_hop.name: actions}, guard, ctx_base)
            return 1
        if list_hop.field_type != "one2many":
            raise ConfigError(
                f"Tryton entity {c.name!r}: column {col.name!r}: only one2many values are writable"
            )
        if items:
            target = int(items[0]["id"])
            if value in (None, ""):
                self.client.model(
                    list_hop.model,
                    "delete",
                    [target],
                    context={**ctx_base, "_timestamp": _only(guard, list_hop.model, [target])},
                )
            else:
                self._write(list_hop.model, [target], {col.leaf: value}, guard, ctx_base)
            return 1
        if value in (None, ""):
            return 0
        values: dict[str, Any] = {col.leaf: value}
        for cond in col.conds:
            if cond.op == "=" and len(cond.steps) == 1:
                values[cond.steps[0]] = cond.value
        self._write(
            holder_model, [int(holder["id"])], {list_hop.name: [["create", [values]]]}, guard, ctx_base
        )
        return 1

    def _write(
        self,
        model: str,
        ids: list[int],
        values: Mapping[str, Any],
        guard: Mapping[str, str],
        ctx: Mapping[str, Any],
    ) -> None:
        context = {**ctx, "_timestamp": _only(guard, model, ids)}
        self.client.write(model, ids, dict(values), context)


def _only(guard: Mapping[str, str], model: str, ids: Sequence[int]) -> dict[str, str]:
    wanted = {f"{model},{i}" for i in ids}
    return {k: v for k, v in guard.items() if k in wanted}


def _values_at(record: Mapping[str, Any], request: str) -> list[Any]:
    """Values of a requested field path in a nested answer (ids for relational ends)."""
    parts = request.split(".")
    nodes: list[Any] = [record]
    for part in parts[:-1]:
        nxt: list[Any] = []
        for n in nodes:
            v = n.get(part + ".") if isinstance(n, Mapping) else None
            if isinstance(v, list):
                nxt.extend(v)
            elif v is not None:
                nxt.append(v)
        nodes = nxt
    out: list[Any] = []
    for n in nodes:
        if isinstance(n, Mapping):
            v = n.get(parts[-1])
            if isinstance(v, list):
                out.extend(v)
            elif v is not None:
                out.append(v)
    return out
