"""Sales routes (§6): shifts, receipts, payment transactions, z-reports, the product sales report."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sync.sandbox.smartkasa import views
from sync.sandbox.smartkasa.context import Sandbox
from sync.sandbox.smartkasa.formats import (
    MONEY,
    QTY,
    Coercer,
    coerce,
    field_error,
    json_number,
    ok,
    parse_bound,
    quantize,
    ruby_decimal,
    to_bool,
    to_decimal,
    to_dict,
    to_int,
    to_list,
    to_str,
)
from sync.sandbox.smartkasa.store import Record, Store, Tenant

RECEIPT: dict[str, Coercer] = {
    "title": to_str,
    "total_amount": to_decimal,
    "state": to_int,
    "type": to_int,
    "discount_amount": to_decimal,
    "discount_percentage": to_decimal,
    "discount_type_id": to_int,
    "seller_id": to_int,
    "shift_id": to_str,
    "shop_id": to_int,
    "terminal_id": to_int,
    "cashier_name": to_str,
    "description": to_str,
    "fiscal_number": to_str,
    "registrar_fiscal_number": to_str,
    "registrar_local_number": to_str,
    "tax_amount": to_dict,
    "is_hidden": to_bool,
    "rounding_amount": to_decimal,
    "offline_id": to_int,
    "offline_seed": to_str,
    "offline_local_number": to_int,
    "previous_receipt_hash": to_str,
    "related_fiscal_number": to_str,
    "items": to_list,
}
ITEM: dict[str, Coercer] = {
    "name": to_str,
    "price": to_decimal,
    "amount": to_decimal,
    "quantity": to_decimal,
    "sku": to_str,
    "tax_group_id": to_int,
    "is_product": to_bool,
    "product_id": to_str,
    "stock_item_id": to_int,
    "unit_type_id": to_int,
    "description": to_str,
    "classifier_code": to_str,
    "classifier_type_id": to_int,
    "discount_amount": to_decimal,
    "is_free_price": to_bool,
    "sold_by_weight": to_bool,
}
SHIFT_FILTERS = (
    "id",
    "remote_shift_id",
    "fiscal_number",
    "device_uid",
    "registrar_fiscal_number",
    "opened_by",
    "closed_by",
)
SHIFT_INT_FILTERS = ("state", "terminal_user_id", "employee_id")
MONEY_KEYS = ("total_amount", "discount_amount", "discount_percentage", "rounding_amount")
ITEM_STEPS = {"price": MONEY, "amount": MONEY, "quantity": QTY, "discount_amount": MONEY}


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def build_items(store: Store, t: Tenant, receipt_id: str, items: list[Any], form: str) -> list[Record]:
    out = []
    now = store.now()
    for raw in items:
        if not isinstance(raw, dict):
            raise field_error("items", "invalid")
        data = coerce(form.replace("Form", "ItemForm"), raw, ITEM)
        for key, step in ITEM_STEPS.items():
            if data.get(key) is not None:
                data[key] = quantize(data[key], step)
        data.update(id=store.new_id(t, "receipts"), receipt_id=receipt_id, created_at=now, updated_at=now)
        out.append(data)
    return out


def receipt_values(store: Store, t: Tenant, data: Record, receipt_id: str, form: str) -> Record:
    if data.get("shift_id") is not None and data["shift_id"] not in t.tables["shifts"]:
        raise field_error("shift_id", "invalid")
    for key in MONEY_KEYS:
        if data.get(key) is not None:
            data[key] = quantize(data[key], MONEY)
    if "items" in data:
        data["items"] = build_items(store, t, receipt_id, data["items"] or [], form)
    return data


def date_window(sb: Sandbox, request: Request) -> tuple[float | None, float | None]:
    """``date_start``/``date_end``: inclusive; a bare date covers its whole day in the tenant's offset."""
    offset = sb.config.utc_offsets_minutes[0] if sb.config.utc_offsets_minutes else 0
    bounds: list[float | None] = []
    for key, end in (("date_start", False), ("date_end", True)):
        text = request.query_params.get(key)
        if not text:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_bound(text, end=end, default_offset=offset))
        except ValueError:
            raise field_error(key, "invalid") from None
    return bounds[0], bounds[1]


def within(moment: float, start: float | None, end: float | None) -> bool:
    return (start is None or moment >= start) and (end is None or moment <= end)


def router(sb: Sandbox) -> APIRouter:
    r = APIRouter(prefix="/api/v1")
    store, cfg = sb.store, sb.config

    # --- shifts -------------------------------------------------------------------------

    @r.get("/pos/shifts")
    async def list_shifts(request: Request) -> Response:
        t, _ = sb.session(request)
        q = request.query_params
        rows = list(t.tables["shifts"].values())
        for key in SHIFT_FILTERS:
            if q.get(key):
                rows = [s for s in rows if s[key] == q[key]]
        for key in SHIFT_INT_FILTERS:
            if q.get(key):
                wanted = _int_or_none(q[key])
                rows = [s for s in rows if s[key] == wanted]
        page, meta = sb.paginate(request, rows)
        return ok([views.shift(s) for s in page], meta)

    @r.get("/pos/shifts/{sid}")
    async def get_shift(sid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.shift(sb.get(t, "shifts", sid)))

    # --- receipts -----------------------------------------------------------------------

    @r.get("/pos/receipts")
    async def list_receipts(request: Request) -> Response:
        """Newest first, like the example; ``shift_id``, ``shop_id``, ``terminal_id``, ``state``, ``type``
        and ``fiscal_number`` filter."""
        t, _ = sb.session(request)
        q = request.query_params if cfg.receipt_filters == "honoured" else {}
        rows = sorted(t.tables["receipts"].values(), key=lambda x: x["created_at"], reverse=True)
        for key in ("id", "shift_id", "fiscal_number"):
            if q.get(key):
                rows = [x for x in rows if x.get(key) == q[key]]
        for key in ("shop_id", "terminal_id", "state", "type"):
            if q.get(key):
                wanted = _int_or_none(q[key])
                rows = [x for x in rows if x.get(key) == wanted]
        page, meta = sb.paginate(request, rows, cfg.receipts_per_page)
        data = [views.receipt(cfg, t, x, transactions=True, discount_type=True) for x in page]
        return ok(data, meta)

    @r.post("/pos/receipts/batch")
    async def batch_receipts(request: Request) -> Response:
        t, _ = sb.session(request)
        items = sb.unwrap_batch(await sb.json_body(request), "receipts")
        prepared = []
        for raw in items:
            if not isinstance(raw, dict):
                raise field_error("receipts", "invalid")
            rid = store.new_id(t, "receipts")
            data = coerce("Pos::ReceiptBatchItemForm", raw, RECEIPT)
            prepared.append(receipt_values(store, t, data, rid, "Pos::ReceiptBatchItemForm") | {"id": rid})
        created = [store.insert(t, "receipts", {"items": [], "transaction_ids": []} | d) for d in prepared]
        return ok([views.receipt(cfg, t, x) for x in created], status=201)

    @r.delete("/pos/receipts/batch")
    async def batch_delete_receipts(request: Request) -> Response:
        """The example answers one receipt object (not a list): the first one deleted is returned."""
        t, _ = sb.session(request)
        ids = sb.unwrap_batch(await sb.json_body(request), "ids")
        gone = [t.tables["receipts"].pop(i) for i in ids if isinstance(i, str) and i in t.tables["receipts"]]
        if not gone:
            raise sb.unknown_id()
        return ok(views.receipt(cfg, t, gone[0], items=False))

    @r.post("/pos/receipts")
    async def create_receipt(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Pos::ReceiptForm", sb.unwrap(await sb.json_body(request), "receipt"), RECEIPT)
        rid = store.new_id(t, "receipts")
        data = receipt_values(store, t, data, rid, "Pos::ReceiptForm")
        receipt = store.insert(t, "receipts", {"items": [], "transaction_ids": []} | data | {"id": rid})
        return ok(views.receipt(cfg, t, receipt), status=201)

    @r.get("/pos/receipts/{rid}")
    async def get_receipt(rid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.receipt(cfg, t, sb.get(t, "receipts", rid)))

    @r.put("/pos/receipts/{rid}")
    async def update_receipt(rid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        receipt = sb.get(t, "receipts", rid)
        data = coerce("Pos::ReceiptForm", sb.unwrap(await sb.json_body(request), "receipt"), RECEIPT)
        receipt.update(receipt_values(store, t, data, rid, "Pos::ReceiptForm"))
        store.touch(receipt)
        return ok(views.receipt(cfg, t, receipt))

    @r.delete("/pos/receipts/{rid}")
    async def delete_receipt(rid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        receipt = sb.get(t, "receipts", rid)
        del t.tables["receipts"][rid]
        return ok(views.receipt(cfg, t, receipt, items=False))

    @r.get("/pos/payment_transactions/{xid}")
    async def get_transaction(xid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        x = sb.get(t, "payment_transactions", xid)
        receipt = t.tables["receipts"].get(x.get("receipt_id"))
        view = views.receipt(cfg, t, receipt, items=False) if receipt else None
        return ok(views.transaction(x, receipt_view=view or {}))

    # --- reports ------------------------------------------------------------------------

    @r.get("/reports/z-reports")
    async def z_reports(request: Request) -> Response:
        """Filters: the date window on ``created_at``, ``shop_id``, ``terminal_id``, and the cashier id under
        both spellings (``termianl_user_id`` as documented, ``terminal_user_id``)."""
        t, _ = sb.session(request)
        start, end = date_window(sb, request)
        q = request.query_params
        rows = [z for z in t.tables["z_reports"].values() if within(z["created_at"], start, end)]
        for key in ("shop_id", "terminal_id"):
            if q.get(key):
                wanted = _int_or_none(q[key])
                rows = [z for z in rows if z.get(key) == wanted]
        cashier = q.get("termianl_user_id") or q.get("terminal_user_id")
        if cashier:
            wanted = _int_or_none(cashier)
            rows = [z for z in rows if z.get("terminal_user_id") == wanted]
        page, meta = sb.paginate(request, rows)
        return ok([views.z_report(t, z) for z in page], meta)

    @r.get("/stats/product_daily_sales/alter")
    async def product_sales(request: Request) -> Response:
        """Paid sales minus refunds per product over the window (one total for the whole range)."""
        t, _ = sb.session(request)
        start, end = date_window(sb, request)
        shop_id = _int_or_none(request.query_params.get("shop_id"))
        totals: dict[str, list[Decimal]] = {}
        names: dict[str, Record] = {}
        for receipt in t.tables["receipts"].values():
            kind = receipt.get("type")
            if kind not in (0, 3) or not within(receipt["created_at"], start, end):
                continue
            if shop_id is not None and receipt.get("shop_id") != shop_id:
                continue
            sign = Decimal(-1) if kind == 3 else Decimal(1)
            for it in receipt["items"]:
                pid = it.get("product_id")
                if not pid:
                    continue
                acc = totals.setdefault(pid, [Decimal(0), Decimal(0)])
                acc[0] += sign * (it.get("amount") or Decimal(0))
                acc[1] += sign * (it.get("quantity") or Decimal(0))
                names.setdefault(pid, it)
        grand_amount = sum((a for a, _ in totals.values()), Decimal(0))
        grand_count = sum((c for _, c in totals.values()), Decimal(0))
        products = []
        for pid, (amount, count) in totals.items():
            p = t.tables["products"].get(pid)
            it = names[pid]
            sub = t.tables["subgroups"].get(p["subgroup_id"]) if p else None
            share = quantize(count * 100 / grand_count, MONEY) if grand_count else Decimal(0)
            row: Record = {
                "id": pid,
                "category_id": p["category_id"] if p else None,
                "number": p["number"] if p else None,
            }
            if p and p.get("picture"):
                row["picture"] = p["picture"]
            unit = p["unit_type_id"] if p else it.get("unit_type_id")
            row.update(
                {
                    "popularity": ruby_decimal(share),
                    "price": ruby_decimal(p["price"] if p else it.get("price")),
                    "subgroup_id": p["subgroup_id"] if p else None,
                    "subgroup_title": sub["title"] if sub else None,
                    "title": p["title"] if p else it.get("name"),
                    "total_amount": ruby_decimal(amount),
                    "total_count": ruby_decimal(count),
                    "unit_type_id": unit,
                    "unit_type_name": views.unit_name(cfg, unit),
                }
            )
            products.append(row)
        data = {
            "id": 0,
            "products": products,
            "total_amount": json_number(grand_amount),
            "total_count": json_number(grand_count),
        }
        return ok(data)

    return r
