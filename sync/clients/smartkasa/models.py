"""Response models for SmartKasa records.

Why these shapes (contract §1.1, §1.2): every id is kept as an opaque ``str`` (the API
mixes UUIDs and integers); every decimal is parsed with ``parse_decimal`` into a
``Decimal`` whether it arrives as ``"71.89"`` or ``71.89`` (never through float
rounding); every field the contract shows but this client does not interpret is kept
(``extra="allow"``) so callers can still read it; a missing field is ``None``, not an
error, because list and single-record variants carry different subsets.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from sync.core.normalize import parse_decimal


def _opt_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("an id cannot be a boolean")
    return str(value)


def _dec(value: Any) -> Decimal | None:
    return parse_decimal(value)


Id = Annotated[str, BeforeValidator(_opt_id)]
OptId = Annotated[str | None, BeforeValidator(_opt_id)]
Dec = Annotated[Decimal | None, BeforeValidator(_dec)]


class SKModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    id: Id


class IdOnly(SKModel):
    """``{"id": ...}``: what product POST/PATCH/DELETE and card PUT return."""


class UnitType(SKModel):
    code: int | None = None
    name: str | None = None
    short_name: str | None = None
    is_weighted: bool | None = None
    is_visible: bool | None = None


class Subgroup(SKModel):
    title: str | None = None


class Shop(SKModel):
    title: str | None = None
    state: int | None = None
    address: dict[str, Any] | None = None


class Category(SKModel):
    title: str | None = None
    parent_id: OptId = None
    color_id: int | None = None
    partner_id: OptId = None
    products_count: int | None = None


class Card(SKModel):
    product_id: OptId = None
    shop_id: OptId = None
    count: Dec = None
    counting_enabled: bool | None = None


class Product(SKModel):
    number: str | None = None
    title: str | None = None
    alter_number: str | None = None
    alter_title: str | None = None
    price: Dec = None
    procurement_price: Dec = None
    category_id: OptId = None
    subgroup_id: OptId = None
    unit_type_id: int | None = None
    tax_group_id: int | None = None
    classifier_type_id: int | None = None
    classifier_code: str | None = None
    sold_by_weight: bool | None = None
    is_free_price: bool | None = None
    remote_id: str | None = None
    cards: list[Card] | None = None  # single-record GET only


class Shift(SKModel):
    state: int | None = None
    cash_balance: Dec = None
    opened_at: str | None = None
    closed_at: str | None = None
    terminal_id: OptId = None
    fiscal_number: str | None = None


class PaymentTransaction(SKModel):
    receipt_id: OptId = None
    amount: Dec = None
    deposit_amount: Dec = None
    change_amount: Dec = None
    payment_type_id: int | None = None
    transaction_type_id: int | None = None
    state: int | None = None
    rrn: str | None = None
    timestamp: str | None = None


class ReceiptItem(SKModel):
    receipt_id: OptId = None
    product_id: OptId = None
    name: str | None = None
    price: Dec = None
    quantity: Dec = None
    amount: Dec = None
    discount_amount: Dec = None
    tax_group_id: int | None = None
    unit_type_id: int | None = None


class Receipt(SKModel):
    shift_id: OptId = None
    shop_id: OptId = None
    terminal_id: OptId = None
    state: int | None = None
    type: int | None = None
    total_amount: Dec = None
    discount_amount: Dec = None
    discount_percentage: Dec = None
    rounding_amount: Dec = None
    fiscal_number: str | None = None
    created_at: str | None = None
    items: list[ReceiptItem] | None = None
    payment_transactions: list[PaymentTransaction] | None = None  # list variant only


class ZReport(SKModel):
    shift_id: OptId = None
    shop_id: OptId = None
    terminal_id: OptId = None
    fiscal_number: str | None = None
    created_at: str | None = None
    cash_total: Dec = None
    sale_total: Dec = None
    sale_cash_total: Dec = None
    sale_cashless_total: Dec = None
    refund_total: Dec = None
    sale_receipts_count: int | None = None
    refund_receipts_count: int | None = None
