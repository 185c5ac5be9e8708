"""Seeded generators of till activity: shifts, receipts with items and payments, z-reports, stock changes.

They stand in for the POS terminals, which write through channels the public API does not show. Receipts
sell existing products at their current price, carry ``tax_amount`` in integer kopecks under Cyrillic
letters (like real till data, §6.2), and decrement the shop's card when ``counting_enabled``. A z-report
sums one closed shift. Every function takes a ``random.Random`` so a given seed replays the same day.
"""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

from sync.sandbox.smartkasa.formats import MONEY, QTY, quantize
from sync.sandbox.smartkasa.store import Record, Store, Tenant
from sync.sandbox.smartkasa.views import tax_amounts

CASHIERS = ["Андрій Солопчук", "Олена Коваль", "Щастислав Павленко", "John Dow"]
LETTERS = {"А": "a", "Б": "b", "Д": "d", "Г": "d", "В": "v", "З": "z"}


class GeneratorError(ValueError):
    """The tenant lacks what the generator needs (a terminal, products, an open shift…)."""


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def open_shift(store: Store, t: Tenant, rng: random.Random, terminal_id: int | None = None) -> Record:
    terminals = t.tables["terminals"]
    if terminal_id is None:
        if not terminals:
            raise GeneratorError("the tenant has no terminal")
        terminal_id = rng.choice(sorted(terminals))
    elif terminal_id not in terminals:
        raise GeneratorError("unknown terminal")
    return store.seed(
        t,
        "shifts",
        {
            "terminal_id": terminal_id,
            "state": 0,
            "opened_at": store.now(),
            "opened_by": rng.choice(CASHIERS),
            "terminal_user_id": rng.randrange(1, 99),
            "device_uid": _uuid(rng),
            "remote_shift_id": _uuid(rng),
            "cash_balance": Decimal(0),
        },
    )


def sell(
    store: Store,
    t: Tenant,
    rng: random.Random,
    shift_id: str,
    count: int = 1,
    refunds: float = 0.0,
    *,
    offline: bool = False,
) -> list[Record]:
    """``count`` paid receipts (a share ``refunds`` of them returns) in an open shift.

    ``offline``: receipts the till made in offline mode and uploads late (§6.6), so they may
    reach a shift that has already closed or expired; they carry ``offline_*`` fields."""
    shift = t.tables["shifts"].get(shift_id)
    if shift is None or (shift["state"] != 0 and not offline):
        raise GeneratorError("no such open shift")
    products = sorted(t.tables["products"].values(), key=lambda p: p["created_at"])
    if not products:
        raise GeneratorError("the tenant has no products")
    terminal = t.tables["terminals"].get(shift["terminal_id"]) or {}
    shop_id = terminal.get("shop_id")
    made = []
    for _ in range(count):
        refund = rng.random() < refunds
        rid = store.new_id(t, "receipts")
        items, taxes, total = [], dict[str, int](), Decimal(0)
        for product in rng.sample(products, k=min(len(products), rng.randint(1, 3))):
            weighted = bool(product.get("sold_by_weight"))
            qty = (
                quantize(Decimal(rng.randint(100, 2500)) / 1000, QTY)
                if weighted
                else Decimal(rng.randint(1, 3))
            )
            amount = quantize(product["price"] * qty, MONEY)
            total += amount
            for letter, kop in tax_amounts(amount, product["tax_group_id"]).items():
                taxes[letter] = taxes.get(letter, 0) + kop
            items.append(
                {
                    "id": _uuid(rng),
                    "receipt_id": rid,
                    "product_id": product["id"],
                    "name": product["title"],
                    "price": product["price"],
                    "quantity": qty,
                    "amount": amount,
                    "sku": None,
                    "description": "",
                    "discount_amount": None,
                    "is_product": True,
                    "is_free_price": False,
                    "sold_by_weight": weighted,
                    "stock_item_id": 1,
                    "tax_group_id": product["tax_group_id"],
                    "unit_type_id": product["unit_type_id"],
                    "classifier_code": product["classifier_code"],
                    "classifier_type_id": product["classifier_type_id"],
                    "created_at": store.now(),
                }
            )
            _move_stock(store, t, product["id"], shop_id, qty if refund else -qty)
        cash = rng.random() < 0.6
        receipt = store.seed(
            t,
            "receipts",
            {
                "id": rid,
                "shift_id": shift_id,
                "shop_id": shop_id,
                "terminal_id": shift["terminal_id"],
                "terminal_shift_id": None,
                "seller_id": 0,
                "state": 3 if refund else 2,
                "type": 3 if refund else 0,
                "title": "",
                "description": None,
                "cashier_name": shift["opened_by"],
                "total_amount": total,
                "discount_type_id": 0,
                "discount_amount": Decimal(0),
                "discount_percentage": Decimal(0),
                "rounding_amount": Decimal(0),
                "fiscal_number": str(rng.randrange(10**7, 10**8)),
                "registrar_fiscal_number": "4000026885",
                "registrar_local_number": None,
                "related_fiscal_number": None,
                "offline_id": rng.randrange(1, 10**6) if offline else 0,
                "offline_seed": _uuid(rng).replace("-", "")[:16] if offline else "",
                "offline_local_number": rng.randrange(1, 10**4) if offline else None,
                "previous_receipt_hash": None,
                "is_hidden": False,
                "tax_amount": taxes,
                "items": items,
            },
        )
        tx = store.seed(
            t,
            "payment_transactions",
            {
                "receipt_id": rid,
                "amount": total,
                "deposit_amount": total,
                "change_amount": Decimal(0),
                "payment_type_id": 2 if refund else 0,
                "transaction_type_id": 0 if cash else 1,
                "state": 1,
                "rrn": "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(19)),
                "approval_code": None if cash else f"{rng.randrange(10**6):06d}",
                "batch": None,
                "pan": None if cash else "4*** **** **** 1234",
                "pan_hash": None,
                "payload": None,
                "result_code": None,
                "signature": False,
                "stan": None,
                "description": None,
                "timestamp": store.now(),
            },
        )
        receipt["transaction_ids"] = [tx["id"]]
        delta = -total if refund else total
        shift["cash_balance"] = shift["cash_balance"] + (delta if cash else 0)
        made.append(receipt)
    return made


def _move_stock(store: Store, t: Tenant, product_id: str, shop_id: Any, delta: Decimal) -> None:
    for card in t.tables["cards"].values():
        if card["product_id"] == product_id and card["shop_id"] == shop_id and card["counting_enabled"]:
            card["count"] = card["count"] + delta
            store.touch(card)


def close_shift(store: Store, t: Tenant, shift_id: str, *, with_z_report: bool = True) -> Record:
    shift = t.tables["shifts"].get(shift_id)
    if shift is None or shift["state"] != 0:
        raise GeneratorError("no such open shift")
    shift.update(state=1, closed_at=store.now(), closed_by=shift["opened_by"])
    store.touch(shift)
    if with_z_report:
        z_report(store, t, shift_id)
    return shift


def expire_shift(store: Store, t: Tenant, shift_id: str) -> Record:
    """An open shift the platform gave up on: ``state`` 2 with ``closed_at`` still null, as the
    contract's example of a shift opened eight days earlier (§6.1)."""
    shift = t.tables["shifts"].get(shift_id)
    if shift is None or shift["state"] != 0:
        raise GeneratorError("no such open shift")
    shift.update(state=2)
    store.touch(shift)
    return shift


def z_report(store: Store, t: Tenant, shift_id: str) -> Record:
    """The z-report of one closed shift: sale and refund totals by payment means and tax letter (UAH)."""
    shift = t.tables["shifts"].get(shift_id)
    if shift is None or shift["state"] != 1:
        raise GeneratorError("no such closed shift")
    if any(z["shift_id"] == shift_id for z in t.tables["z_reports"].values()):
        raise GeneratorError("the shift already has a z-report")
    sums: dict[str, Any] = {}
    tx = t.tables["payment_transactions"]
    for r in t.tables["receipts"].values():
        if r.get("shift_id") != shift_id or r.get("type") not in (0, 3):
            continue
        side = "refund" if r["type"] == 3 else "sale"
        cash = any(tx[i].get("transaction_type_id") == 0 for i in r["transaction_ids"] if i in tx)
        total = r["total_amount"] or Decimal(0)
        _add(sums, f"{side}_total", total)
        _add(sums, f"{side}_{'cash' if cash else 'cashless'}_total", total)
        sums[f"{side}_receipts_count"] = sums.get(f"{side}_receipts_count", 0) + 1
        if cash:
            sums["cash_receipts_count"] = sums.get("cash_receipts_count", 0) + 1
        for letter, kop in (r.get("tax_amount") or {}).items():
            _add(sums, f"{side}_tax_{LETTERS.get(letter, 'a')}_total", Decimal(kop) / 100)
    cash_total = sums.get("sale_cash_total", Decimal(0)) - sums.get("refund_cash_total", Decimal(0))
    terminal = t.tables["terminals"].get(shift["terminal_id"]) or {}
    fiscal = shift["fiscal_number"]
    payload = {
        "cash": {
            "total": float(cash_total),
            "commission": 0,
            "receipts_count": sums.get("cash_receipts_count", 0),
        },
        "timestamp": str(int(store.now() * 1000)),
        "cash_amount": 0,
        "cashierName": shift["opened_by"],
        "fiscalNumber": fiscal,
        "service_input": 0,
        "service_output": 0,
        "turnover_amount": 0,
        "registrarLocalNumber": "1",
        "registrarFiscalNumber": "4000026885",
    }
    return store.seed(
        t,
        "z_reports",
        sums
        | {
            "cash_total": cash_total,
            "cash_amount": Decimal(0),
            "service_input": Decimal(0),
            "service_output": Decimal(0),
            "turnover_amount": Decimal(0),
            "fiscal_number": fiscal,
            "registrar_fiscal_number": "4000026885",
            "shift_id": shift_id,
            "shop_id": terminal.get("shop_id"),
            "terminal_id": shift["terminal_id"],
            "terminal_user_id": shift["terminal_user_id"],
            "terminal_user_name": shift["opened_by"],
            "payload": payload,
        },
    )


def _add(sums: dict[str, Any], key: str, value: Decimal) -> None:
    sums[key] = sums.get(key, Decimal(0)) + value


def stock_changes(store: Store, t: Tenant, rng: random.Random, count: int = 1) -> list[Record]:
    """Someone recounts stock at the shop: ``count`` cards get a new absolute count."""
    cards = sorted(t.tables["cards"].values(), key=lambda c: c["id"])
    changed = rng.sample(cards, k=min(count, len(cards)))
    for card in changed:
        card["count"] = Decimal(rng.randint(0, 200))
        store.touch(card)
    return changed


def day(
    store: Store, t: Tenant, rng: random.Random, receipts_per_shift: int = 5, refunds: float = 0.0
) -> list[Record]:
    """One trading day: a shift on every terminal, some receipts, close, z-report."""
    shifts = []
    for terminal_id in sorted(t.tables["terminals"]):
        shift = open_shift(store, t, rng, terminal_id)
        sell(store, t, rng, shift["id"], receipts_per_shift, refunds)
        shifts.append(close_shift(store, t, shift["id"]))
    return shifts
