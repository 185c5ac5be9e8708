"""Catalog routes (§5.1–5.6): unit types, categories, subgroups, products, cards, file imports."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sync.sandbox.smartkasa import views
from sync.sandbox.smartkasa.context import Sandbox
from sync.sandbox.smartkasa.formats import (
    MONEY,
    QTY,
    ApiError,
    Coercer,
    Errors,
    coerce,
    field_error,
    is_blank,
    ok,
    quantize,
    to_bool,
    to_decimal,
    to_dict,
    to_int,
    to_list,
    to_str,
)
from sync.sandbox.smartkasa.store import UNIT_TYPES, Record, Tenant

CATEGORY: dict[str, Coercer] = {
    "title": to_str,
    "color_id": to_int,
    "parent_id": to_str,
    "partner_id": to_int,
    "shop_ids": to_list,
}  # "color" is not an attribute: dropped
SUBGROUP: dict[str, Coercer] = {"title": to_str}
PRODUCT: dict[str, Coercer] = {
    "number": to_str,
    "title": to_str,
    "alter_title": to_str,
    "alter_number": to_str,
    "unit_type_id": to_int,
    "price": to_decimal,
    "procurement_price": to_decimal,
    "classifier_type_id": to_int,
    "classifier_code": to_str,
    "tax_group_id": to_int,
    "category_id": to_str,
    "category_type_id": to_int,
    "sold_by_weight": to_bool,
    "is_free_price": to_bool,
    "is_without_number": to_bool,
    "portion_amount": to_int,
    "portion_type_id": to_int,
    "subgroup_id": to_int,
    "bookmark_ids": to_list,
    "remote_id": to_str,
    "partner_id": to_int,
    "picture": to_dict,
}
CARD: dict[str, Coercer] = {
    "product_id": to_str,
    "shop_id": to_int,
    "counting_enabled": to_bool,
    "count": to_decimal,
}
IMPORT: dict[str, Coercer] = {"url": to_str, "category_id": to_str}


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# --- validation shared by single and batch writes -------------------------------------------


def check_category(
    t: Tenant, data: Record, *, create: bool, own_id: str | None = None, required: bool = False
) -> Errors:
    """``required``: the required fields are checked on an update too (a stricter server)."""
    errors = Errors()
    if (create or required or "title" in data) and is_blank(data.get("title")):
        errors.add("title", "blank")
    parent = data.get("parent_id")
    if parent is not None and (parent not in t.tables["categories"] or parent == own_id):
        errors.add("parent_id", "invalid")
    return errors


def check_product(
    sb: Sandbox,
    t: Tenant,
    data: Record,
    *,
    create: bool,
    own_id: str | None = None,
    seen: set[str] | None = None,
) -> Errors:
    errors = Errors()
    create = create or sb.config.update_requires_required_fields
    if (create or "title" in data) and is_blank(data.get("title")):
        errors.add("title", "blank")
    if (create or "price" in data) and data.get("price") is None:
        errors.add("price", "blank")
    elif data.get("price") is not None and data["price"] < 0:
        errors.add("price", "invalid")
    if data.get("category_id") is not None and data["category_id"] not in t.tables["categories"]:
        errors.add("category_id", "invalid")
    if data.get("subgroup_id") is not None and data["subgroup_id"] not in t.tables["subgroups"]:
        errors.add("subgroup_id", "invalid")
    if "tax_group_id" in data and data["tax_group_id"] not in range(11):
        errors.add("tax_group_id", "invalid")
    if "classifier_type_id" in data and data["classifier_type_id"] not in range(3):
        errors.add("classifier_type_id", "invalid")
    number = data.get("number")
    if sb.config.reject_duplicate_number and not is_blank(number):
        taken = any(p["number"] == number and p["id"] != own_id for p in t.tables["products"].values())
        if taken or (seen is not None and number in seen):
            errors.add("number", "taken")
        if seen is not None:
            seen.add(str(number))
    return errors


def product_values(data: Record) -> Record:
    out = {k: v for k, v in data.items() if k not in ("user_id", "owner_id")}
    for key in ("price", "procurement_price"):
        if out.get(key) is not None:
            out[key] = quantize(out[key], MONEY)
    if "bookmark_ids" in out and out["bookmark_ids"] is None:
        out["bookmark_ids"] = []
    return out


def delete_product(t: Tenant, product_id: str) -> Record:
    product = t.tables["products"].pop(product_id)
    for card_id in [c["id"] for c in t.tables["cards"].values() if c["product_id"] == product_id]:
        del t.tables["cards"][card_id]
    return product


def delete_category(t: Tenant, category_id: str) -> Record:
    """Products and child categories are detached (``dependent: :nullify``), not deleted."""
    cat = t.tables["categories"].pop(category_id)
    for p in t.tables["products"].values():
        if p["category_id"] == category_id:
            p["category_id"] = None
    for c in t.tables["categories"].values():
        if c["parent_id"] == category_id:
            c["parent_id"] = None
    return cat


def router(sb: Sandbox) -> APIRouter:
    r = APIRouter(prefix="/api/v1/inventory")
    store, cfg = sb.store, sb.config

    # --- unit types ---------------------------------------------------------------------

    @r.get("/unit_types")
    async def unit_types(request: Request) -> Response:
        sb.session(request)
        return ok([dict(u) for u in UNIT_TYPES], {"total_count": len(UNIT_TYPES)})

    # --- categories ---------------------------------------------------------------------

    @r.get("/categories")
    async def list_categories(request: Request) -> Response:
        t, _ = sb.session(request)
        q = request.query_params
        rows = list(t.tables["categories"].values())
        for key in ("id", "title", "parent_id"):
            if q.get(key):
                rows = [c for c in rows if c[key] == q[key]]
        if q.get("color_id"):
            rows = [c for c in rows if c["color_id"] == _int_or_none(q["color_id"])]
        page, meta = sb.paginate(request, rows)
        return ok([views.category(t, c, with_partner=True) for c in page], meta)

    @r.post("/categories/batch")
    async def batch_categories(request: Request) -> Response:
        t, _ = sb.session(request)
        items = sb.unwrap_batch(await sb.json_body(request), "categories")
        cleaned = []
        for raw in items:
            if not isinstance(raw, dict):
                raise field_error("categories", "invalid")
            data = coerce("Inventory::CategoryBatchItemForm", raw, CATEGORY)
            if check_category(t, data, create=True):
                raise ApiError(422, {"errors": {"categories": [{"error": "invalid"}]}})
            cleaned.append(data)
        created = [
            store.insert(t, "categories", store.defaults(t, "categories") | d | {"id": None}) for d in cleaned
        ]
        return ok([views.category(t, c) for c in created], status=201)

    @r.delete("/categories/batch")
    async def batch_delete_categories(request: Request) -> Response:
        t, _ = sb.session(request)
        ids = sb.unwrap_batch(await sb.json_body(request), "ids")
        gone = []
        for cid in ids:
            if isinstance(cid, str) and cid in t.tables["categories"]:
                view = views.category(t, t.tables["categories"][cid])
                delete_category(t, cid)
                gone.append(view)
        return ok(gone)

    @r.post("/categories")
    async def create_category(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Inventory::CategoryForm", sb.unwrap(await sb.json_body(request), "category"), CATEGORY)
        check_category(t, data, create=True).raise_if_any()
        cat = store.insert(t, "categories", store.defaults(t, "categories") | data | {"id": None})
        return ok(views.category(t, cat), status=201)

    @r.get("/categories/{cid}")
    async def get_category(cid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.category(t, sb.get(t, "categories", cid)))

    @r.put("/categories/{cid}")
    async def update_category(cid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        cat = sb.get(t, "categories", cid)
        body = sb.unwrap(await sb.json_body(request), "category")
        sb.check_inner_id(body, cid)
        data = coerce("Inventory::CategoryForm", body, CATEGORY)
        required = cfg.update_requires_required_fields
        check_category(t, data, create=False, own_id=cid, required=required).raise_if_any()
        cat.update(data)  # PUT merges (§5.2): omitted attributes keep their values
        store.touch(cat)
        return ok(views.category(t, cat))

    @r.delete("/categories/{cid}")
    async def delete_category_route(cid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        view = views.category(t, sb.get(t, "categories", cid))
        delete_category(t, cid)
        return ok(view)

    # --- subgroups ----------------------------------------------------------------------

    @r.get("/product_subgroups")
    async def list_subgroups(request: Request) -> Response:
        t, _ = sb.session(request)
        q = request.query_params
        rows = list(t.tables["subgroups"].values())
        if q.get("id"):
            rows = [s for s in rows if s["id"] == _int_or_none(q["id"])]
        if q.get("title"):
            rows = [s for s in rows if s["title"] == q["title"]]
        return ok([views.subgroup(s) for s in rows], {"total_count": len(rows)})

    @r.post("/product_subgroups")
    async def create_subgroup(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Inventory::SubgroupForm", sb.unwrap(await sb.json_body(request), "subgroup"), SUBGROUP)
        if is_blank(data.get("title")):
            raise field_error("title", "blank")
        return ok(views.subgroup(store.insert(t, "subgroups", {"title": data["title"]})), status=201)

    @r.put("/product_subgroups/{sid}")
    async def update_subgroup(sid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        sub = sb.get(t, "subgroups", sid)
        body = sb.unwrap(await sb.json_body(request), "subgroup")
        sb.check_inner_id(body, sid)
        data = coerce("Inventory::SubgroupForm", body, SUBGROUP)
        if ("title" in data or cfg.update_requires_required_fields) and is_blank(data.get("title")):
            raise field_error("title", "blank")
        sub.update(data)
        store.touch(sub)
        return ok(views.subgroup(sub))

    @r.delete("/product_subgroups/{sid}")
    async def delete_subgroup(sid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        sub = sb.get(t, "subgroups", sid)
        del t.tables["subgroups"][sub["id"]]
        for p in t.tables["products"].values():
            if p["subgroup_id"] == sub["id"]:
                p["subgroup_id"] = None
        return ok(views.subgroup(sub))

    # --- products -----------------------------------------------------------------------

    @r.get("/products")
    async def list_products(request: Request) -> Response:
        t, _ = sb.session(request)
        q = request.query_params
        rows: list[Record] = list(t.tables["products"].values())
        if q.get("number"):
            num = q["number"]
            if cfg.number_match == "exact":
                rows = [p for p in rows if p["number"] == num]
            else:
                rows = [p for p in rows if p["number"] and num in p["number"]]
        if q.get("category_id"):
            rows = [p for p in rows if p["category_id"] == q["category_id"]]
        if q.get("subgroup_id"):
            sub = _int_or_none(q["subgroup_id"])
            rows = [p for p in rows if p["subgroup_id"] == sub]
        if q.get("shop_id"):
            shop = _int_or_none(q["shop_id"])
            stocked = {c["product_id"] for c in t.tables["cards"].values() if c["shop_id"] == shop}
            rows = [p for p in rows if p["id"] in stocked]
        if q.get("q"):
            needle = q["q"].casefold()
            keys = ("title", "alter_title", "number", "alter_number")
            rows = [p for p in rows if any(p[k] and needle in p[k].casefold() for k in keys)]
        page, meta = sb.paginate(request, rows)
        return ok([views.product_list_item(cfg, t, p) for p in page], meta)

    @r.post("/products/batch")
    async def batch_products(request: Request) -> Response:
        t, _ = sb.session(request)
        items = sb.unwrap_batch(await sb.json_body(request), "products")
        if cfg.max_batch is not None and len(items) > cfg.max_batch:
            if cfg.max_batch_status == 413:
                raise ApiError(413, {"message": "Payload Too Large"})
            if cfg.max_batch_status == 400:  # OA's declared 400 shape E: {"errors": {object}}
                raise ApiError(400, {"errors": {"products": [{"error": "too_long"}]}})
            raise ApiError(422, {"errors": {"products": [{"error": "too_long"}]}})
        cleaned: list[Record] = []
        for raw in items:
            if not isinstance(raw, dict):
                raise field_error("products", "invalid")
            cleaned.append(coerce("Inventory::ProductBatchItemForm", raw, PRODUCT))
        seen: set[str] = set()
        checks = [check_product(sb, t, d, create=True, seen=seen) for d in cleaned]
        bad = [{"error": "invalid", "messages": e.messages()} for e in checks if e]
        if bad and cfg.batch_mode == "atomic":
            raise ApiError(422, {"errors": {"products": bad}})
        ids = []
        for data, errors in zip(cleaned, checks, strict=True):
            if not errors:
                ids.append(
                    store.insert(t, "products", store.defaults(t, "products") | product_values(data))["id"]
                )
        if bad:  # partial mode: the valid rows exist now, yet the answer is the same 422
            raise ApiError(422, {"errors": {"products": bad}})
        if cfg.batch_order == "shuffled":
            t.rng.shuffle(ids)
        return ok([{"id": i} for i in ids], status=201)

    @r.delete("/products/batch")
    async def batch_delete_products(request: Request) -> Response:
        t, _ = sb.session(request)
        ids = sb.unwrap_batch(await sb.json_body(request), "ids")
        gone = [
            {"id": delete_product(t, i)["id"]}
            for i in ids
            if isinstance(i, str) and i in t.tables["products"]
        ]
        return ok(gone)

    @r.post("/products")
    async def create_product(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Inventory::ProductForm", sb.unwrap(await sb.json_body(request), "product"), PRODUCT)
        check_product(sb, t, data, create=True).raise_if_any()
        product = store.insert(t, "products", store.defaults(t, "products") | product_values(data))
        return ok({"id": product["id"]}, status=201)

    @r.get("/products/{pid}")
    async def get_product(pid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.product_detail(cfg, t, sb.get(t, "products", pid)))

    @r.patch("/products/{pid}")
    async def patch_product(pid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        product = sb.get(t, "products", pid)
        body = sb.unwrap(await sb.json_body(request), "product")
        sb.check_inner_id(body, pid)
        data = coerce("Inventory::ProductForm", body, PRODUCT)
        check_product(sb, t, data, create=False, own_id=pid).raise_if_any()
        product.update(product_values(data))
        store.touch(product)
        return ok({"id": product["id"]})

    @r.delete("/products/{pid}")
    async def delete_product_route(pid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok({"id": delete_product(t, sb.get(t, "products", pid)["id"])["id"]})

    # --- cards --------------------------------------------------------------------------

    def check_card(t: Tenant, data: Record, *, create: bool, own: Record | None = None) -> Record:
        errors = Errors()
        product_id = data.get("product_id", own["product_id"] if own else None)
        shop_id = data.get("shop_id", own["shop_id"] if own else None)
        if (create or "product_id" in data) and product_id not in t.tables["products"]:
            errors.add("product_id", "invalid")
        if (create or "shop_id" in data) and shop_id not in t.tables["shops"]:
            errors.add("shop_id", "invalid")
        if not errors and any(
            c["product_id"] == product_id and c["shop_id"] == shop_id and c is not own
            for c in t.tables["cards"].values()
        ):
            errors.add("product_id", cfg.duplicate_card)
        errors.raise_if_any()
        if data.get("count") is not None:
            data["count"] = quantize(data["count"], QTY)
        elif "count" in data:
            data["count"] = Decimal(0)
        if data.get("counting_enabled") is None:
            data.pop("counting_enabled", None)
        return data

    @r.get("/cards")
    async def list_cards(request: Request) -> Response:
        t, _ = sb.session(request)
        q = request.query_params
        rows = list(t.tables["cards"].values())
        for key in ("id", "shop_id"):
            if q.get(key):
                wanted = _int_or_none(q[key])
                rows = [c for c in rows if c[key] == wanted]
        if q.get("product_id"):
            rows = [c for c in rows if c["product_id"] == q["product_id"]]
        if q.get("counting_enabled") in ("true", "false"):
            flag = q["counting_enabled"] == "true"
            rows = [c for c in rows if c["counting_enabled"] is flag]
        return ok([views.card_nested(cfg, t, c) for c in rows], {"total_count": len(rows)})

    @r.post("/cards")
    async def create_card(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Inventory::CardForm", sb.unwrap(await sb.json_body(request), "card"), CARD)
        data = check_card(t, data, create=True)
        card = store.insert(t, "cards", store.defaults(t, "cards") | data)
        return ok(views.card(card), status=201)

    @r.get("/cards/{cid}")
    async def get_card(cid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.card_nested(cfg, t, sb.get(t, "cards", cid)))

    @r.put("/cards/{cid}")
    async def update_card(cid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        card = sb.get(t, "cards", cid)
        body = sb.unwrap(await sb.json_body(request), "card")
        sb.check_inner_id(body, cid)
        data = coerce("Inventory::CardForm", body, CARD)
        card.update(check_card(t, data, create=False, own=card))
        store.touch(card)
        return ok({"id": card["id"]})

    @r.delete("/cards/{cid}")
    async def delete_card(cid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        card = sb.get(t, "cards", cid)
        del t.tables["cards"][card["id"]]
        return ok({"id": card["id"]})

    # --- file imports (accepted and left pending: the file format is not documented) ------

    @r.post("/import_products")
    async def create_import(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Inventory::ImportForm", sb.unwrap(await sb.json_body(request), "import"), IMPORT)
        errors = Errors()
        for key in ("url", "category_id"):
            if is_blank(data.get(key)):
                errors.add(key, "blank")
        if not errors.items.get("category_id") and data["category_id"] not in t.tables["categories"]:
            errors.add("category_id", "invalid")
        errors.raise_if_any()
        filename = str(data["url"]).split("?")[0].rstrip("/").rsplit("/", 1)[-1] or None
        job = store.insert(
            t,
            "imports",
            {"filename": filename, "url": data["url"], "state": 0, "category_id": data["category_id"]},
        )
        return ok(views.import_job(job), status=201)

    @r.get("/import_products")
    async def list_imports(request: Request) -> Response:
        t, _ = sb.session(request)
        page, meta = sb.paginate(request, list(t.tables["imports"].values()))
        return ok([views.import_job(j) for j in page], meta)

    @r.get("/import_products/{jid}")
    async def get_import(jid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.import_job(sb.get(t, "imports", jid), results=True))

    return r
