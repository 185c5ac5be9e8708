"""Tryton sink: inbound records written into Tryton 8.2 over JSON-RPC, exactly once.

Where each stream lands (field guide §6):

- ``withdrawals`` / ``returns`` / ``exchanges`` → one ``stock.shipment.internal`` per record
  (an exchange is two: the returned item in, the given item out) between the PPE warehouse's
  storage location and the cost centre's consumption location ``CONS-<cost centre code>``,
  batched: ``create``, ``wait``, ``assign_force``, ``do`` for the whole batch (4 calls);
- ``receipts`` (with their ``receipt_items`` and ``payments``) → ``sale.point.sale``, then
  ``process`` and ``post``;
- ``z_reports`` → the point's open ``sale.point.cash.session``: ``end_amount`` = start +
  balance, ``close``, ``post``;
- ``stock`` (absolute counts) → one ``stock.inventory`` per shop and batch, ``confirm``;
- ``shifts`` and ``training_records`` have no home in stock Tryton: acknowledged, not written.

Exactly once. The idempotency key of a record is ``erpsync:<tenant>:<stream>:<remote id>``; it
goes into the shipment's ``reference`` and, when the optional ``erpsync_tryton`` module is
installed, into a unique ``external_id`` (§8). Around every write erpsync keeps a ledger in its
state store: an intent per record is committed *before* the create (``Intent``, platform
``tryton``), closed ``done`` with the Tryton id after the workflow finished, then the
record's ``InboundRecord`` marker is written. A record whose intent is still open (the server
died before it answered, the worker was killed mid-batch) is looked up before anything is
resent: by ``external_id`` or ``reference``; a POS sale, which has no writable key without
the module, by a fingerprint of its content (point, date, lines, payments) among the sales
this user created since the intent, that no other record has claimed. A record found is
adopted (its workflow is finished where it stopped); one not found is sent again. A record
never sent (no intent) is created without a lookup: 4 calls per batch of shipments.

A record Tryton refuses (``UserError``: an unknown product, a bad value) raises
``SinkRowError`` with Tryton's message after the rest of the call was written; the inbound
engine bisects down to that record and holds it as failed, the others land. A 503 that says
the batch is too large for SQLite (§7.4) splits the batch in two and resends.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sync.clients.tryton.errors import TrytonBusy, TrytonUserError, batch_too_large
from sync.errors import ConfigError, ErpsyncError, SinkError, utcnow
from sync.redact import scrub
from sync.sinks.base import InboundRow, SinkRowError, check_stream, dedupe
from sync.state.models import Intent
from sync.state.store import StateStore

log = logging.getLogger(__name__)

PLATFORM = "tryton"
SHIPMENT_STREAMS = ("withdrawals", "returns", "exchanges")
ACKNOWLEDGED = ("shifts", "training_records")
REFUSED = "refused: "  # the error prefix of an intent Tryton refused (rolled back: never landed)
_FAILED_STATUS = {"FAILED", "CANCELED", "CANCELLED", "ERROR", "REJECTED"}
_LOOKBACK = dt.timedelta(minutes=10)  # clock skew allowance for the fingerprint lookup
_CENT = Decimal("0.01")
DEFAULT_METHODS = {"0": "Готівка"}  # SmartKasa transaction_type_id (means of payment) → Tryton method


@dataclass
class _Work:
    """One Tryton record to bring to its final state, for one inbound row."""

    stream: str
    row: InboundRow
    key: str  # idempotency key (per Tryton record: an exchange has two)
    values: dict[str, Any]
    intent_id: int | None = None
    tryton_id: int | None = None
    fingerprint: tuple[Any, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TrytonSink:
    """Inbound records of one tenant into Tryton (one integration user per company)."""

    def __init__(
        self,
        client: Any,
        *,
        tenant: str,
        store: StateStore,
        options: Any = None,
        size_name: Callable[[InboundRow], str | None] | None = None,
    ) -> None:
        from sync.settings import TrytonSinkSettings

        self.client = client  # SyncTrytonClient (or anything with its methods)
        self.tenant = tenant
        self.store = store
        self.options = options or TrytonSinkSettings()
        self.size_name = size_name
        self.batch_size = int(self.options.batch_size)
        self._module: bool | None = {"on": True, "off": False}.get(self.options.module)
        self._products: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._variants: dict[int, list[dict[str, Any]]] = {}
        self._locations: dict[str, int | None] = {}
        self._cost_centers: dict[str, str | None] = {}
        self._points: dict[str, dict[str, Any] | None] = {}
        self._methods: dict[str, int] | None = None
        self._company: int | None = None
        self._user_id: int | None = None
        self._ratios: dict[int, Decimal] = {}
        self._busy = 0  # records set aside in this call: another worker's write in flight

    def __repr__(self) -> str:
        return f"TrytonSink(tenant={self.tenant!r}, client={self.client!r})"

    # --- the Sink protocol ------------------------------------------------------------

    def write(self, stream: str, records: Sequence[InboundRow]) -> int:
        return self.write_many({stream: records})

    def write_many(self, batches: Mapping[str, Sequence[InboundRow]]) -> int:
        for stream in batches:
            check_stream(stream)
        todo = self._unwritten(batches)
        if not todo:
            return 0
        written = 0
        refused: list[str] = []
        items = todo.pop("receipt_items", [])
        payments = todo.pop("payments", [])
        for stream in ACKNOWLEDGED:
            rows = todo.pop(stream, [])
            if rows:
                self._mark({stream: rows})
                written += len(rows)
        for stream in (*SHIPMENT_STREAMS, "receipts", "z_reports", "stock"):
            rows = todo.pop(stream, [])
            if not rows:
                continue
            try:
                if stream in SHIPMENT_STREAMS:
                    written += self._shipments(stream, rows, refused)
                elif stream == "receipts":
                    written += self._receipts(rows, items, payments, refused)
                elif stream == "z_reports":
                    written += self._z_reports(rows, refused)
                else:
                    written += self._stock(rows, refused)
            except TrytonUserError as exc:
                raise SinkRowError(f"Tryton refused the record: {_tryton_message(exc)}") from None
        if refused:
            raise SinkRowError(f"Tryton refused the record: {refused[0]}")
        if self._busy:
            busy, self._busy = self._busy, 0
            raise SinkError(
                f"{busy} record(s) are being written into Tryton by another worker",
                hint="they are retried later; the rest of the batch was written",
            )
        return written

    def close(self) -> None:
        for part in (self.client, self.size_name):
            close = getattr(part, "close", None)
            if callable(close):
                close()

    # --- ledger ----------------------------------------------------------------------

    def _key(self, stream: str, row: InboundRow, suffix: str = "") -> str:
        return f"erpsync:{self.tenant}:{stream}:{row.remote_id}{suffix}"

    def _erp_key(self, row: InboundRow) -> str:
        return f"{row.platform}:{row.remote_id}"[:255]

    def _unwritten(self, batches: Mapping[str, Sequence[InboundRow]]) -> dict[str, list[InboundRow]]:
        """Rows not delivered yet. A transaction is delivered once whatever its later versions
        say (a second shipment would move the goods twice); a stock count is re-applied when
        its content changed (it is absolute). A row whose intent is ``done`` landed before the
        marker was written: it is marked now and skipped."""
        todo: dict[str, list[InboundRow]] = {}
        for stream, rows in batches.items():
            rows = dedupe(rows)
            if stream == "stock" or stream in ("receipt_items", "payments"):
                fresh, _ = self.store.inbound_unwritten(self.tenant, stream, rows)
            else:
                by_platform: dict[str, list[InboundRow]] = {}
                for row in rows:
                    by_platform.setdefault(row.platform, []).append(row)
                fresh = []
                for platform, group in by_platform.items():
                    remote_ids = [r.remote_id for r in group]
                    have = self.store.inbound_marked(self.tenant, platform, stream, remote_ids)
                    fresh.extend(r for r in group if r.remote_id not in have)
            if fresh:
                todo[stream] = fresh
        landed: dict[str, list[InboundRow]] = {}
        for stream, rows in list(todo.items()):
            if stream in ("receipt_items", "payments") or stream in ACKNOWLEDGED:
                continue
            done = self._intents(stream, rows, states=("done",))
            if stream == "exchanges":  # both halves must be done
                done_rows = [
                    r
                    for r in rows
                    if done.get(self._erp_key(r) + "/in") is not None
                    and done.get(self._erp_key(r) + "/out") is not None
                ]
            else:
                done_rows = [r for r in rows if done.get(self._erp_key(r)) is not None]
            if done_rows and stream != "stock":
                landed[stream] = done_rows
                ids = {id(r) for r in done_rows}
                todo[stream] = [r for r in rows if id(r) not in ids]
        if landed:
            self._mark(landed)
        return {k: v for k, v in todo.items() if v}

    def _intents(
        self, stream: str, rows: Iterable[InboundRow], *, states: Sequence[str] | None = None
    ) -> dict[str, Intent]:
        """The newest intent per erp key (``<platform>:<remote id>[/in|/out]``) of ``rows``."""
        keys: list[str] = []
        for r in rows:
            base = self._erp_key(r)
            keys.extend([base, base + "/in", base + "/out"] if stream == "exchanges" else [base])
        out: dict[str, Intent] = {}
        for intent in self.store.intents_for_keys(
            self.tenant, PLATFORM, f"sink.{stream}", keys, states=states
        ):
            out[intent.erp_key] = intent  # the newest wins
        return out

    def _live(self, intent: Intent | None) -> bool:
        """Another writer's create in flight: an intent still pending and recent."""
        if intent is None or intent.state != "pending":
            return False
        stamp = intent.updated_at
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return (utcnow() - stamp).total_seconds() < float(self.options.claim_seconds)

    def _set_aside(self, works: list[_Work], intents: Mapping[str, Intent]) -> list[_Work]:
        """Leave the records another worker is writing right now to it (retried later)."""
        mine = []
        for w in works:
            if self._live(intents.get(self._intent_key(w))):
                self._busy += 1
            else:
                mine.append(w)
        return mine

    def _maybe_sent(self, intent: Intent | None) -> bool:
        if intent is None or intent.state in ("done", "abandoned"):
            return False
        return not (intent.state == "failed" and (intent.error or "").startswith(REFUSED))

    def _open(self, stream: str, works: Sequence[_Work]) -> None:
        """Commit the intents of ``works`` (those without one) before their create goes out."""
        new = [w for w in works if w.intent_id is None]
        if not new:
            return
        items: list[tuple[str, Mapping[str, Any], Any]] = [
            (self._intent_key(w), {"key": w.key}, w.row.chash) for w in new
        ]
        got = self.store.open_intents_many(self.tenant, PLATFORM, f"sink.{stream}", items)
        missing = [w for w in new if self._intent_key(w) not in got]
        if missing:  # another writer holds them right now: leave them for its outcome
            raise SinkError(
                f"{len(missing)} {stream} record(s) are being written by another worker",
                hint="they are retried after the other worker finished",
            )
        for w in new:
            w.intent_id = got[self._intent_key(w)]

    def _intent_key(self, w: _Work) -> str:
        base = self._erp_key(w.row)
        return base + w.key[len(self._key(w.stream, w.row)) :] if w.stream == "exchanges" else base

    def _close(self, works: Sequence[_Work], state: str, error: str | None = None) -> None:
        if state == "done":
            for w in works:
                if w.intent_id is not None:
                    self.store.set_intent(
                        w.intent_id, "done", remote_id=None if w.tryton_id is None else str(w.tryton_id)
                    )
            return
        self.store.set_intents([w.intent_id for w in works if w.intent_id is not None], state, error=error)

    def _mark(self, todo: Mapping[str, Sequence[InboundRow]]) -> None:
        if not self.store.inbound_mark_delivered(self.tenant, {k: dedupe(v) for k, v in todo.items()}):
            raise SinkError("could not record the delivered rows in the state store")

    # --- Tryton helpers --------------------------------------------------------------

    def module_installed(self) -> bool:
        """Whether the erpsync_tryton module is activated (``external_id`` on the models)."""
        if self._module is None:
            got = self.client.model("stock.shipment.internal", "fields_get", ["external_id"])
            self._module = bool(got and "external_id" in got)
        return self._module

    def company(self) -> int:
        if self._company is None:
            ctx = getattr(self.client, "base_context", None) or {}
            company = ctx.get("company")
            if not company:
                self.client.login()
                company = (getattr(self.client, "base_context", None) or {}).get("company")
            if not company:
                raise ConfigError(
                    "the Tryton user of this tenant has no current company",
                    hint="set the company of the integration user in Tryton (one user per company)",
                )
            self._company = int(company)
        return self._company

    def _call_split(self, fn: Callable[[list[Any]], list[Any]], items: list[Any]) -> list[Any]:
        """``fn(items)``, halving the batch while the server says it is too large (§7.4)."""
        try:
            return fn(items)
        except (TrytonBusy, ErpsyncError) as exc:
            if not batch_too_large(exc) or len(items) <= 1:
                raise
            mid = len(items) // 2
            log.info("tryton: batch of %d too large for the server, split in two", len(items))
            return self._call_split(fn, items[:mid]) + self._call_split(fn, items[mid:])

    def _create_isolating(self, model: str, works: list[_Work], refused: list[str]) -> list[_Work]:
        """Create ``works`` in one call; when Tryton refuses the call (a UserError rolls it all
        back), halve it until the refused records are alone: the others are created, each
        refused one has its intent closed as refused and its reason in ``refused``."""
        try:
            ids = self._call_split(lambda part: self.client.create(model, [w.values for w in part]), works)
        except TrytonUserError as exc:
            if len(works) == 1:
                w = works[0]
                self._close(works, "failed", error=REFUSED + _tryton_message(exc))
                refused.append(f"{w.stream} {w.row.remote_id}: {_tryton_message(exc)}")
                return []
            mid = len(works) // 2
            return self._create_isolating(model, works[:mid], refused) + self._create_isolating(
                model, works[mid:], refused
            )
        for w, tryton_id in zip(works, ids, strict=True):
            w.tryton_id = int(tryton_id)
        return works

    def _button(self, model: str, method: str, ids: list[int]) -> None:
        if ids:
            self._call_split(lambda part: self.client.model(model, method, part) or [], ids)

    def _prefetch_locations(self, codes: Iterable[str]) -> None:
        want = sorted({c for c in codes if c and c not in self._locations})
        if not want:
            return
        rows = self.client.search_read(
            "stock.location", [("code", "in", want)], ["code"], context={"active_test": False}
        )
        for code in want:
            self._locations[code] = None
        for r in rows:
            self._locations[r["code"]] = int(r["id"])

    def _location(self, code: str) -> int | None:
        if code not in self._locations:
            rows = self.client.search_read(
                "stock.location", [("code", "=", code)], ["id"], limit=1, context={"active_test": False}
            )
            self._locations[code] = int(rows[0]["id"]) if rows else None
        return self._locations[code]

    def _warehouse_storage(self, code: str) -> int:
        key = f"storage:{code}"
        if key not in self._locations:
            rows = self.client.search_read(
                "stock.location",
                [("code", "=", code), ("type", "=", "warehouse")],
                ["storage_location"],
                limit=1,
            )
            self._locations[key] = int(rows[0]["storage_location"]) if rows else None
        got = self._locations[key]
        if got is None:
            raise ConfigError(
                f"sink.tryton.warehouse: no Tryton warehouse with code {code!r}",
                hint="set sink.tryton.warehouse to the code of the PPE warehouse",
            )
        return got

    def _resolve_cost_centers(self, keys: Iterable[str]) -> None:
        """Cost centre ERP keys (an analytic account code, or its id) → their codes."""
        want = sorted({k for k in keys if k and k not in self._cost_centers})
        if not want:
            return
        ids = [int(k) for k in want if k.isdigit()]
        domain: list[Any] = ["OR", ("code", "in", want)]
        if ids:
            domain.append(("id", "in", ids))
        rows = self.client.search_read(
            "analytic_account.account", domain, ["code"], context={"active_test": False}
        )
        for k in want:
            self._cost_centers[k] = None
        for r in rows:
            if r.get("code") in want:
                self._cost_centers[r["code"]] = r["code"]
            if str(r["id"]) in want:
                self._cost_centers[str(r["id"])] = r.get("code")

    def _resolve_products(self, keys: Iterable[str], kind: str) -> None:
        """Product ERP keys → ``product.product`` rows. ``kind`` says what a key is: a
        ``template`` id (its variants are read; the record's size picks one), a ``product``
        id, or a ``code`` (a product code, else a template code)."""
        want = sorted({k for k in keys if k and (kind, k) not in self._products})
        if not want:
            return
        fields = [
            "code",
            "default_uom",
            "default_uom.digits",
            "template",
            "template.code",
            "attributes",
            "active",
        ]
        ids = [int(k) for k in want if k.isdigit()]
        if kind == "template":
            domain: list[Any] = [("template", "in", ids)]
        elif kind == "product":
            domain = [("id", "in", ids)]
        else:
            domain = ["OR", ("code", "in", want), ("template.code", "in", want)]
        rows = self.client.search_read("product.product", domain, fields, context={"active_test": False})
        for k in want:
            self._products[(kind, k)] = None
        for r in rows:
            template = int(r["template"])
            self._variants.setdefault(template, [])
            if all(v["id"] != r["id"] for v in self._variants[template]):
                self._variants[template].append(r)
            if kind == "template":
                self._products[(kind, str(template))] = {**r, "_by_template": True}
            elif kind == "product":
                self._products[(kind, str(r["id"]))] = r
            else:
                if r.get("code") in want:
                    self._products[(kind, r["code"])] = r
                tcode = (r.get("template.") or {}).get("code")
                if tcode in want and self._products.get((kind, tcode)) is None:
                    self._products[(kind, tcode)] = {**r, "_by_template": True}

    def _product(self, key: Any, kind: str) -> dict[str, Any] | None:
        return self._products.get((kind, str(key))) if key is not None else None

    def _variant(self, row: InboundRow, key: str | None) -> dict[str, Any]:
        """The ``product.product`` a transaction moves (its size picks the variant)."""
        if not key:
            raise _Refused("no product (the record has no ERP product key)")
        product = self._product(key, self.options.ppe_product_key)
        if product is None:
            raise _Refused(f"product {key!r} is not in Tryton")
        if not product.get("_by_template"):
            return product
        variants = [v for v in self._variants.get(int(product["template"]), []) if v.get("active", True)]
        size = self.size_name(row) if self.size_name is not None else None
        size = size or _payload_size(row.payload)
        if size is not None:
            for v in variants:
                attrs = v.get("attributes") or {}
                if str(attrs.get("tamanho", "")).casefold() == size.casefold():
                    return v
            raise _Refused(f"product {key!r} has no variant of size {size!r} in Tryton")
        if len(variants) == 1:
            return variants[0]
        raise _Refused(
            f"product {key!r} has {len(variants)} sizes in Tryton and the record's size"
            f" {row.fields.get('size_id')!r} cannot be matched to one"
        )

    # --- withdrawals, returns, exchanges -------------------------------------------------

    def _shipments(self, stream: str, rows: list[InboundRow], refused: list[str]) -> int:
        storage = self._warehouse_storage(self.options.warehouse)
        self._resolve_products(
            (
                str(k)
                for r in rows
                for k in (r.fields.get("product_key"), r.fields.get("returned_product_key"))
                if k is not None
            ),
            self.options.ppe_product_key,
        )
        self._resolve_cost_centers(
            str(r.fields["cost_center_key"]) for r in rows if r.fields.get("cost_center_key")
        )
        prefix = self.options.consumption_prefix
        self._prefetch_locations(
            [
                *(f"{prefix}{code}" for code in self._cost_centers.values() if code),
                *([self.options.default_consumption] if self.options.default_consumption else []),
            ]
        )
        company = self.company()
        works: list[_Work] = []
        skipped: list[InboundRow] = []
        bad: list[tuple[InboundRow, str]] = []
        for row in rows:
            status = str(row.fields.get("status") or "").upper()
            if status in _FAILED_STATUS:
                skipped.append(row)  # nothing left the machine: nothing to move
                continue
            try:
                works.extend(self._shipment_works(stream, row, storage, company))
            except _Refused as exc:
                bad.append((row, str(exc)))
        if skipped:
            self._mark({stream: skipped})
        written = self._land_shipments(stream, works, refused)
        for row, reason in bad:
            refused.append(f"{stream} {row.remote_id}: {reason}")
        return written + len(skipped)

    def _consumption(self, row: InboundRow) -> int:
        cc_key = row.fields.get("cost_center_key")
        code = self._cost_centers.get(str(cc_key)) if cc_key else None
        if cc_key and code is None:
            raise _Refused(f"cost centre {cc_key!r} is not in Tryton")
        loc_code = f"{self.options.consumption_prefix}{code}" if code else self.options.default_consumption
        if not loc_code:
            raise _Refused(
                "no cost centre on the record and no sink.tryton.default_consumption location configured"
            )
        loc = self._location(loc_code)
        if loc is None:
            raise _Refused(f"no consumption location {loc_code!r} in Tryton (create it, type lost and found)")
        return loc

    def _shipment_works(self, stream: str, row: InboundRow, storage: int, company: int) -> list[_Work]:
        qty = row.fields.get("quantity")
        if qty is None or Decimal(str(qty)) <= 0:
            raise _Refused(f"quantity {qty!r} is not a positive number")
        consumption = self._consumption(row)
        employee = row.fields.get("employee_key")
        legs: list[tuple[str, str | None, int, int]] = []
        if stream == "withdrawals":
            legs.append(("", row.fields.get("product_key"), storage, consumption))
        elif stream == "returns":
            legs.append(("", row.fields.get("product_key"), consumption, storage))
        else:
            legs.append(("/in", row.fields.get("returned_product_key"), consumption, storage))
            legs.append(("/out", row.fields.get("product_key"), storage, consumption))
        created = _date(row.fields.get("created_at")) or utcnow().date()
        works = []
        for suffix, product_key, src, dst in legs:
            product = self._variant(row, product_key)
            key = self._key(stream, row, suffix)
            reference = key + (f"|employee:{employee}" if employee else "")
            values = {
                "reference": reference,
                "company": company,
                "from_location": src,
                "to_location": dst,
                "planned_date": created,
                "planned_start_date": created,
                "effective_date": created,
                "moves": [
                    (
                        "create",
                        [
                            {
                                "product": int(product["id"]),
                                "quantity": float(Decimal(str(qty))),
                                "unit": int(product["default_uom"]),
                                "from_location": src,
                                "to_location": dst,
                                "company": company,
                                "planned_date": created,
                                "effective_date": created,
                            }
                        ],
                    )
                ],
            }
            works.append(_Work(stream, row, key, values))
        return works

    def _land_shipments(self, stream: str, works: list[_Work], refused: list[str]) -> int:
        if not works:
            return 0
        model = "stock.shipment.internal"
        module = self.module_installed()
        intents = self._intents(stream, [w.row for w in works])
        works = self._set_aside(works, intents)
        for w in works:
            intent = intents.get(self._intent_key(w))
            if intent is not None and intent.state in ("pending", "unknown"):
                w.intent_id = intent.id
            w.extra["maybe_sent"] = self._maybe_sent(intent)
        # recovery: records whose create may have landed are looked up before anything is resent
        suspects = [w for w in works if w.extra["maybe_sent"]]
        if suspects:
            self._adopt_shipments(suspects, module)
        fresh = [w for w in works if w.tryton_id is None]
        if module:
            for w in fresh:
                w.values["external_id"] = w.key
        landed: list[_Work] = [w for w in works if w.tryton_id is not None]
        for i in range(0, len(fresh), self.batch_size):
            batch = fresh[i : i + self.batch_size]
            self._open(stream, batch)
            landed.extend(self._create_isolating(model, batch, refused))
        if not landed:
            return 0
        self._finish_shipments(landed)
        self._close(landed, "done")
        rows = _complete_rows(landed, works)
        self._mark({stream: rows})
        return len(rows)

    def _adopt_shipments(self, works: list[_Work], module: bool) -> None:
        field_ = "external_id" if module else "reference"
        domain: list[Any] = ["OR"]
        for w in works:
            if module:
                domain.append(("external_id", "=", w.key))
            else:
                domain.append(("reference", "=", w.key))
                domain.append(("reference", "like", _like_escape(w.key) + "|%"))
        found: dict[str, dict[str, Any]] = {}
        for i in range(1, len(domain), 60):
            part = ["OR", *domain[i : i + 60]]
            for r in self.client.search_read(
                "stock.shipment.internal", part, ["reference", "state", *(["external_id"] if module else [])]
            ):
                value = str(r.get(field_) or "")
                found[value.split("|", 1)[0]] = r
        for w in works:
            hit = found.get(w.key)
            if hit is not None:
                w.tryton_id = int(hit["id"])
                w.extra["state"] = hit.get("state")
                log.info("tryton: %s already in Tryton as shipment %s: adopted", w.key, hit["id"])

    def _finish_shipments(self, works: list[_Work]) -> None:
        """Bring shipments to ``done``: wait, assign_force, do, each for the whole batch."""
        model = "stock.shipment.internal"
        state: dict[int, str] = {
            int(w.tryton_id): str(w.extra.get("state") or "draft") for w in works if w.tryton_id is not None
        }
        steps: tuple[tuple[str, set[str] | None, str], ...] = (
            ("wait", {"draft", "request"}, "waiting"),
            ("assign_force", {"waiting"}, "assigned"),
            ("do", None, "done"),
        )
        for step, before, after in steps:
            if before is None:
                ids = [i for i, s in state.items() if s not in ("done", "cancelled")]
            else:
                ids = [i for i, s in state.items() if s in before]
            for i in range(0, len(ids), self.batch_size):
                self._button(model, step, ids[i : i + self.batch_size])
            for i in ids:
                state[i] = after
        bad = [i for i, s in state.items() if s == "cancelled"]
        if bad:
            raise SinkError(f"shipment(s) {bad} were cancelled in Tryton", hint="check them in Tryton")

    # --- POS receipts ----------------------------------------------------------------

    def _points_by_shop(self, shops: Iterable[str]) -> None:
        want = sorted({s for s in shops if s and s not in self._points})
        if not want:
            return
        rows = self.client.search_read("sale.point", [], ["name", "storage_location.parent.code"])
        for shop in want:
            name = self.options.points.get(shop)
            hit = None
            for r in rows:
                wh = ((r.get("storage_location.") or {}).get("parent.") or {}).get("code")
                if (name and r["name"] == name) or (not name and wh == shop):
                    hit = r
                    break
            self._points[shop] = hit

    def _payment_methods(self) -> dict[str, int]:
        if self._methods is None:
            rows = self.client.search_read("sale.point.payment.method", [], ["name"])
            self._methods = {r["name"]: int(r["id"]) for r in rows}
        return self._methods

    def _receipts(
        self,
        rows: list[InboundRow],
        items: list[InboundRow],
        payments: list[InboundRow],
        refused: list[str],
    ) -> int:
        by_receipt_items: dict[str, list[InboundRow]] = {}
        for it in items:
            by_receipt_items.setdefault(str(it.fields.get("receipt_id")), []).append(it)
        by_receipt_pay: dict[str, list[InboundRow]] = {}
        for p in payments:
            by_receipt_pay.setdefault(str(p.fields.get("receipt_id")), []).append(p)
        self._points_by_shop(str(r.fields.get("shop_key") or "") for r in rows)
        shop_kind = self.options.shop_product_key
        self._resolve_products(
            (str(i.fields["product_key"]) for i in items if i.fields.get("product_key") is not None),
            shop_kind,
        )
        self._prefetch_ratios(
            int(prod["id"])
            for i in items
            if (prod := self._product(i.fields.get("product_key"), shop_kind)) is not None
        )
        company = self.company()
        methods = self._payment_methods()
        works: list[_Work] = []
        other = [r for r in rows if not _is_sale(r)]
        if other:  # nothing to write in Tryton: acknowledged with their items and payments
            self._mark(
                {
                    "receipts": other,
                    "receipt_items": [i for r in other for i in by_receipt_items.get(r.remote_id, [])],
                    "payments": [p for r in other for p in by_receipt_pay.get(r.remote_id, [])],
                }
            )
        rows = [r for r in rows if _is_sale(r)]
        for row in rows:
            try:
                works.append(
                    self._sale_work(
                        row,
                        by_receipt_items.get(row.remote_id, []),
                        by_receipt_pay.get(row.remote_id, []),
                        company,
                        methods,
                    )
                )
            except _Refused as exc:
                refused.append(f"receipts {row.remote_id}: {exc}")
        if not works:
            return 0
        module = self.module_installed()
        intents = self._intents("receipts", [w.row for w in works])
        works = self._set_aside(works, intents)
        for w in works:
            intent = intents.get(self._intent_key(w))
            if intent is not None and intent.state in ("pending", "unknown"):
                w.intent_id = intent.id
            if self._maybe_sent(intent):
                assert intent is not None
                w.extra["since"] = intent.created_at
        suspects = [w for w in works if "since" in w.extra]
        if suspects:
            self._adopt_sales(suspects, module)
        fresh = [w for w in works if w.tryton_id is None]
        if module:
            for w in fresh:
                w.values["external_id"] = w.key
        landed = [w for w in works if w.tryton_id is not None]
        for i in range(0, len(fresh), self.batch_size):
            batch = fresh[i : i + self.batch_size]
            self._open("receipts", batch)
            landed.extend(self._create_isolating("sale.point.sale", batch, refused))
        if not landed:
            return 0
        self._finish_sales(landed)
        self._close(landed, "done")
        self._mark(
            {
                "receipts": [w.row for w in landed],
                "receipt_items": [i for w in landed for i in w.extra["items"]],
                "payments": [p for w in landed for p in w.extra["payments"]],
            }
        )
        return len(landed) + sum(len(w.extra["items"]) + len(w.extra["payments"]) for w in landed)

    def _sale_work(
        self,
        row: InboundRow,
        items: list[InboundRow],
        payments: list[InboundRow],
        company: int,
        methods: Mapping[str, int],
    ) -> _Work:
        shop = str(row.fields.get("shop_key") or "")
        point = self._points.get(shop)
        if point is None:
            raise _Refused(f"no Tryton point of sale for shop {shop or row.fields.get('shop_id')!r}")
        if not items:
            raise _Refused("the receipt has no items")
        sign = Decimal(-1) if _is_refund(row) else Decimal(1)
        lines = []
        fp_lines = []
        total = Decimal(0)
        for item in items:
            key = item.fields.get("product_key")
            product = self._product(key, self.options.shop_product_key)
            if product is None:
                shown = key or item.fields.get("product_id")
                raise _Refused(f"item {item.remote_id}: product {shown!r} is not in Tryton")
            qty = _fit(Decimal(str(item.fields.get("quantity") or 0)), product)
            if qty <= 0:
                raise _Refused(f"item {item.remote_id}: quantity {qty} is not positive")
            amount = item.fields.get("amount")
            price = item.fields.get("price")
            # a weighed quantity rounded to the unit's precision keeps the line's amount
            gross = Decimal(str(amount)) / qty if amount is not None else Decimal(str(price or 0))
            gross = gross.quantize(Decimal("0.0001"))
            list_price = self._list_price(product, gross)
            q = sign * qty
            lines.append(
                {
                    "product": int(product["id"]),
                    "quantity": float(q),
                    "unit_list_price": list_price,
                    "unit_gross_price": gross,
                }
            )
            fp_lines.append((int(product["id"]), float(q), _price(gross)))
            total += (q * gross).quantize(_CENT)
        pays: list[dict[str, Any]] = []
        paid = Decimal(0)
        fp_pays = []
        good = [p for p in payments if p.fields.get("payment_type_id") != 1]  # 1: a cancellation
        for p in good:
            amount = abs(Decimal(str(p.fields.get("amount") or 0))) * sign
            means = str(
                p.fields.get("transaction_type_id") if p.fields.get("transaction_type_id") is not None else ""
            )
            method_name = {**DEFAULT_METHODS, **self.options.payment_methods}.get(
                means, self.options.default_payment_method
            )
            method = methods.get(method_name)
            if method is None:
                raise _Refused(f"no Tryton payment method {method_name!r} (sink.tryton.payment_methods)")
            pays.append({"method": method, "amount": amount})
            paid += amount
        if not pays:
            method = methods.get(self.options.default_payment_method)
            if method is None:
                raise _Refused(f"no Tryton payment method {self.options.default_payment_method!r}")
            pays.append({"method": method, "amount": total})
            paid = total
        if paid != total:  # the till rounded the total: the payments follow Tryton's total
            if abs(paid - total) > Decimal("0.10"):
                raise _Refused(f"payments {paid} do not match the items' total {total}")
            pays[-1]["amount"] += total - paid
        for pay in pays:
            fp_pays.append((int(pay["method"]), str(Decimal(pay["amount"]).quantize(_CENT))))
        date = _date(row.fields.get("created_at")) or utcnow().date()
        values = {
            "company": company,
            "point": int(point["id"]),
            "date": date,
            "lines": [("create", lines)],
            "payments": [("create", pays)],
        }
        w = _Work("receipts", row, self._key("receipts", row), values)
        w.fingerprint = (int(point["id"]), date.isoformat(), tuple(sorted(fp_lines)), tuple(sorted(fp_pays)))
        w.extra.update(items=items, payments=payments)
        return w

    def _prefetch_ratios(self, ids: Iterable[int]) -> None:
        want = sorted({i for i in ids if i not in self._ratios})
        for i in range(0, len(want), 1000):
            rows = self.client.read(
                "product.product", want[i : i + 1000], ["list_price_used", "gross_price_used"]
            )
            for r in rows:
                lp, gp = r.get("list_price_used"), r.get("gross_price_used")
                self._ratios[int(r["id"])] = Decimal(str(lp)) / Decimal(str(gp)) if lp and gp else Decimal(1)

    def _list_price(self, product: Mapping[str, Any], gross: Decimal) -> Decimal:
        """The net unit price for a gross one, by the product's own list/gross ratio in Tryton."""
        pid = int(product["id"])
        ratio = self._ratios.get(pid)
        if ratio is None:
            rows = self.client.read("product.product", [pid], ["list_price_used", "gross_price_used"])
            lp = rows[0].get("list_price_used") if rows else None
            gp = rows[0].get("gross_price_used") if rows else None
            ratio = Decimal(str(lp)) / Decimal(str(gp)) if lp and gp else Decimal(1)
            self._ratios[pid] = ratio
        return (gross * ratio).quantize(Decimal("0.0001"))

    def _adopt_sales(self, works: list[_Work], module: bool) -> None:
        if module:
            rows = self.client.search_read(
                "sale.point.sale", [("external_id", "in", [w.key for w in works])], ["external_id", "state"]
            )
            by_key = {r["external_id"]: r for r in rows}
            for w in works:
                hit = by_key.get(w.key)
                if hit is not None:
                    w.tryton_id, w.extra["state"] = int(hit["id"]), hit["state"]
            return
        # no key in Tryton: a fingerprint among this user's sales since the intent, unclaimed
        since = min(w.extra["since"] for w in works) - _LOOKBACK
        uid = self._uid()
        points = sorted({w.values["point"] for w in works})
        cands = self.client.search_read(
            "sale.point.sale",
            [
                ("point", "in", points),
                ("create_uid", "=", uid),
                ("create_date", ">=", since.replace(tzinfo=None)),
            ],
            [
                "point",
                "date",
                "state",
                "lines.product",
                "lines.quantity",
                "lines.unit_gross_price",
                "payments.method",
                "payments.amount",
            ],
        )
        claimed = self._claimed("receipts", [int(c["id"]) for c in cands])
        pool: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for c in cands:
            if int(c["id"]) in claimed:
                continue
            fp = (
                int(c["point"]),
                _date(c["date"]).isoformat(),  # type: ignore[union-attr]
                tuple(
                    sorted(
                        (int(ln["product"]), float(ln["quantity"]), _price(ln["unit_gross_price"]))
                        for ln in c.get("lines.") or []
                    )
                ),
                tuple(
                    sorted(
                        (int(p["method"]), str(Decimal(str(p["amount"])).quantize(_CENT)))
                        for p in c.get("payments.") or []
                    )
                ),
            )
            pool.setdefault(fp, []).append(c)
        for w in works:
            hits = pool.get(w.fingerprint or ())
            if hits:
                hit = hits.pop(0)
                w.tryton_id, w.extra["state"] = int(hit["id"]), hit["state"]
                log.info("tryton: receipt %s found by fingerprint as sale %s: adopted", w.key, hit["id"])

    def _uid(self) -> int:
        if self._user_id is None:
            client = getattr(self.client, "client", None)
            uid = getattr(client, "user_id", None) or getattr(self.client, "user_id", None)
            if uid is None:
                self.client.login()
                uid = getattr(getattr(self.client, "client", None), "user_id", None)
            if uid is None:
                raise SinkError("the Tryton user id is unknown after login")
            self._user_id = int(uid)
        return self._user_id

    def _claimed(self, stream: str, tryton_ids: Sequence[int]) -> set[int]:
        if not tryton_ids:
            return set()
        ids = [str(i) for i in tryton_ids]
        return {int(r) for r in self.store.done_remote_ids(self.tenant, PLATFORM, f"sink.{stream}", ids)}

    def _finish_sales(self, works: list[_Work]) -> None:
        to_process = [w.tryton_id for w in works if w.extra.get("state", "open") == "open"]
        to_post = [w.tryton_id for w in works if w.extra.get("state", "open") in ("open", "done")]
        for i in range(0, len(to_process), self.batch_size):
            self._button("sale.point.sale", "process", [x for x in to_process[i : i + self.batch_size] if x])
        for i in range(0, len(to_post), self.batch_size):
            self._button("sale.point.sale", "post", [x for x in to_post[i : i + self.batch_size] if x])

    # --- Z-reports: close the point's cash session ------------------------------------

    def _z_reports(self, rows: list[InboundRow], refused: list[str]) -> int:
        self._points_by_shop(str(r.fields.get("shop_key") or "") for r in rows)
        module = self.module_installed()
        intents = self._intents("z_reports", rows)
        done_rows: list[InboundRow] = []
        for row in rows:
            point = self._points.get(str(row.fields.get("shop_key") or ""))
            if point is None:
                refused.append(
                    f"z_reports {row.remote_id}: no Tryton point of sale for shop"
                    f" {row.fields.get('shop_key') or row.fields.get('shop_id')!r}"
                )
                continue
            w = _Work("z_reports", row, self._key("z_reports", row), {})
            intent = intents.get(self._erp_key(row))
            if self._live(intent):
                self._busy += 1
                continue
            session_id: int | None = None
            if self._maybe_sent(intent) and intent is not None:
                w.intent_id = intent.id if intent.state in ("pending", "unknown") else None
                session_id = (intent.natural_key or {}).get("session")
            if session_id is None:
                sessions = self.client.search_read(
                    "sale.point.cash.session",
                    [("point", "=", int(point["id"])), ("state", "=", "open")],
                    ["state"],
                    limit=1,
                    order=[("id", "DESC")],
                )
                if not sessions:  # no cash moved since the last close: nothing to close
                    done_rows.append(row)
                    continue
                session_id = int(sessions[0]["id"])
            if w.intent_id is None:
                got = self.store.open_intents_many(
                    self.tenant,
                    PLATFORM,
                    "sink.z_reports",
                    [(self._erp_key(row), {"key": w.key, "session": session_id}, row.chash)],
                )
                w.intent_id = got.get(self._erp_key(row))
            (session,) = self.client.read(
                "sale.point.cash.session", [session_id], ["state", "start_amount", "balance"]
            )
            try:
                if session["state"] == "open":
                    end = Decimal(str(session["start_amount"] or 0)) + Decimal(str(session["balance"] or 0))
                    values: dict[str, Any] = {"end_amount": end}
                    if module:
                        values["external_id"] = w.key
                    self.client.write("sale.point.cash.session", [session_id], values)
                    self.client.model("sale.point.cash.session", "close", [session_id])
                    session["state"] = "closed"
                if session["state"] == "closed":
                    self.client.model("sale.point.cash.session", "post", [session_id])
            except TrytonUserError as exc:
                self._close([w], "failed", error=REFUSED + _tryton_message(exc))
                refused.append(f"z_reports {row.remote_id}: {_tryton_message(exc)}")
                continue
            w.tryton_id = session_id
            self._close([w], "done")
            done_rows.append(row)
        if done_rows:
            self._mark({"z_reports": done_rows})
        return len(done_rows)

    # --- stock counts: one inventory per shop and batch -----------------------------

    def _stock(self, rows: list[InboundRow], refused: list[str]) -> int:
        shop_kind = self.options.shop_product_key
        self._resolve_products(
            (str(r.fields["product_key"]) for r in rows if r.fields.get("product_key")), shop_kind
        )
        module = self.module_installed()
        company = self.company()
        by_shop: dict[str, list[InboundRow]] = {}
        for row in rows:
            shop = str(row.fields.get("shop_key") or "")
            if not shop:
                refused.append(f"stock {row.remote_id}: the count has no shop")
                continue
            by_shop.setdefault(shop, []).append(row)
        written = 0
        for shop, group in by_shop.items():
            storage = self._warehouse_storage(shop)
            lines, ok = [], []
            for row in group:
                product = self._product(row.fields.get("product_key"), shop_kind)
                if product is None:
                    shown = row.fields.get("product_key") or row.fields.get("product_id")
                    refused.append(f"stock {row.remote_id}: product {shown!r} is not in Tryton")
                    continue
                count = _fit(Decimal(str(row.fields.get("count") or 0)), product)
                lines.append({"product": int(product["id"]), "quantity": float(count)})
                ok.append(row)
            if not ok:
                continue
            key = f"erpsync:{self.tenant}:stock:{shop}:{ok[0].chash[:16]}:{len(ok)}"
            intents = self._intents("stock", ok)
            suspects = [intents.get(self._erp_key(r)) for r in ok]
            inv_id = None
            if module and any(self._maybe_sent(i) for i in suspects):
                found = self.client.search_read("stock.inventory", [("external_id", "=", key)], ["state"])
                if found:
                    inv_id = int(found[0]["id"])
            works = [_Work("stock", r, self._key("stock", r), {}) for r in ok]
            for w, intent in zip(works, suspects, strict=True):
                if intent is not None and intent.state in ("pending", "unknown"):
                    w.intent_id = intent.id
            self._open("stock", works)
            try:
                if inv_id is None:
                    values: dict[str, Any] = {
                        "location": storage,
                        "company": company,
                        "date": utcnow().date(),
                        "empty_quantity": "keep",
                        "lines": [("create", lines)],
                    }
                    if module:
                        values["external_id"] = key
                    (inv_id,) = self.client.create("stock.inventory", [values])
                self.client.model("stock.inventory", "confirm", [inv_id])
            except TrytonUserError as exc:
                self._close(works, "failed", error=REFUSED + _tryton_message(exc))
                refused.append(_tryton_message(exc))
                continue
            for w in works:
                w.tryton_id = inv_id
            self._close(works, "done")
            self._mark({"stock": ok})
            written += len(ok)
        return written


class _Refused(Exception):
    """A record the sink cannot write (its reason names what is missing in Tryton)."""


def _complete_rows(landed: Sequence[_Work], works: Sequence[_Work]) -> list[InboundRow]:
    """Rows all of whose Tryton records landed (an exchange needs both its shipments)."""
    ok = {id(w) for w in landed}
    per_row: dict[int, tuple[InboundRow, bool]] = {}
    for w in works:
        row, good = per_row.get(id(w.row), (w.row, True))
        per_row[id(w.row)] = (row, good and id(w) in ok)
    return [row for row, good in per_row.values() if good]


def _tryton_message(exc: TrytonUserError) -> str:
    text = getattr(exc, "tryton_message", None) or exc.message
    return scrub(str(text))[:500]


def _fit(quantity: Decimal, product: Mapping[str, Any]) -> Decimal:
    """A quantity in a fractional unit (kg: 2 digits in Tryton) rounded to the unit's precision;
    whole units (pairs, pieces) are left as they are, so Tryton refuses 1.5 gloves."""
    digits = (product.get("default_uom.") or {}).get("digits")
    if isinstance(digits, int) and digits > 0:
        return quantity.quantize(Decimal(1).scaleb(-digits))
    return quantity


def _price(value: Any) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.0001")))


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            return None


def _payload_size(payload: Mapping[str, Any]) -> str | None:
    for key in ("sizeName", "size_name", "size"):
        value = payload.get(key)
        if isinstance(value, Mapping):
            value = value.get("name")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _is_refund(row: InboundRow) -> bool:
    """A return receipt (type 3) or a refunded one (state 3): quantities and payments go negative."""
    return row.fields.get("type") == 3 or row.fields.get("state") == 3


def _is_sale(row: InboundRow) -> bool:
    """A paid sale or return; service cash-in/out, cancellations, offline markers and parked
    receipts move no goods (smartkasa.md §7.5)."""
    return row.fields.get("type") in (None, 0, 3) and row.fields.get("state") in (None, 2, 3)


class SmartEPISizeNames:
    """A withdrawal's size name, from its SmartEPI product (sizes are children named by their
    ``name``, the record only carries the size's SmartEPI id): one GET per product, cached."""

    def __init__(self, make_client: Callable[[], Any]) -> None:
        from sync.clients.sync_facade import Portal

        self._portal = Portal()
        # Made on the portal's loop: async clients belong to the loop that uses them.
        self._client: Any = self._portal.call(make_client)
        self._sizes: dict[str, dict[str, str]] = {}

    def __call__(self, row: InboundRow) -> str | None:
        product, size = row.fields.get("product_id"), row.fields.get("size_id")
        if not product or not size:
            return None
        product = str(product)
        if product not in self._sizes:
            try:
                got: Any = self._portal.call(self._client.products.get, product)
            except ErpsyncError as exc:
                log.warning("tryton sink: SmartEPI product %s unreadable for its sizes: %s", product, exc)
                return None
            sizes = got.record.get("sizes") or []
            self._sizes[product] = {
                str(s.get("id")): str(s.get("name")) for s in sizes if isinstance(s, Mapping)
            }
        return self._sizes[product].get(str(size))

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._portal.close()


def open_tryton_sink(
    tenant_settings: Any,
    *,
    tenant_id: str,
    store: StateStore,
    clients: Callable[[str], Any] | None = None,
) -> TrytonSink:
    """The ``sink: {kind: tryton}`` of a tenant: connection from ``sink.tryton``, else the ERP source's.

    ``clients`` (``TenantRuntime.new_client``) makes the SmartEPI client that names sizes, so
    its reads share the tenant's rate governor; without it (a sink used on its own) a plain
    client is made from the tenant's SmartEPI settings."""
    from sync.clients.tryton.client import SyncTrytonClient

    opts = tenant_settings.sink.tryton
    erp = tenant_settings.erp

    def pick(name: str) -> Any:
        value = getattr(opts, name, None)
        if value is None:
            value = erp.get(name) if isinstance(erp, Mapping) else getattr(erp, name, None)
        return value

    url, database, user, password = pick("url"), pick("database"), pick("user"), pick("password")
    missing = [
        n for n, v in (("url", url), ("database", database), ("user", user), ("password", password)) if not v
    ]
    if missing:
        raise ConfigError(
            f"tenants.{tenant_id}.sink.tryton: {', '.join(missing)} required",
            hint="set them under sink.tryton, or use an erp source of kind tryton",
        )
    client = SyncTrytonClient(str(url), str(database), str(user), password)
    epi = getattr(tenant_settings, "smartepi", None)
    sizes = None
    if clients is not None and epi is not None:
        sizes = SmartEPISizeNames(lambda: clients("smartepi"))
    elif epi is not None:

        def standalone() -> Any:
            from sync.clients.smartepi.client import SmartEPIClient

            return SmartEPIClient(epi.base_url, epi.api_key, account=tenant_id)

        sizes = SmartEPISizeNames(standalone)
    return TrytonSink(client, tenant=tenant_id, store=store, options=opts, size_name=sizes)
