"""Helpers for the apply tests: a recording HTTP transport, the POST-protocol checker and the
sandbox-vs-ERP invariant checker.

``RecordingTransport`` sits under the platform clients (``Engine(..., transports=...)``) and
logs every request with its start/end time (``time.monotonic_ns``, comparable across
processes on one machine), status (``None`` when no complete answer arrived: a dropped
response, a reset, a killed process) and, for reads, the answer. With ``path`` set it
appends JSON lines as it goes, so the log of a process killed with SIGKILL survives up
to the request in flight.

``post_protocol_violations`` checks the intent protocol on that log: for every natural
key, a POST after an earlier POST of the same key is allowed only when a lookup that
started after the earlier POST ended, ended before the new one started, and found no
record with that key; and never after a POST that was answered 2xx.

``check_invariants`` compares the sandbox state with the ERP mapped by the engine's own
mapping set, independently of the engine's bindings: per natural key no duplicates, every
ERP row present, every pushed field equal after normalization (references are compared
through the remote ids this checker matched for the referenced rows).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from sync.core.keys import fold, fold_email, fold_identification
from sync.core.normalize import normalize_value, parse_decimal
from sync.core.records import Desired, EntityPolicy
from sync.engine.api import Engine
from sync.playground import Playground

KASA = "/api/v1/inventory"


# --- recording transport ------------------------------------------------------------------------


def _json(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards to a real ``AsyncHTTPTransport`` (built per event loop) and records each request."""

    def __init__(self, platform: str, log: list[dict[str, Any]], path: Path | None = None) -> None:
        self.platform = platform
        self.log = log
        self.path = path
        self._inner: httpx.AsyncHTTPTransport | None = None
        self._lock = threading.Lock()
        self._seq = 0

    def _write(self, line: dict[str, Any]) -> None:
        if self.path is not None:
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
                fh.flush()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._inner is None:
            self._inner = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=16)
            )
        with self._lock:
            self._seq += 1
            rid = f"{id(self)}-{self._seq}"
        body = _json(request.content) if request.method in ("POST", "PUT", "PATCH") else None
        entry: dict[str, Any] = {
            "rid": rid,
            "p": self.platform,
            "m": request.method,
            "path": request.url.path,
            "q": dict(request.url.params),
            "body": body,
            "t0": time.monotonic_ns(),
            "t1": None,
            "status": None,
            "resp": None,
        }
        self._write({"ev": "start", **entry})
        try:
            response = await self._inner.handle_async_request(request)
            content = await response.aread()
        except BaseException:
            entry["t1"] = time.monotonic_ns()
            self.log.append(entry)
            self._write({"ev": "end", "rid": rid, "t1": entry["t1"], "status": None, "resp": None})
            raise
        entry["t1"] = time.monotonic_ns()
        entry["status"] = response.status_code
        if request.method == "GET" and (entry["q"] or entry["path"].endswith("/categories")):
            entry["resp"] = _json(content)  # lookups only: listing pages are not needed
        self.log.append(entry)
        self._write(
            {"ev": "end", "rid": rid, "t1": entry["t1"], "status": entry["status"], "resp": entry["resp"]}
        )
        return httpx.Response(
            response.status_code,
            headers=[(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"],
            content=content,
            request=request,
        )

    async def aclose(self) -> None:
        if self._inner is not None:
            inner, self._inner = self._inner, None
            await inner.aclose()


def recording_transports(
    log: list[dict[str, Any]], folder: Path | None = None
) -> dict[str, httpx.AsyncBaseTransport]:
    return {
        p: RecordingTransport(p, log, folder / f"{p}.jsonl" if folder else None)
        for p in ("smartepi", "smartkasa")
    }


def read_logs(folder: Path) -> list[dict[str, Any]]:
    """Entries from JSON-lines logs; a request without an end line was in flight at a kill."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # a line cut by the kill
                continue
            if rec.pop("ev") == "start":
                out[f"{path.name}:{rec['rid']}"] = rec
            elif (e := out.get(f"{path.name}:{rec['rid']}")) is not None:
                e.update(t1=rec["t1"], status=rec["status"], resp=rec["resp"])
    return list(out.values())


# --- natural keys on the wire -------------------------------------------------------------------


def _records(resp: Any) -> list[dict[str, Any]]:
    if isinstance(resp, list):
        return [r for r in resp if isinstance(r, dict)]
    if isinstance(resp, dict):
        for name in ("data", "items", "results"):
            if isinstance(resp.get(name), list):
                return [r for r in resp[name] if isinstance(r, dict)]
        for value in resp.values():
            if isinstance(value, list) and all(isinstance(r, dict) for r in value):
                return value
    return []


def _unwrap(body: Any, name: str) -> Any:
    """A SmartKasa body, plain or wrapped (``{"product": {...}}``, ``{"batch": {...}}``)."""
    if isinstance(body, dict) and name in body:
        return body[name]
    if isinstance(body, dict) and isinstance(body.get("batch"), dict):
        return body["batch"].get(name)
    return body


def epi_key(resource: str, rec: dict[str, Any]) -> tuple[str, ...] | None:
    if resource == "employees":
        ident = fold_identification(rec.get("identification"))
        if ident:
            return ("employees", "id", ident)
        email = fold_email(rec.get("email"))
        return ("employees", "email", email) if email else None
    name = fold(rec.get("name"))
    return (resource, name) if name else None


def kasa_key(resource: str, rec: dict[str, Any]) -> tuple[str, ...] | None:
    if resource == "products":  # by erpsync's marker (the ERP key) when it has one, else barcode
        number = str(rec.get("number") or "").strip()
        tag = str(rec.get("alter_number") or "").strip()
        return ("products", tag or number, number) if tag or number else None
    if resource == "categories":
        title = fold(rec.get("title"))
        parent = rec.get("parent_id")
        return ("categories", title or "", "" if parent in (None, "") else str(parent))
    if resource == "cards":
        return ("cards", str(rec.get("product_id")), str(rec.get("shop_id")))
    return None


def post_keys(e: dict[str, Any]) -> list[tuple[str, ...]]:
    """Natural keys a create request carries ([] when it is not a create)."""
    if e["m"] != "POST":
        return []
    parts = e["path"].strip("/").split("/")
    if e["p"] == "smartepi":
        if len(parts) == 2 and parts[0] == "v1":
            k = epi_key(parts[1], e["body"] or {})
            return [k] if k else []
        return []
    if not e["path"].startswith(KASA):
        return []
    rest = e["path"][len(KASA) :].strip("/").split("/")
    resource = rest[0]
    if rest[1:] == ["batch"]:
        items = _unwrap(e["body"], resource) or []
        return [k for it in items if isinstance(it, dict) and (k := kasa_key(resource, it))]
    if len(rest) == 1:
        singular = {"products": "product", "categories": "category", "cards": "card"}.get(resource, resource)
        k = kasa_key(resource, _unwrap(e["body"], singular) or {})
        return [k] if k else []
    return []


def lookup_found(e: dict[str, Any]) -> tuple[str, set[tuple[str, ...]]] | None:
    """For a filtered GET (a natural-key lookup): its resource and the keys it found."""
    if e["m"] != "GET" or e["status"] != 200:
        return None
    if not e["q"] and not (e["p"] == "smartkasa" and e["path"] == KASA + "/categories"):
        return None  # a listing page, not a lookup (categories: one page, the lookup of a root)
    parts = e["path"].strip("/").split("/")
    if e["p"] == "smartepi":
        if len(parts) != 2 or not {"name", "identification", "email"} & set(e["q"]):
            return None
        resource = parts[1]
        found = {k for r in _records(e["resp"]) if (k := epi_key(resource, r))}
        if resource == "employees":  # a record matches on either of its keys
            found |= {
                ("employees", "email", m) for r in _records(e["resp"]) if (m := fold_email(r.get("email")))
            }
        return resource, found
    if not e["path"].startswith(KASA):
        return None
    rest = e["path"][len(KASA) :].strip("/").split("/")
    if len(rest) != 1:
        return None
    return rest[0], {k for r in _records(e["resp"]) if (k := kasa_key(rest[0], r))}


def _lookup_keys(e: dict[str, Any]) -> set[tuple[str, ...]]:
    """Keys a lookup asked for (so an empty answer proves absence of exactly those)."""
    q = e["q"]
    if e["p"] == "smartepi":
        resource = e["path"].strip("/").split("/")[1]
        if resource == "employees":
            if q.get("identification"):
                return {("employees", "id", fold_identification(q["identification"]) or "")}
            if q.get("email"):
                return {("employees", "email", fold_email(q["email"]) or "")}
            return set()
        return set()  # name lookups filter by a prefix: asked-for key taken from the POSTs
    resource = e["path"][len(KASA) :].strip("/")
    if resource == "cards" and q.get("product_id") and q.get("shop_id"):
        return {("cards", str(q["product_id"]), str(q["shop_id"]))}
    return set()


def _may_answer(e: dict[str, Any], key: tuple[str, ...]) -> bool:
    """Whether lookup ``e`` was a lookup for ``key``."""
    asked = _lookup_keys(e)
    if asked:
        return key in asked
    q = e["q"]
    if e["p"] == "smartepi" and q.get("name") and key[0] != "employees":
        resource = e["path"].strip("/").split("/")[1]
        return key[0] == resource and key[1].startswith(fold(str(q["name"])) or "\x00")
    if e["p"] == "smartkasa" and key[0] == "products" and e["path"] == KASA + "/products":
        # a barcode lookup answers for that barcode; a listing page (no filter) for any product
        if q.get("number"):
            return str(q["number"]).strip() == key[2]
        return not {"q", "category_id", "subgroup_id", "shop_id"} & set(q)
    if e["p"] == "smartkasa" and key[0] == "cards" and e["path"] == KASA + "/cards":
        return not {"product_id", "shop_id"} & set(q)  # the card list comes whole (not paginated)
    if e["p"] == "smartkasa" and key[0] == "categories" and e["path"].endswith("/categories"):
        # filtered by parent: answers for that parent; unfiltered: a listing of every category
        return "parent_id" not in q or str(q.get("parent_id") or "") == key[2]
    return False


def post_protocol_violations(entries: Iterable[dict[str, Any]]) -> list[str]:
    """See module docstring. 429 answers are ignored: the gateway refused before the app."""
    posts: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    lookups: list[dict[str, Any]] = []
    for e in entries:
        if e["status"] == 429:
            continue
        for k in post_keys(e):
            posts[k].append(e)
        if lookup_found(e) is not None:
            lookups.append(e)
    problems: list[str] = []
    for key, sent in posts.items():
        sent.sort(key=lambda e: e["t0"])
        for prev, nxt in itertools.pairwise(sent):
            if prev["status"] is not None and 200 <= prev["status"] < 300:
                problems.append(f"{key}: POST repeated after a {prev['status']} answer")
                continue
            prev_end = prev["t1"] if prev["t1"] is not None else prev["t0"]
            ok = False
            for lk in lookups:
                between = lk["t0"] >= prev_end and lk["t1"] is not None and lk["t1"] <= nxt["t0"]
                if between and _may_answer(lk, key):
                    found = lookup_found(lk)
                    assert found is not None
                    if key in found[1]:
                        problems.append(f"{key}: POST repeated although a lookup found the record")
                        ok = True
                        break
                    ok = True
            if not ok:
                problems.append(f"{key}: POST repeated without a lookup that found nothing")
    return problems


def committed_posts(entries: Iterable[dict[str, Any]]) -> Counter[tuple[str, ...]]:
    """Per natural key, the POSTs that may have committed (2xx or no answer: dropped/killed)."""
    out: Counter[tuple[str, ...]] = Counter()
    for e in entries:
        if e["status"] is None or 200 <= e["status"] < 300:
            for k in post_keys(e):
                out[k] += 1
    return out


# --- the ERP side ---------------------------------------------------------------------------------


@dataclass
class EntityData:
    policy: EntityPolicy
    desired: list[Desired]
    quarantined: int


def desired_records(engine: Engine) -> dict[tuple[str, str], EntityData]:
    """The ERP mapped by the runtime's mapping set (validation-quarantined rows excluded)."""
    rt = engine.runtime(None)
    policies = rt.policies()
    out: dict[tuple[str, str], EntityData] = {}
    for platform in rt.platforms():
        for entity, result in rt.mappings.map_all(platform, lambda ent: rt.source.read(ent)).items():
            out[(platform, entity)] = EntityData(
                policies[(platform, entity)], list(result.desired), len(result.quarantine)
            )
    return out


# --- the invariant check --------------------------------------------------------------------------


@dataclass
class Report:
    duplicates: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    ids: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # ERP key -> remote id
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.mismatches)

    def summary(self) -> str:
        def head(xs: list[str]) -> str:
            return f"{len(xs)} {xs[:8]}"

        return (
            f"duplicates={head(self.duplicates)} missing={head(self.missing)} "
            f"mismatches={head(self.mismatches)} extra={len(self.extra)}"
        )


def _same(expected: Any, actual: Any) -> bool:
    if expected is None or expected == "":
        return normalize_value(actual) in (None, [], {})
    if isinstance(expected, bool):
        return actual is expected
    if isinstance(expected, Decimal | int) and not isinstance(actual, bool):
        got = parse_decimal(actual) if actual is not None else None
        return got is not None and normalize_value(got) == normalize_value(expected)
    return bool(normalize_value(expected) == normalize_value(actual))


def _children_same(name: str, wanted: list[dict[str, Any]], have: list[dict[str, Any]]) -> bool:
    def canon(entries: list[dict[str, Any]], template: list[dict[str, Any]]) -> list[str]:
        keys = sorted({k for e in template for k in e}) if template else []
        out = []
        for e in entries:
            row = []
            for k in keys:
                v = e.get(k)
                if (isinstance(v, Decimal | int) and not isinstance(v, bool)) or (
                    isinstance(v, str) and k in ("count", "shop_id")
                ):
                    v = normalize_value(parse_decimal(v))
                else:
                    v = normalize_value(v)
                row.append(f"{k}={v}")
            out.append("|".join(row))
        return sorted(out)

    return canon(wanted, wanted) == canon(have, wanted)


def _remote_tables(pg: Playground) -> dict[tuple[str, str], list[dict[str, Any]]]:
    epi = pg.epi_state()
    kasa = pg.kasa_state()
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for res, rows in epi.items():
        out[("smartepi", res.replace("-", "_"))] = [r for r in rows if not r.get("_deleted")]
    cards: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in kasa.get("cards", []):
        cards[str(c.get("product_id"))].append(c)
    for res in ("categories", "products"):
        rows = [dict(r) for r in kasa.get(res, [])]
        if res == "products":
            for r in rows:
                r["cards"] = cards.get(str(r["id"]), [])
        out[("smartkasa", res)] = rows
    out[("smartkasa", "_cards")] = list(kasa.get("cards", []))
    return out


def _remote_key(platform: str, entity: str, rec: dict[str, Any]) -> tuple[str, ...] | None:
    res = entity.replace("_", "-")
    return epi_key(res, rec) if platform == "smartepi" else kasa_key(entity, rec)


def check_invariants(
    pg: Playground, data: dict[str, Any] | None = None, *, engine: Engine | None = None
) -> Report:
    """Sandbox state vs the ERP (see module docstring)."""
    engine = engine or Engine(pg.settings())
    wanted = data if data is not None else desired_records(engine)
    tables = _remote_tables(pg)
    report = Report()
    # Cards: one per (product, shop) at most.
    per_card = Counter(
        (str(c.get("product_id")), str(c.get("shop_id"))) for c in tables[("smartkasa", "_cards")]
    )
    report.duplicates += [f"smartkasa/cards {k} x{n}" for k, n in per_card.items() if n > 1]
    order = sorted(wanted.items(), key=lambda kv: (kv[0][0], kv[1].policy.level))
    for (platform, entity), ed in order:
        policy = ed.policy
        rows = tables.get((platform, entity), [])
        report.counts[(platform, entity)] = len(rows)
        index: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if (k := _remote_key(platform, entity, r)) is not None:
                index[k].append(r)
            m = fold_email(r.get("email")) if (platform, entity) == ("smartepi", "employees") else None
            if m and (k is None or k[1] != "email"):
                index[("employees", "email", m)].append(r)
        for k, rs in index.items():
            if len(rs) > 1:
                report.duplicates.append(f"{platform}/{entity} {k} x{len(rs)}")
        ids = report.ids.setdefault((platform, entity), {})
        refs = {n: fp.ref for n, fp in policy.fields.items() if fp.ref}

        def resolve(value: Any, target: str, platform: str = platform) -> Any:
            if value is None:
                return None
            if isinstance(value, list):
                return [resolve(v, target) for v in value]
            return report.ids.get((platform, target), {}).get(str(value), f"<unmatched {target} {value}>")

        pending = list(ed.desired)
        matched: set[str] = set()
        while pending:
            later: list[Desired] = []
            for d in pending:
                self_ref = [n for n, t in refs.items() if t == entity and d.fields.get(n) is not None]
                if any(str(d.fields[n]) not in ids for n in self_ref) and any(
                    str(d.fields[n]) in {x.erp_key for x in pending} for n in self_ref
                ):
                    later.append(d)
                    continue
                fields = {n: (resolve(v, refs[n]) if n in refs else v) for n, v in d.fields.items()}
                if policy.marker and fields.get(policy.marker) in (None, ""):
                    fields[policy.marker] = d.erp_key  # erpsync stamps the ERP key on create
                key = _remote_key(platform, entity, fields)
                hits = index.get(key, []) if key else []
                if key is None:
                    report.missing.append(f"{platform}/{entity} {d.erp_key}: no natural key")
                    continue
                if not hits:
                    report.missing.append(f"{platform}/{entity} {d.erp_key} {key}")
                    continue
                rec = hits[0]
                ids[d.erp_key] = str(rec["id"])
                matched.add(str(rec["id"]))
                for name, value in fields.items():
                    fp = policy.fields.get(name)
                    if fp is not None and fp.direction == "pull":
                        continue
                    if not _same(value, rec.get(name)):
                        report.mismatches.append(
                            f"{platform}/{entity} {d.erp_key}.{name}: "
                            f"ERP {value!r} vs remote {rec.get(name)!r}"
                        )
                for name, entries in d.children.items():
                    if not _children_same(name, entries, list(rec.get(name) or [])):
                        report.mismatches.append(
                            f"{platform}/{entity} {d.erp_key}.{name}: "
                            f"ERP {entries!r} vs remote {rec.get(name)!r}"
                        )
            if len(later) == len(pending):
                report.missing += [f"{platform}/{entity} {d.erp_key}: parent never matched" for d in later]
                break
            pending = later
        report.extra += [f"{platform}/{entity} {r['id']}" for r in rows if str(r["id"]) not in matched]
    return report


def iter_posts(stats: dict[str, Any]) -> Iterator[tuple[str, dict[str, int]]]:
    for route, counts in stats["routes"].items():
        if route.startswith("POST "):
            yield route, counts


# The fixture type of tests/engine/conftest.py::playground (imported by the tests from here,
# never from "conftest", whose module name other test folders share).
MakePlayground = Callable[..., Playground]
