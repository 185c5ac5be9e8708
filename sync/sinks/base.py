"""What every ERP sink shares: the row type, the stream catalogue and the ``Sink`` protocol.

A stream is one kind of inbound record (``withdrawals``, ``receipts``…). Each has a fixed
set of typed columns; references are already translated into ERP keys (``*_key``) by the
engine, and the platform's own ids are kept next to them (``*_id``) so an ERP can still
reconcile a record whose reference it does not know. Every row also carries the platform
record as received (``payload``), so nothing the platform sent is lost to the mapping.

Identity is ``(tenant, platform, remote_id)`` per stream: a webhook and a pull that deliver
the same record upsert the same row, and the state store's ``InboundRecord`` markers
(remote id + content hash) let a replay skip what was already written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from sync.core.normalize import content_hash
from sync.errors import ErrorKind, SinkError

ColumnType = Literal["str", "int", "dec", "bool"]

_TX: dict[str, ColumnType] = {
    "employee_key": "str",
    "employee_id": "str",
    "product_key": "str",
    "product_id": "str",
    "size_id": "str",
    "quantity": "dec",
    "cost_center_key": "str",
    "cost_center_id": "str",
    "sector_key": "str",
    "sector_id": "str",
    "device_id": "str",
    "status": "str",
    "created_at": "str",
}

STREAMS: dict[str, dict[str, ColumnType]] = {
    "withdrawals": dict(_TX),
    "returns": dict(_TX),
    "exchanges": {**_TX, "returned_product_key": "str", "returned_product_id": "str"},
    "training_records": {
        "employee_key": "str",
        "employee_id": "str",
        "title": "str",
        "completed_at": "str",
        "expires_at": "str",
        "created_at": "str",
    },
    "receipts": {
        "shift_id": "str",
        "shop_id": "str",
        "shop_key": "str",
        "terminal_id": "str",
        "state": "int",
        "type": "int",
        "total_amount": "dec",
        "discount_amount": "dec",
        "rounding_amount": "dec",
        "fiscal_number": "str",
        "cashier_name": "str",
        "created_at": "str",
    },
    "receipt_items": {
        "receipt_id": "str",
        "product_id": "str",
        "product_key": "str",
        "name": "str",
        "price": "dec",
        "quantity": "dec",
        "amount": "dec",
        "discount_amount": "dec",
        "tax_group_id": "int",
    },
    "payments": {
        "receipt_id": "str",
        "amount": "dec",
        "payment_type_id": "int",
        "transaction_type_id": "int",
        "state": "int",
        "rrn": "str",
        "timestamp": "str",
    },
    "shifts": {
        "terminal_id": "str",
        "state": "int",
        "opened_at": "str",
        "closed_at": "str",
        "fiscal_number": "str",
        "cash_balance": "dec",
    },
    "z_reports": {
        "shift_id": "str",
        "shop_id": "str",
        "shop_key": "str",
        "terminal_id": "str",
        "fiscal_number": "str",
        "created_at": "str",
        "cash_total": "dec",
        "sale_total": "dec",
        "sale_cash_total": "dec",
        "sale_cashless_total": "dec",
        "refund_total": "dec",
        "sale_receipts_count": "int",
        "refund_receipts_count": "int",
    },
    "stock": {
        "product_id": "str",
        "product_key": "str",
        "shop_id": "str",
        "shop_key": "str",
        "count": "dec",
        "counting_enabled": "bool",
    },
}

KEY_COLUMNS = ("tenant", "platform", "remote_id")
META_COLUMNS = ("content_hash", "payload", "synced_at")


@dataclass(frozen=True, slots=True)
class InboundRow:
    """One inbound record ready for the ERP: typed columns plus the record as received."""

    platform: str
    remote_id: str
    fields: dict[str, Any]
    payload: dict[str, Any] = field(default_factory=dict)
    chash: str = ""

    @classmethod
    def make(
        cls, platform: str, remote_id: str, fields: Mapping[str, Any], payload: Mapping[str, Any]
    ) -> InboundRow:
        """A row with its content hash (over columns and payload: a change to either is a new version)."""
        f, p = dict(fields), dict(payload)
        return cls(platform, str(remote_id), f, p, content_hash({"f": f, "p": p}))


class SinkRowError(SinkError):
    """A write refused because of the data in it (a value too long for an ERP column, a
    constraint, text the database cannot encode), not because the sink is unreachable.

    Only this kind of failure is bisected down to the offending row: an unreachable ERP
    would make every half fail too, and must leave the rows pending instead.
    """

    kind: ClassVar[ErrorKind] = "record"  # type: ignore[assignment]
    default_hint = (
        "the record is held as failed in the inbox; fix the ERP column or the data, then run retry-failed"
    )


class Sink(Protocol):
    """An ERP writer for inbound records of one tenant."""

    def write(self, stream: str, records: Sequence[InboundRow]) -> int:
        """Upsert ``records`` of one stream in one transaction; returns rows actually written."""

    def write_many(self, batches: Mapping[str, Sequence[InboundRow]]) -> int:
        """Several streams in one transaction (a receipt with its items, payments and shift)."""

    def close(self) -> None: ...


def dedupe(rows: Sequence[InboundRow]) -> list[InboundRow]:
    """One row per remote id (the last wins): a batch may hold a record twice (duplicate deliveries)."""
    out: dict[str, InboundRow] = {}
    for row in rows:
        out[row.remote_id] = row
    return list(out.values())


def check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown inbound stream {stream!r}; known: {', '.join(sorted(STREAMS))}")
