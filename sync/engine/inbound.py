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
``relay`` hands such rows back to the task queue.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from sync.core.normalize import normalize_value, parse_decimal
from sync.core.records import Platform, QuarantineEntry
from sync.errors import utcnow
from sync.redact import scrub
from sync.sinks.base import InboundRow, Sink
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
    failed: int = 0
    written: int = 0  # sink rows actually written (duplicates skipped)
    released: int = 0  # inbound quarantine entries released
    streams: dict[str, int] = field(default_factory=dict)


# --- mapping -------------------------------------------------------------------------


def _s(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _ts(value: Any) -> str | None:
    """Timestamps stay as sent (ISO text); only whitespace is normalized."""
    norm = normalize_value(value)
    return None if norm is None else str(norm)


def map_smartepi(
    stream: str, record: Mapping[str, Any], reverse: Reverse
) -> tuple[InboundRow, list[Unresolved]]:
    """One SmartEPI transaction (webhook ``data`` or list item) → a sink row and its unbound references."""
    fields: dict[str, Any] = {}
    missing: list[Unresolved] = []
    for source, prefix, entity, required in EPI_REFS[stream]:
        remote = _s(record.get(source))
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
            title=_s(record.get("title")),
            completed_at=_ts(record.get("completedAt")),
            expires_at=_ts(record.get("expiresAt")),
        )
    else:
        fields.update(
            size_id=_s(record.get("sizeId")),
            quantity=parse_decimal(record.get("quantity")),
            device_id=_s(record.get("deviceId")),
            status=_s(record.get(_STATUS_FIELD[stream])),
        )
    fields["created_at"] = _ts(record.get("createdAt"))
    return InboundRow.make(EPI, str(record["id"]), fields, record), missing


def _dump(model: Any, *exclude: str) -> dict[str, Any]:
    if hasattr(model, "model_dump"):
        data: dict[str, Any] = model.model_dump(mode="json", exclude=set(exclude))
        return data
    return {k: v for k, v in dict(model).items() if k not in exclude}


def _get(model: Any, name: str) -> Any:
    return model.get(name) if isinstance(model, Mapping) else getattr(model, name, None)


def map_receipt(
    receipt: Any, reverse: Reverse, shop_keys: Mapping[str, str]
) -> tuple[InboundRow, list[InboundRow], list[InboundRow]]:
    """A SmartKasa receipt from the list endpoint → (receipt, items, payments) rows."""
    rid = str(_get(receipt, "id"))
    shop = _s(_get(receipt, "shop_id"))
    fields = {
        "shift_id": _s(_get(receipt, "shift_id")),
        "shop_id": shop,
        "shop_key": shop_keys.get(shop) if shop else None,
        "terminal_id": _s(_get(receipt, "terminal_id")),
        "state": _get(receipt, "state"),
        "type": _get(receipt, "type"),
        "total_amount": parse_decimal(_get(receipt, "total_amount")),
        "discount_amount": parse_decimal(_get(receipt, "discount_amount")),
        "rounding_amount": parse_decimal(_get(receipt, "rounding_amount")),
        "fiscal_number": _s(_get(receipt, "fiscal_number")),
        "cashier_name": _s(_get(receipt, "cashier_name")),
        "created_at": _ts(_get(receipt, "created_at")),
    }
    row = InboundRow.make(KASA, rid, fields, _dump(receipt, "items", "payment_transactions"))
    products = reverse.get("products") or {}
    items = []
    for item in _get(receipt, "items") or []:
        product = _s(_get(item, "product_id"))
        item_fields = {
            "receipt_id": rid,
            "product_id": product,
            "product_key": products.get(product) if product else None,
            "name": _s(_get(item, "name")),
            "price": parse_decimal(_get(item, "price")),
            "quantity": parse_decimal(_get(item, "quantity")),
            "amount": parse_decimal(_get(item, "amount")),
            "discount_amount": parse_decimal(_get(item, "discount_amount")),
            "tax_group_id": _get(item, "tax_group_id"),
        }
        items.append(InboundRow.make(KASA, str(_get(item, "id")), item_fields, _dump(item)))
    payments = []
    for tx in _get(receipt, "payment_transactions") or []:
        tx_fields = {
            "receipt_id": rid,
            "amount": parse_decimal(_get(tx, "amount")),
            "payment_type_id": _get(tx, "payment_type_id"),
            "transaction_type_id": _get(tx, "transaction_type_id"),
            "state": _get(tx, "state"),
            "rrn": _s(_get(tx, "rrn")),
            "timestamp": _ts(_get(tx, "timestamp")),
        }
        payments.append(InboundRow.make(KASA, str(_get(tx, "id")), tx_fields, _dump(tx)))
    return row, items, payments


def map_shift(shift: Any) -> InboundRow:
    fields = {
        "terminal_id": _s(_get(shift, "terminal_id")),
        "state": _get(shift, "state"),
        "opened_at": _ts(_get(shift, "opened_at")),
        "closed_at": _ts(_get(shift, "closed_at")),
        "fiscal_number": _s(_get(shift, "fiscal_number")),
        "cash_balance": parse_decimal(_get(shift, "cash_balance")),
    }
    return InboundRow.make(KASA, str(_get(shift, "id")), fields, _dump(shift))


def map_z_report(report: Any, shop_keys: Mapping[str, str]) -> InboundRow:
    shop = _s(_get(report, "shop_id"))
    fields: dict[str, Any] = {
        "shift_id": _s(_get(report, "shift_id")),
        "shop_id": shop,
        "shop_key": shop_keys.get(shop) if shop else None,
        "terminal_id": _s(_get(report, "terminal_id")),
        "fiscal_number": _s(_get(report, "fiscal_number")),
        "created_at": _ts(_get(report, "created_at")),
    }
    for name in ("cash_total", "sale_total", "sale_cash_total", "sale_cashless_total", "refund_total"):
        fields[name] = parse_decimal(_get(report, name))
    for name in ("sale_receipts_count", "refund_receipts_count"):
        fields[name] = _get(report, name)
    return InboundRow.make(KASA, str(_get(report, "id")), fields, _dump(report))


def map_card(card: Any, reverse: Reverse, shop_keys: Mapping[str, str]) -> InboundRow:
    product = _s(_get(card, "product_id"))
    shop = _s(_get(card, "shop_id"))
    fields = {
        "product_id": product,
        "product_key": (reverse.get("products") or {}).get(product) if product else None,
        "shop_id": shop,
        "shop_key": shop_keys.get(shop) if shop else None,
        "count": parse_decimal(_get(card, "count")),
        "counting_enabled": _get(card, "counting_enabled"),
    }
    return InboundRow.make(KASA, str(_get(card, "id")), fields, _dump(card))


def shop_keys_of(tenant_settings: Any) -> dict[str, str]:
    """SmartKasa shop id → ERP shop code, from ``smartkasa.shops`` (ERP code → shop id)."""
    kasa = getattr(tenant_settings, "smartkasa", None)
    shops: Mapping[str, Any] = getattr(kasa, "shops", None) or {}
    return {str(shop_id): code for code, shop_id in shops.items()}


# --- the inbox -----------------------------------------------------------------------


def event_id_for(stream: str, remote_id: str) -> str:
    """The id SmartEPI gives the webhook of a record (``evt_<type>_<id>``, contract §4).

    A pulled record that must wait is parked in the inbox under this id, so its webhook,
    should it arrive later, is recognised as a duplicate.
    """
    return f"evt_{STREAM_EVENTS[stream].replace('.', '_')}_{remote_id}"


def inbox_insert(
    store: StateStore, tenant: str, platform: str, event_id: str, type_: str, payload: Mapping[str, Any]
) -> int | None:
    """Insert one inbound event in its own transaction; its row id, or None for a duplicate.

    A Core ``INSERT … RETURNING`` rather than an ORM session: this is the webhook hot path.
    """
    table = InboundEvent.__table__  # type: ignore[attr-defined]
    stmt = (
        insert(table)
        .values(
            tenant=tenant,
            platform=platform,
            event_id=event_id,
            type=type_,
            payload=dict(payload),
            status="pending",
            attempts=0,
            received_at=utcnow(),
        )
        .returning(table.c.id)
    )
    try:
        with store.engine.begin() as conn:
            return int(conn.execute(stmt).scalar_one())
    except IntegrityError:
        return None


def _load(store: StateStore, tenant: str, event_ids: Sequence[int] | None, limit: int) -> list[InboundEvent]:
    if event_ids is None:
        return store.inbox_pending(tenant, limit=limit)
    if not event_ids:
        return []
    with store.session() as s:
        stmt = (
            select(InboundEvent)
            .where(
                InboundEvent.tenant == tenant,  # type: ignore[arg-type]
                InboundEvent.id.in_(list(event_ids)),  # type: ignore[union-attr]
                InboundEvent.status.in_(("pending", "waiting")),  # type: ignore[attr-defined]
            )
            .order_by(InboundEvent.id)  # type: ignore[arg-type]
        )
        return list(s.execute(stmt).scalars())


def process_inbox(
    store: StateStore,
    tenant_id: str,
    tenant_settings: Any,
    sink: Sink,
    event_ids: Sequence[int] | None = None,
    *,
    limit: int = 500,
) -> InboundSummary:
    """Apply pending/waiting inbox rows (``event_ids``, or the oldest ``limit``) to the sink.

    Rows are written in one sink transaction, then marked ``done``; a crash in between
    leaves them ``pending`` and the replay is absorbed by the sink's idempotency. A sink
    failure leaves them ``pending`` (with the error) and is re-raised for the task to retry.
    """
    summary = InboundSummary()
    events = _load(store, tenant_id, event_ids, limit)
    summary.events = len(events)
    if not events:
        return summary
    reverse = store.reverse_bindings(tenant_id, EPI)
    batches: dict[str, list[InboundRow]] = {}
    done: list[InboundEvent] = []
    waiting: list[tuple[InboundEvent, str, str, list[Unresolved]]] = []
    ignored: list[int] = []
    failed: list[int] = []
    for ev in events:
        assert ev.id is not None
        stream = EVENT_STREAMS.get(ev.type)
        data = ev.payload.get("data") if isinstance(ev.payload, dict) else None
        if ev.platform != EPI or stream is None:
            ignored.append(ev.id)
            continue
        if not isinstance(data, dict) or data.get("id") in (None, ""):
            failed.append(ev.id)
            continue
        row, missing = map_smartepi(stream, data, reverse)
        if missing:
            waiting.append((ev, stream, row.remote_id, missing))
            continue
        batches.setdefault(stream, []).append(row)
        done.append(ev)
    if batches:
        try:
            summary.written = sink.write_many(batches)
        except Exception as exc:
            store.inbox_mark(
                [e.id for e in done if e.id is not None], "pending", error=scrub(str(exc))[:2000]
            )
            raise
    store.inbox_mark([e.id for e in done if e.id is not None], "done")
    store.inbox_mark(ignored, "done", error="ignored: not a transaction event")
    store.inbox_mark(failed, "failed", error="event without data.id")
    for ev in done:
        if ev.status == "waiting":
            stream = EVENT_STREAMS[ev.type]
            summary.released += store.release(
                tenant_id, EPI, stream, str(ev.payload["data"]["id"]), stage="inbound"
            )
    _park(store, tenant_id, waiting)
    summary.done, summary.ignored, summary.failed = len(done), len(ignored), len(failed)
    summary.waiting = len(waiting)
    summary.streams = {s: len(rows) for s, rows in batches.items()}
    return summary


def _park(
    store: StateStore, tenant: str, waiting: list[tuple[InboundEvent, str, str, list[Unresolved]]]
) -> None:
    if not waiting:
        return
    entries = []
    for ev, stream, remote_id, missing in waiting:
        first = missing[0]
        message = "; ".join(u.reason() for u in missing)
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
        store.inbox_mark([ev.id] if ev.id is not None else [], "waiting", error=message[:2000])
    store.quarantine(tenant, entries)


def relay(store: StateStore, older_than_seconds: float, *, limit: int = 5000) -> list[tuple[str, list[int]]]:
    """Inbox rows ``pending``/``waiting`` for over ``older_than_seconds``, per tenant, to re-enqueue."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_seconds)
    grouped: dict[str, list[int]] = {}
    for ev in store.inbox_pending(older_than=cutoff, limit=limit):
        if ev.id is not None:
            grouped.setdefault(ev.tenant, []).append(ev.id)
    return sorted(grouped.items())
