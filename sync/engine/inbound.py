"""Inbound records → ERP sink rows: webhook inbox processing, reference mapping, the relay.

Every inbound record is translated into ERP-key space before it reaches the ERP: a remote
``employeeId`` becomes the ERP key of the bound employee (``store.reverse_bindings``).

SmartEPI transactions (webhooks and pulls) wait for their references: employees and
products always, cost centers, sectors and the returned product of an exchange when that
entity is synced at all (it has bindings). Organisation data only ever comes from the ERP,
so an unbound reference means "not synced yet", never "unknown to the ERP": the event stays
in the inbox as ``waiting`` with a quarantine entry (stage ``inbound``) naming the field and
the remote id, and is retried by the relay until the binding appears. SmartKasa sales never
wait: a till can sell a product the ERP does not know (free-price items), so an unbound
product keeps its SmartKasa id with an empty ERP key rather than holding back a receipt.

The inbox row is the durable copy: a worker or Redis loss leaves it ``pending``, and
``relay`` hands such rows back to the task queue, pending rows before waiting ones.

No record can stop the pipeline: each is mapped and checked on its own
(``sync.engine.inbound_fields``); a malformed one, or one the ERP refuses (found by
bisecting the batch), becomes a ``failed`` inbox row with a reason naming the record, the
field and the rule, shown by ``erpsync status``. Pulled records that fail are parked the
same way (SmartKasa ones under ``kasa_<stream>_<id>``), so ``retry-failed --inbound``
replays every kind. Retries back off exponentially; rows out of attempts become ``dead``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.core.normalize import content_hash
from sync.core.records import Platform, QuarantineEntry
from sync.engine.inbound_fields import (
    Fields,
    RecordError,
    check_payload,
    get,
    json_safe,
    record_id,
    shown,
)
from sync.errors import ErpsyncError, utcnow
from sync.redact import scrub
from sync.sinks.base import InboundRow, Sink, SinkRowError
from sync.state.models import InboundEvent
from sync.state.store import StateStore

log = logging.getLogger(__name__)

EPI: Platform = "smartepi"
KASA: Platform = "smartkasa"

EVENT_STREAMS: dict[str, str] = {
    "withdrawal.created": "withdrawals",
    "return.created": "returns",
    "exchange.created": "exchanges",
    "training_record.created": "training_records",
}
STREAM_EVENTS = {stream: event for event, stream in EVENT_STREAMS.items()}
IGNORED_EVENTS = frozenset({"webhook.test"})
_STATUS_FIELD = {"withdrawals": "withdrawalStatus", "returns": "returnStatus", "exchanges": "exchangeStatus"}

# (platform field, column prefix, bound entity, always required)
_TX_REFS = (
    ("employeeId", "employee", "employees", True),
    ("productId", "product", "products", True),
    ("costCenterId", "cost_center", "cost_centers", False),
    ("sectorId", "sector", "sectors", False),
)
EPI_REFS: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "withdrawals": _TX_REFS,
    "returns": _TX_REFS,
    "exchanges": (*_TX_REFS, ("returnedProductId", "returned_product", "products", True)),
    "training_records": (("employeeId", "employee", "employees", True),),
}

Reverse = Mapping[str, Mapping[str, str]]  # entity → remote id → ERP key


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A reference the record holds that has no binding yet."""

    field: str
    entity: str
    remote_id: str

    def reason(self) -> str:
        return f"{self.field} {self.remote_id!r} has no binding to an ERP {self.entity} record yet"


@dataclass(slots=True)
class InboundSummary:
    events: int = 0  # inbox rows examined
    done: int = 0
    waiting: int = 0
    ignored: int = 0
    failed: int = 0  # malformed or refused by the sink: held as failed
    dead: int = 0  # attempts exhausted
    written: int = 0  # sink rows actually written (duplicates skipped)
    released: int = 0  # inbound quarantine entries released
    streams: dict[str, int] = field(default_factory=dict)


# --- mapping -------------------------------------------------------------------------
# Each mapper reads one record through ``Fields`` and raises ``RecordError`` (field, rule)
# for a value its column cannot hold: the caller holds that record as failed and goes on.


def _dump(model: Any, *exclude: str) -> dict[str, Any]:
    if hasattr(model, "model_dump"):
        data: dict[str, Any] = model.model_dump(mode="json", exclude=set(exclude))
        return data
    return {k: v for k, v in dict(model).items() if k not in exclude}


def _make(platform: str, remote_id: str, fields: Mapping[str, Any], payload: Mapping[str, Any]) -> InboundRow:
    check_payload(payload)
    return InboundRow.make(platform, remote_id, fields, payload)


def map_smartepi(
    stream: str, record: Mapping[str, Any], reverse: Reverse
) -> tuple[InboundRow, list[Unresolved]]:
    """One SmartEPI transaction (webhook ``data`` or list item) → a sink row and its unbound references."""
    rid = record_id(record)
    read = Fields(record)
    fields: dict[str, Any] = {}
    missing: list[Unresolved] = []
    for source, prefix, entity, required in EPI_REFS[stream]:
        remote = read.ident(source)
        key = None
        if remote is not None:
            known = reverse.get(entity) or {}
            key = known.get(remote)
            if key is None and (required or known):
                missing.append(Unresolved(source, entity, remote))
        fields[f"{prefix}_key"] = key
        fields[f"{prefix}_id"] = remote
    if stream == "training_records":
        fields.update(
            title=read.text("title"),
            completed_at=read.timestamp("completedAt"),
            expires_at=read.timestamp("expiresAt"),
        )
    else:
        fields.update(
            size_id=read.ident("sizeId"),
            quantity=read.decimal("quantity"),
            device_id=read.text("deviceId"),
            status=read.text(_STATUS_FIELD[stream]),
        )
    fields["created_at"] = read.timestamp("createdAt")
    return _make(EPI, rid, fields, record), missing


def map_receipt(
    receipt: Any, reverse: Reverse, shop_keys: Mapping[str, str]
) -> tuple[InboundRow, list[InboundRow], list[InboundRow]]:
    """A SmartKasa receipt from the list endpoint → (receipt, items, payments) rows.

    The receipt is one record with its items and payments: a bad item fails the receipt
    (an ERP must never see a receipt whose items do not add up to its total)."""
    rid = record_id(receipt)
    read = Fields(receipt)
    shop = read.ident("shop_id")
    fields = {
        "shift_id": read.ident("shift_id"),
        "shop_id": shop,
        "shop_key": shop_keys.get(shop) if shop else None,
        "terminal_id": read.ident("terminal_id"),
        "state": read.integer("state"),
        "type": read.integer("type"),
        "total_amount": read.decimal("total_amount"),
        "discount_amount": read.decimal("discount_amount"),
        "rounding_amount": read.decimal("rounding_amount"),
        "fiscal_number": read.text("fiscal_number"),
        "cashier_name": read.text("cashier_name"),
        "created_at": read.timestamp("created_at"),
    }
    row = _make(KASA, rid, fields, _dump(receipt, "items", "payment_transactions"))
    products = reverse.get("products") or {}
    items = []
    for i, item in enumerate(get(receipt, "items") or []):
        read = Fields(item, f"items[{i}].")
        product = read.ident("product_id")
        item_fields = {
            "receipt_id": rid,
            "product_id": product,
            "product_key": products.get(product) if product else None,
            "name": read.text("name"),
            "price": read.decimal("price"),
            "quantity": read.decimal("quantity"),
            "amount": read.decimal("amount"),
            "discount_amount": read.decimal("discount_amount"),
            "tax_group_id": read.integer("tax_group_id"),
        }
        item_id = _child_id(item, f"items[{i}]")
        items.append(_make(KASA, item_id, item_fields, _dump(item)))
    payments = []
    for i, tx in enumerate(get(receipt, "payment_transactions") or []):
        read = Fields(tx, f"payment_transactions[{i}].")
        tx_fields = {
            "receipt_id": rid,
            "amount": read.decimal("amount"),
            "payment_type_id": read.integer("payment_type_id"),
            "transaction_type_id": read.integer("transaction_type_id"),
            "state": read.integer("state"),
            "rrn": read.text("rrn"),
            "timestamp": read.timestamp("timestamp"),
        }
        payments.append(_make(KASA, _child_id(tx, f"payment_transactions[{i}]"), tx_fields, _dump(tx)))
    return row, items, payments


def _child_id(child: Any, path: str) -> str:
    try:
        return record_id(child)
    except RecordError as exc:
        raise RecordError(f"{path}.id", exc.rule, exc.message, exc.value) from None


def map_shift(shift: Any) -> InboundRow:
    read = Fields(shift)
    fields = {
        "terminal_id": read.ident("terminal_id"),
        "state": read.integer("state"),
        "opened_at": read.timestamp("opened_at"),
        "closed_at": read.timestamp("closed_at"),
        "fiscal_number": read.text("fiscal_number"),
        "cash_balance": read.decimal("cash_balance"),
    }
    return _make(KASA, record_id(shift), fields, _dump(shift))


def map_z_report(report: Any, shop_keys: Mapping[str, str]) -> InboundRow:
    read = Fields(report)
    shop = read.ident("shop_id")
    fields: dict[str, Any] = {
        "shift_id": read.ident("shift_id"),
        "shop_id": shop,
        "shop_key": shop_keys.get(shop) if shop else None,
        "terminal_id": read.ident("terminal_id"),
        "fiscal_number": read.text("fiscal_number"),
        "created_at": read.timestamp("created_at"),
    }
    for name in ("cash_total", "sale_total", "sale_cash_total", "sale_cashless_total", "refund_total"):
        fields[name] = read.decimal(name)
    for name in ("sale_receipts_count", "refund_receipts_count"):
        fields[name] = read.integer(name)
    return _make(KASA, record_id(report), fields, _dump(report))


def map_card(card: Any, reverse: Reverse, shop_keys: Mapping[str, str]) -> InboundRow:
    read = Fields(card)
    product = read.ident("product_id")
    shop = read.ident("shop_id")
    fields = {
        "product_id": product,
        "product_key": (reverse.get("products") or {}).get(product) if product else None,
        "shop_id": shop,
        "shop_key": shop_keys.get(shop) if shop else None,
        "count": read.decimal("count"),
        "counting_enabled": read.boolean("counting_enabled"),
    }
    return _make(KASA, record_id(card), fields, _dump(card))


def map_kasa(
    stream: str, record: Any, reverse: Reverse, shop_keys: Mapping[str, str]
) -> dict[str, list[InboundRow]]:
    """One SmartKasa record of a pull stream → its sink rows per stream (one unit)."""
    if stream == "receipts":
        row, items, payments = map_receipt(record, reverse, shop_keys)
        return {"receipts": [row], "receipt_items": items, "payments": payments}
    if stream == "shifts":
        return {"shifts": [map_shift(record)]}
    if stream == "z_reports":
        return {"z_reports": [map_z_report(record, shop_keys)]}
    if stream == "stock":
        return {"stock": [map_card(record, reverse, shop_keys)]}
    raise ValueError(f"unknown SmartKasa inbound stream {stream!r}")


def shop_keys_of(tenant_settings: Any) -> dict[str, str]:
    """SmartKasa shop id → ERP shop code, from ``smartkasa.shops`` (ERP code → shop id)."""
    kasa = getattr(tenant_settings, "smartkasa", None)
    shops: Mapping[str, Any] = getattr(kasa, "shops", None) or {}
    return {str(shop_id): code for code, shop_id in shops.items()}


# --- the inbox -----------------------------------------------------------------------

# Retries of a row: the wait before attempt n+1 is BACKOFF_BASE * 2**n, at most BACKOFF_MAX.
# A row the sink could not take (ERP unreachable) is given up ("dead") after
# MAX_ATTEMPTS tries (about a day); a row waiting for a binding after WAITING_MAX_ATTEMPTS
# (about a week: the ERP may add the employee days later). ``retry-failed --inbound``
# replays dead rows. Module constants, not settings: they bound work, not behaviour.
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_MAX = dt.timedelta(hours=6)
MAX_ATTEMPTS = 12
WAITING_MAX_ATTEMPTS = 36

KASA_STREAMS = ("receipts", "shifts", "z_reports", "stock")


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failed try (0-based)."""
    return min(BACKOFF_BASE * (1 << min(attempts, 20)), BACKOFF_MAX)


def event_id_for(stream: str, remote_id: str) -> str:
    """The inbox id of a record of ``stream``: SmartEPI's webhook id (``evt_<type>_<id>``,
    contract §4) or, for SmartKasa (no webhooks), ``kasa_<stream>_<id>``.

    A pulled record that must wait (or failed) is parked in the inbox under this id, so its
    webhook, should it arrive later, is recognised as a duplicate.
    """
    if stream in KASA_STREAMS:
        return f"kasa_{stream}_{remote_id}"
    return f"evt_{STREAM_EVENTS[stream].replace('.', '_')}_{remote_id}"


def event_type_for(stream: str) -> str:
    return f"smartkasa.{stream}" if stream in KASA_STREAMS else STREAM_EVENTS[stream]


def _stream_of(ev: InboundEvent) -> str | None:
    if ev.platform == EPI:
        return EVENT_STREAMS.get(ev.type)
    if ev.platform == KASA and ev.type.startswith("smartkasa."):
        stream = ev.type.removeprefix("smartkasa.")
        return stream if stream in KASA_STREAMS else None
    return None


def inbox_insert(
    store: StateStore,
    tenant: str,
    platform: str,
    event_id: str,
    type_: str,
    payload: Mapping[str, Any],
    *,
    status: str = "pending",
    error: str | None = None,
) -> int | None:
    """Insert one inbound event in its own transaction; its row id, or None for a duplicate.

    Non-finite numbers are stored as text (``json_safe``): PostgreSQL's JSON refuses them.
    """
    return store.inbox_insert(
        tenant, platform, event_id, type_, json_safe(payload), status=status, error=error
    )


def _load(
    store: StateStore, tenant: str, event_ids: Sequence[int] | None, limit: int, now: dt.datetime
) -> list[InboundEvent]:
    if event_ids is None:
        return store.inbox_due(tenant, now=now, limit=limit)
    return store.inbox_load(tenant, event_ids)


# --- isolated writes -----------------------------------------------------------------


@dataclass(slots=True)
class Unit:
    """One inbound record and the sink rows it becomes (a receipt: its row, items, payments)."""

    rows: dict[str, list[InboundRow]]
    ref: Any = None  # the caller's handle: an inbox row, a pulled record


def write_units(sink: Sink, units: Sequence[Unit]) -> tuple[int, list[tuple[Unit, str]]]:
    """Write ``units`` in one sink transaction; if the sink refuses the data (``SinkRowError``),
    bisect until each refused unit is alone. Returns (rows written, [(refused unit, reason)]).

    Any other failure (the ERP is unreachable) propagates: every half would fail alike, and
    the rows must stay pending rather than be blamed one by one."""
    if not units:
        return 0, []
    batches: dict[str, list[InboundRow]] = {}
    for unit in units:
        for stream, rows in unit.rows.items():
            if rows:
                batches.setdefault(stream, []).extend(rows)
    if not batches:
        return 0, []
    try:
        return sink.write_many(batches), []
    except SinkRowError as exc:
        if len(units) == 1:
            return 0, [(units[0], exc.message)]
        mid = len(units) // 2
        w1, f1 = write_units(sink, units[:mid])
        w2, f2 = write_units(sink, units[mid:])
        return w1 + w2, f1 + f2


def failure_entry(
    platform: str, stream: str, remote_id: str, err: RecordError | None, reason: str
) -> QuarantineEntry:
    """The quarantine row that shows a failed inbound record in ``erpsync status``."""
    return QuarantineEntry(
        platform=platform,  # type: ignore[arg-type]
        entity=stream,
        erp_key=shown(remote_id, 200),
        field=None if err is None else err.field[:128],
        rule="sink_refused" if err is None else err.rule,
        message=reason[:2000],
        value=None if err is None else err.value,
        stage="inbound",
    )


# --- processing ----------------------------------------------------------------------


def process_inbox(
    store: StateStore,
    tenant_id: str,
    tenant_settings: Any,
    sink: Sink,
    event_ids: Sequence[int] | None = None,
    *,
    limit: int = 500,
    now: dt.datetime | None = None,
) -> InboundSummary:
    """Apply pending/waiting inbox rows (``event_ids``, or the ``limit`` due ones) to the sink.

    Each row is mapped and checked on its own: a malformed record is marked ``failed`` with
    a reason naming the record, the field and the rule (and shown in ``erpsync status``);
    the others are written in one sink transaction, bisected down to the row the ERP
    refuses, if it refuses one. A crash after the write leaves rows ``pending``: the
    replay is absorbed by the sink's idempotency. An unreachable sink leaves them
    ``pending`` with a backoff (``dead`` after ``MAX_ATTEMPTS``) and is re-raised for the
    task to retry.
    """
    moment = now or utcnow()
    summary = InboundSummary()
    events = _load(store, tenant_id, event_ids, limit, moment)
    summary.events = len(events)
    if not events:
        return summary
    reverse: dict[str, Reverse] = {}
    shop_keys = shop_keys_of(tenant_settings)
    units: list[Unit] = []
    waiting: list[tuple[InboundEvent, str, str, list[Unresolved]]] = []
    ignored: list[int] = []
    failed: list[tuple[InboundEvent, str, str, RecordError | None, str]] = []
    for ev in events:
        assert ev.id is not None
        stream = _stream_of(ev)
        if stream is None:
            ignored.append(ev.id)
            continue
        data = ev.payload.get("data") if isinstance(ev.payload, dict) else None
        if not isinstance(data, dict):
            failed.append(
                (ev, stream, ev.event_id, None, f"{stream} event {shown(ev.event_id, 80)}: no data object")
            )
            continue
        remote_id = shown(data.get("id") if data.get("id") is not None else ev.event_id, 200)
        if ev.platform == EPI and data.get("id") in (None, ""):
            failed.append(
                (
                    ev,
                    stream,
                    remote_id,
                    None,
                    f"{stream} event {shown(ev.event_id, 80)}: event without data.id",
                )
            )
            continue
        if ev.platform not in reverse:
            reverse[ev.platform] = store.reverse_bindings(tenant_id, ev.platform)
        try:
            if ev.platform == EPI:
                row, missing = map_smartepi(stream, data, reverse[EPI])
                if missing:
                    waiting.append((ev, stream, row.remote_id, missing))
                    continue
                rows = {stream: [row]}
            else:
                rows = map_kasa(stream, data, reverse[KASA], shop_keys)
        except RecordError as err:
            failed.append((ev, stream, remote_id, err, err.reason(stream, remote_id)))
            continue
        units.append(Unit(rows, (ev, stream, remote_id)))
    # outcomes known before the write are recorded first: a sink failure must not lose them
    store.inbox_mark(ignored, "done", error="ignored: not a transaction event")
    _fail(store, tenant_id, failed)
    summary.waiting, summary.dead = _park(store, tenant_id, waiting, moment)
    try:
        summary.written, refused = write_units(sink, units)
    except Exception as exc:
        summary.dead += _retry_later(store, [u.ref[0] for u in units], _message(exc), moment)
        raise
    refused_ids = {id(unit) for unit, _ in refused}
    _fail(
        store,
        tenant_id,
        [
            (*u.ref, None, f"{u.ref[1]} {shown(u.ref[2], 80)}: sink_refused: {reason}")
            for u, reason in refused
        ],
    )
    done = [u for u in units if id(u) not in refused_ids]
    store.inbox_mark([u.ref[0].id for u in done], "done")
    summary.released = _release(store, tenant_id, [u.ref for u in done if _was_held(u.ref[0])])
    summary.done, summary.ignored = len(done), len(ignored)
    summary.failed = len(failed) + len(refused)
    streams: dict[str, int] = {}
    for unit in done:
        for name, part in unit.rows.items():
            streams[name] = streams.get(name, 0) + len(part)
    summary.streams = streams
    return summary


def _message(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, ErpsyncError) else f"{type(exc).__name__}: {exc}"
    return scrub(text)[:2000]


def _was_held(ev: InboundEvent) -> bool:
    """A row that may have a quarantine entry to release (parked, failed or retried before)."""
    return ev.status != "pending" or ev.attempts > 0 or ev.error is not None


def _fail(
    store: StateStore, tenant: str, failed: Sequence[tuple[InboundEvent, str, str, RecordError | None, str]]
) -> None:
    """Mark records ``failed`` with their reason and show them in the quarantine."""
    if not failed:
        return
    store.inbox_mark_each([(ev.id, "failed", reason[:2000], None) for ev, _, _, _, reason in failed if ev.id])
    store.quarantine(
        tenant,
        [failure_entry(ev.platform, stream, rid, err, reason) for ev, stream, rid, err, reason in failed],
    )
    for ev, stream, rid, _, reason in failed[:20]:
        extra = {"platform": ev.platform, "entity": stream, "key": rid}
        log.warning("inbound record held as failed: %s", reason, extra=extra)


def _retry_later(store: StateStore, events: Sequence[InboundEvent], error: str, now: dt.datetime) -> int:
    """The sink is unreachable: each row is tried again after its backoff, or given up."""
    updates: list[tuple[int | None, str, str | None, dt.datetime | None]] = []
    dead = 0
    for ev in events:
        if ev.attempts + 1 >= MAX_ATTEMPTS:
            dead += 1
            message = f"gave up after {ev.attempts + 1} attempts: {error}; run erpsync retry-failed --inbound"
            updates.append((ev.id, "dead", message[:2000], None))
        else:
            updates.append((ev.id, "pending", error, now + backoff(ev.attempts)))
    store.inbox_mark_each(updates)
    return dead


def _park(
    store: StateStore,
    tenant: str,
    waiting: list[tuple[InboundEvent, str, str, list[Unresolved]]],
    now: dt.datetime,
) -> tuple[int, int]:
    """Rows waiting for a binding: quarantined, next attempt after a backoff, dead at the cap."""
    if not waiting:
        return 0, 0
    entries = []
    updates: list[tuple[int | None, str, str | None, dt.datetime | None]] = []
    dead = 0
    for ev, stream, remote_id, missing in waiting:
        first = missing[0]
        message = "; ".join(u.reason() for u in missing)
        if ev.attempts + 1 >= WAITING_MAX_ATTEMPTS:
            dead += 1
            message = (
                f"gave up waiting after {ev.attempts + 1} attempts: {message}; "
                "sync the ERP record, then run erpsync retry-failed --inbound"
            )
            updates.append((ev.id, "dead", message[:2000], None))
        else:
            updates.append((ev.id, "waiting", message[:2000], now + backoff(ev.attempts)))
        entries.append(
            QuarantineEntry(
                platform=EPI,
                entity=stream,
                erp_key=remote_id,
                field=first.field,
                rule="unbound_reference",
                message=message,
                value=first.remote_id,
                stage="inbound",
            )
        )
    store.inbox_mark_each(updates)
    store.quarantine(tenant, entries)
    return len(waiting) - dead, dead


def _release(store: StateStore, tenant: str, refs: Sequence[tuple[InboundEvent, str, str]]) -> int:
    by_stream: dict[tuple[str, str], list[str]] = {}
    for ev, stream, remote_id in refs:
        by_stream.setdefault((ev.platform, stream), []).append(remote_id)
    return sum(
        store.release_many(tenant, platform, stream, keys, stage="inbound")
        for (platform, stream), keys in by_stream.items()
    )


def park_failed(
    store: StateStore,
    tenant: str,
    platform: str,
    stream: str,
    record: Any,
    err: RecordError | None,
    reason: str,
) -> int:
    """Hold a pulled record that cannot be written as a ``failed`` inbox row (replayable by
    ``retry-failed``) and in the quarantine; 1 if it was not held already."""
    data = _dump(record) if not isinstance(record, Mapping) else dict(record)
    try:
        key = record_id(data)
    except RecordError:  # no usable id: held under a hash of what arrived
        key = "bad_" + content_hash(shown(data, 100_000))
    event_id = event_id_for(stream, key)
    event = {
        "id": event_id,
        "type": event_type_for(stream),
        "createdAt": None,
        "data": data,
        "source": "pull",
    }
    row = inbox_insert(
        store, tenant, platform, event_id, event_type_for(stream), event, status="failed", error=reason[:2000]
    )
    if row is not None:
        store.quarantine(tenant, [failure_entry(platform, stream, key, err, reason)])
        extra = {"platform": platform, "entity": stream, "key": key}
        log.warning("inbound record held as failed: %s", reason, extra=extra)
    return 1 if row is not None else 0


def relay(
    store: StateStore,
    older_than_seconds: float,
    *,
    limit: int = 5000,
    now: dt.datetime | None = None,
) -> list[tuple[str, list[int]]]:
    """Inbox rows to hand back to the task queue, per tenant: ``pending`` rows received over
    ``older_than_seconds`` ago (a lost enqueue) first, then ``waiting`` ones, each only once
    its backoff is over, so waiting rows can never starve a pending one out of ``limit``."""
    moment = now or utcnow()
    cutoff = moment - dt.timedelta(seconds=older_than_seconds)
    grouped: dict[str, list[int]] = {}
    for ev in store.inbox_due(now=moment, older_than=cutoff, limit=limit):
        if ev.id is not None:
            grouped.setdefault(ev.tenant, []).append(ev.id)
    return sorted(grouped.items())
