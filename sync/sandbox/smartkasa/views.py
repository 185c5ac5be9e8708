"""Response shapes of the SmartKasa sandbox, field for field as in the BP examples (smartkasa.apib).

Decimals render as Ruby BigDecimal strings, z-report amounts as numbers, timestamps with milliseconds and
an offset. Embedded variants follow the examples: the product list item carries ``partner*``, ``stock``
and ``subgroup_title``; the product GET carries ``cards``, ``category`` and ``category_type`` instead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig
from sync.sandbox.smartkasa.formats import date_ts, json_number, ruby_decimal, ts
from sync.sandbox.smartkasa.store import UNITS_BY_CODE, UNITS_BY_ID, Record, Tenant

# tax group → [(letter, rate %)], applied in order on what remains (excise first, then VAT); §7.1–7.2
TAX_GROUPS: dict[int, list[tuple[str, Decimal]]] = {
    1: [("А", Decimal(20))],
    2: [("Б", Decimal(7))],
    3: [("В", Decimal(0))],
    5: [("З", Decimal(5))],
    6: [("З", Decimal(5)), ("А", Decimal(20))],
    7: [("З", Decimal(5)), ("В", Decimal(0))],
    8: [("Г", Decimal(0))],
    9: [("Г", Decimal(0)), ("А", Decimal(20))],
    10: [("Г", Decimal(0)), ("В", Decimal(0))],
}


def tax_amounts(total: Decimal | None, group: int | None) -> dict[str, int]:
    """Included taxes in integer kopecks by Cyrillic letter: ``{"А": 22825, "З": 6848}`` for 1438.0/6."""
    out: dict[str, int] = {}
    remaining = total or Decimal(0)
    for letter, rate in TAX_GROUPS.get(group or 0, []):
        tax = remaining * rate / (100 + rate)
        out[letter] = int((tax * 100).quantize(Decimal(1)))
        remaining -= tax
    return out


def stamps(r: Record) -> tuple[str | None, str | None]:
    cache = getattr(r, "cache", None)
    if cache is None:
        return ts(r["created_at"], r["_tz"]), ts(r["updated_at"], r["_tz"])
    hit: tuple[str | None, str | None] | None = cache.get("stamps")
    if hit is None:
        hit = cache["stamps"] = (ts(r["created_at"], r["_tz"]), ts(r["updated_at"], r["_tz"]))
    return hit


def unit_name(cfg: SmartKasaSandboxConfig, unit_type_id: Any) -> str | None:
    table = UNITS_BY_CODE if cfg.unit_type_mode == "code" else UNITS_BY_ID
    unit = table.get(unit_type_id)
    return unit["short_name"] if unit else None


def partner(t: Tenant, pid: Any) -> Record | None:
    if pid is None:
        return None
    p = t.tables["partners"].get(pid)
    if p is None:
        return {
            "id": pid,
            "code": None,
            "created_at": None,
            "name": None,
            "partner_type_id": None,
            "state": None,
            "title": None,
            "updated_at": None,
        }
    c, u = stamps(p)
    return {
        "id": pid,
        "code": p["code"],
        "created_at": c,
        "name": p["name"],
        "partner_type_id": p["partner_type_id"],
        "state": p["state"],
        "title": p["title"],
        "updated_at": u,
    }


def products_count(t: Tenant, category_id: str) -> int:
    return sum(1 for p in t.tables["products"].values() if p["category_id"] == category_id)


def category(t: Tenant, c: Record, *, with_partner: bool = False, shop_ids: bool = True) -> Record:
    created, updated = stamps(c)
    out: Record = {
        "id": c["id"],
        "color_id": c["color_id"],
        "created_at": created,
        "parent_id": c["parent_id"],
    }
    if with_partner:
        out["partner"] = partner(t, c["partner_id"])
    out["partner_id"] = c["partner_id"]
    out["products_count"] = products_count(t, c["id"])
    if shop_ids:
        out["shop_ids"] = list(c["shop_ids"])
    out["title"] = c["title"]
    out["updated_at"] = updated
    return out


def _product_core(cfg: SmartKasaSandboxConfig, p: Record) -> Record:
    """The fields every product variant shares; cached on the record until it changes (hot path)."""
    cache = getattr(p, "cache", None)
    if cache is not None:
        hit = cache.get("core")
        if hit is None:
            hit = cache["core"] = _render_product_core(cfg, p)
        return dict(hit)
    return _render_product_core(cfg, p)


def _render_product_core(cfg: SmartKasaSandboxConfig, p: Record) -> Record:
    created, updated = stamps(p)
    out: Record = {
        "id": p["id"],
        "alter_number": p["alter_number"],
        "alter_title": p["alter_title"],
        "bookmark_ids": list(p["bookmark_ids"]),
        "category_id": p["category_id"],
        "category_type_id": p["category_type_id"],
        "classifier_code": p["classifier_code"],
        "classifier_type_id": p["classifier_type_id"],
        "created_at": created,
        "is_free_price": p["is_free_price"],
        "is_without_number": p["is_without_number"],
        "number": p["number"],
        "owner_id": p["owner_id"],
        "portion_amount": p["portion_amount"],
        "portion_type_id": p["portion_type_id"],
        "price": ruby_decimal(p["price"]),
        "procurement_price": ruby_decimal(p["procurement_price"]),
        "sold_by_weight": p["sold_by_weight"],
        "subgroup_id": p["subgroup_id"],
        "tax_amount": tax_amounts(p["price"], p["tax_group_id"]),
        "tax_group_id": p["tax_group_id"],
        "title": p["title"],
        "unit_type_id": p["unit_type_id"],
        "unit_type_name": unit_name(cfg, p["unit_type_id"]),
        "updated_at": updated,
        "user_id": p["user_id"],
    }
    if p.get("picture"):
        out["picture"] = p["picture"]
    if cfg.expose_remote_id:
        out["remote_id"] = p.get("remote_id")
    return out


def product_brief(cfg: SmartKasaSandboxConfig, p: Record) -> Record:
    """The product as embedded in a card."""
    return _product_core(cfg, p)


def product_list_item(cfg: SmartKasaSandboxConfig, t: Tenant, p: Record) -> Record:
    out = _product_core(cfg, p)
    part = partner(t, p["partner_id"])
    subgroup = t.tables["subgroups"].get(p["subgroup_id"])
    out.update(
        partner=part,
        partner_id=p["partner_id"],
        partner_title=part["title"] if part else None,
        stock={},
        subgroup_title=subgroup["title"] if subgroup else None,
    )
    return out


def product_detail(cfg: SmartKasaSandboxConfig, t: Tenant, p: Record) -> Record:
    out = _product_core(cfg, p)
    out["cards"] = [card(c) for c in t.tables["cards"].values() if c["product_id"] == p["id"]]
    cat = t.tables["categories"].get(p["category_id"])
    out["category"] = category(t, cat, shop_ids=False) if cat else None
    cti = p["category_type_id"]
    out["category_type"] = None if cti is None else {"id": cti, "parent_id": None, "title": None}
    return out


def card(c: Record) -> Record:
    created, updated = stamps(c)
    return {
        "id": c["id"],
        "count": ruby_decimal(c["count"]),
        "counting_enabled": c["counting_enabled"],
        "created_at": created,
        "owner_id": c["owner_id"],
        "product_id": c["product_id"],
        "shop_id": c["shop_id"],
        "updated_at": updated,
    }


def card_nested(cfg: SmartKasaSandboxConfig, t: Tenant, c: Record) -> Record:
    out = card(c)
    product = t.tables["products"].get(c["product_id"])
    shop_rec = t.tables["shops"].get(c["shop_id"])
    out["product"] = product_brief(cfg, product) if product else None
    out["shop"] = shop(t, shop_rec, address=False) if shop_rec else None
    return {k: out[k] for k in sorted(out, key=lambda k: (k != "id", k))}


def shop(t: Tenant, s: Record, *, address: bool = True) -> Record:
    created, updated = stamps(s)
    out: Record = {"id": s["id"]}
    if address:
        a = s.get("address")
        out["address"] = (
            None
            if a is None
            else {
                "id": a["id"],
                "address_type_id": a["address_type_id"],
                "city_name": a["city_name"],
                "content": a["content"],
                "created_at": ts(a["created_at"], a["_tz"]),
                "updated_at": ts(a["updated_at"], a["_tz"]),
                "zip_code": a["zip_code"],
            }
        )
    terminals = sum(1 for x in t.tables["terminals"].values() if x["shop_id"] == s["id"])
    out.update(
        {
            "business_category_id": s["business_category_id"],
            "created_at": created,
            "email": s["email"],
            "employees_count": s["employees_count"],
            "fiscal_numbers": list(s["fiscal_numbers"]),
            "fiscalization_enabled": s["fiscalization_enabled"],
            "is_excise_taxation": s["is_excise_taxation"],
            "is_vat_taxation": s["is_vat_taxation"],
            "owner_id": s["owner_id"],
            "phone_number": s["phone_number"],
            "state": s["state"],
            "terminals_count": terminals,
            "title": s["title"],
            "updated_at": updated,
            "website_url": s["website_url"],
        }
    )
    if s.get("picture"):
        out["picture"] = s["picture"]
    return out


def role(r: Record) -> Record:
    created, updated = stamps(r)
    return {
        "id": r["id"],
        "created_at": created,
        "name": r["name"],
        "state": r["state"],
        "updated_at": updated,
    }


def _address(a: Record | None) -> Record | None:
    if a is None:
        return None
    return {
        "id": a["id"],
        "address_type_id": a["address_type_id"],
        "city_id": None,
        "city_name": a["city_name"],
        "content": a["content"],
        "created_at": ts(a["created_at"], a["_tz"]),
        "region_id": None,
        "updated_at": ts(a["updated_at"], a["_tz"]),
        "zip_code": a["zip_code"],
    }


def employee(t: Tenant, e: Record, *, pin: bool = True, addresses: bool = False) -> Record:
    created, updated = stamps(e)
    out: Record = {"id": e["id"], "additional_phone_number": e["additional_phone_number"]}
    if addresses:
        for key in ("address_actual", "address_legal"):
            if e.get(key):
                out[key] = _address(e[key])
    if e.get("avatar"):
        out["avatar"] = e["avatar"]
    out.update(
        {
            "birthday": date_ts(e["birthday"]),
            "created_at": created,
            "email": e["email"],
            "first_name": e["first_name"],
            "gender_type_id": e["gender_type_id"],
            "inn": e["inn"],
            "joined_at": date_ts(e["joined_at"]),
            "last_name": e["last_name"],
            "middle_name": e["middle_name"],
            "notes": e["notes"],
            "passport_number": e["passport_number"],
            "passport_serial": e["passport_serial"],
            "phone_number": e["phone_number"],
            "pin_code": e["pin_code"] if pin else None,
        }
    )
    role_rec = t.tables["roles"].get(e["role_id"])
    if role_rec is not None:
        out["role"] = role(role_rec)
    out.update({"role_id": e["role_id"], "state": e["state"], "updated_at": updated})
    return out


def terminal(t: Record) -> Record:
    created, updated = stamps(t)
    out: Record = {
        "id": t["id"],
        "activated_at": t["activated_at"],
        "core_terminal_id": t["core_terminal_id"],
        "created_at": created,
        "name": t["name"],
    }
    if t.get("picture"):
        out["picture"] = t["picture"]
    out.update(
        {
            "properties": t["properties"],
            "serial_number": t["serial_number"],
            "shop_id": t["shop_id"],
            "state": t["state"],
            "updated_at": updated,
        }
    )
    return out


def subgroup(s: Record) -> Record:
    created, updated = stamps(s)
    return {"id": s["id"], "created_at": created, "title": s["title"], "updated_at": updated}


def shift(s: Record) -> Record:
    z = s["_tz"]
    return {
        "id": s["id"],
        "cash_balance": ruby_decimal(s["cash_balance"]),
        "closed_at": ts(s["closed_at"], z),
        "closed_by": s["closed_by"],
        "device_uid": s["device_uid"],
        "employee_id": s["employee_id"],
        "fiscal_number": s["fiscal_number"],
        "opened_at": ts(s["opened_at"], z),
        "opened_by": s["opened_by"],
        "registrar_fiscal_number": s["registrar_fiscal_number"],
        "remote_shift_id": s["remote_shift_id"],
        "state": s["state"],
        "terminal_id": s["terminal_id"],
        "terminal_user_id": s["terminal_user_id"],
    }


def item(cfg: SmartKasaSandboxConfig, i: Record, z: int) -> Record:
    return {
        "id": i["id"],
        "amount": ruby_decimal(i.get("amount")),
        "classifier_code": i.get("classifier_code"),
        "classifier_type_id": i.get("classifier_type_id", 0),
        "created_at": ts(i["created_at"], z),
        "description": i.get("description"),
        "discount_amount": ruby_decimal(i.get("discount_amount")),
        "is_free_price": i.get("is_free_price", False),
        "is_product": i.get("is_product", True),
        "name": i.get("name"),
        "price": ruby_decimal(i.get("price")),
        "product_id": i.get("product_id"),
        "quantity": ruby_decimal(i.get("quantity")),
        "receipt_id": i["receipt_id"],
        "sku": i.get("sku"),
        "sold_by_weight": i.get("sold_by_weight", False),
        "stock_item_id": i.get("stock_item_id"),
        "tax_group_id": i.get("tax_group_id"),
        "unit_type_id": i.get("unit_type_id"),
        "unit_type_name": unit_name(cfg, i.get("unit_type_id")),
        "updated_at": ts(i.get("updated_at", i["created_at"]), z),
    }


RECEIPT_SCALARS = (
    "fiscal_number",
    "is_hidden",
    "offline_id",
    "offline_local_number",
    "offline_seed",
    "previous_receipt_hash",
    "registrar_fiscal_number",
    "registrar_local_number",
    "related_fiscal_number",
)


def receipt(
    cfg: SmartKasaSandboxConfig,
    t: Tenant,
    r: Record,
    *,
    items: bool = True,
    transactions: bool = False,
    discount_type: bool = False,
) -> Record:
    created, updated = stamps(r)
    z = r["_tz"]
    out: Record = {
        "id": r["id"],
        "cashier_name": r.get("cashier_name"),
        "created_at": created,
        "description": r.get("description"),
        "discount_amount": ruby_decimal(r.get("discount_amount")),
        "discount_percentage": ruby_decimal(r.get("discount_percentage")),
    }
    if discount_type:
        out["discount_type_id"] = r.get("discount_type_id")
    out["fiscal_number"] = r.get("fiscal_number")
    out["is_hidden"] = r.get("is_hidden", False)
    if items:
        out["items"] = [item(cfg, i, z) for i in r["items"]]
    for key in RECEIPT_SCALARS[2:6]:
        out[key] = r.get(key)
    if transactions:
        tx = t.tables["payment_transactions"]
        out["payment_transactions"] = [transaction(tx[i]) for i in r["transaction_ids"] if i in tx]
    for key in RECEIPT_SCALARS[6:]:
        out[key] = r.get(key)
    out.update(
        {
            "rounding_amount": ruby_decimal(r.get("rounding_amount")),
            "seller_id": r.get("seller_id"),
            "shift_id": r.get("shift_id"),
            "shop_id": r.get("shop_id"),
            "state": r.get("state"),
            "tax_amount": r.get("tax_amount") or {},
            "terminal_id": r.get("terminal_id"),
            "terminal_shift_id": r.get("terminal_shift_id"),
            "title": r.get("title"),
            "total_amount": ruby_decimal(r.get("total_amount")),
            "type": r.get("type"),
            "updated_at": updated,
        }
    )
    return out


def transaction(x: Record, receipt_view: Record | None = None) -> Record:
    created, updated = stamps(x)
    out: Record = {
        "id": x["id"],
        "amount": ruby_decimal(x.get("amount")),
        "approval_code": x.get("approval_code"),
        "batch": x.get("batch"),
    }
    if receipt_view is None:
        out["change_amount"] = ruby_decimal(x.get("change_amount"))
    out["created_at"] = created
    if receipt_view is None:
        out["deposit_amount"] = ruby_decimal(x.get("deposit_amount"))
    out.update(
        {
            "description": x.get("description"),
            "pan": x.get("pan"),
            "pan_hash": x.get("pan_hash"),
            "payload": x.get("payload"),
            "payment_type_id": x.get("payment_type_id", 0),
        }
    )
    if receipt_view is not None:
        out["receipt"] = receipt_view
    out.update(
        {
            "receipt_id": x.get("receipt_id"),
            "result_code": x.get("result_code"),
            "rrn": x.get("rrn"),
            "signature": x.get("signature", False),
            "stan": x.get("stan"),
            "state": x.get("state", 1),
            "timestamp": ts(x.get("timestamp"), x["_tz"]),
            "transaction_type_id": x.get("transaction_type_id", 0),
            "updated_at": updated,
        }
    )
    return out


Z_AMOUNTS = (
    "cash_amount",
    "cash_total",
    "refund_cash_total",
    "refund_cashless_total",
    "refund_tax_a_total",
    "refund_tax_b_total",
    "refund_tax_d_total",
    "refund_tax_v_total",
    "refund_tax_z_total",
    "refund_total",
    "sale_cash_total",
    "sale_cashless_total",
    "sale_tax_a_total",
    "sale_tax_b_total",
    "sale_tax_d_total",
    "sale_tax_v_total",
    "sale_tax_z_total",
    "sale_total",
    "service_input",
    "service_output",
    "turnover_amount",
)
Z_COUNTS = ("cash_receipts_count", "refund_receipts_count", "sale_receipts_count")


def z_report(t: Tenant, z: Record) -> Record:
    created, _ = stamps(z)
    out: Record = {"id": z["id"], "created_at": created}
    for key in Z_AMOUNTS:
        out[key] = json_number(z.get(key, Decimal(0)))
    for key in Z_COUNTS:
        out[key] = z.get(key, 0)
    sh = t.tables["shifts"].get(z.get("shift_id"))
    sp = t.tables["shops"].get(z.get("shop_id"))
    out.update(
        {
            "fiscal_number": z.get("fiscal_number"),
            "payload": z.get("payload") or {},
            "registrar_fiscal_number": z.get("registrar_fiscal_number"),
            "shift": shift(sh) if sh else None,
            "shift_id": z.get("shift_id"),
            "shop": shop(t, sp, address=False) if sp else None,
            "shop_id": z.get("shop_id"),
            "terminal_id": z.get("terminal_id"),
            "terminal_user_name": z.get("terminal_user_name"),
        }
    )
    return {k: out[k] for k in sorted(out, key=lambda k: (k != "id", k))}


def import_job(j: Record, *, results: bool = False) -> Record:
    created, updated = stamps(j)
    out: Record = {
        "id": j["id"],
        "created_at": created,
        "created_count": j.get("created_count", 0),
        "filename": j.get("filename"),
        "products_count": j.get("products_count", 0),
        "state": j.get("state", 0),
        "updated_at": updated,
        "updated_count": j.get("updated_count", 0),
    }
    if results:
        out["results"] = j.get("results") or {}
    return out
