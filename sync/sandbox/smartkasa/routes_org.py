"""Organisation routes (§5.7–5.10): shops, employees per shop, employees, terminals."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sync.sandbox.smartkasa import views
from sync.sandbox.smartkasa.context import Sandbox
from sync.sandbox.smartkasa.formats import (
    Coercer,
    Errors,
    coerce,
    field_error,
    is_blank,
    normalize_phone,
    ok,
    to_bool,
    to_date,
    to_dict,
    to_int,
    to_list,
    to_str,
)
from sync.sandbox.smartkasa.store import Record, Tenant

SHOP: dict[str, Coercer] = {
    "title": to_str,
    "email": to_str,
    "phone_number": to_str,
    "state": to_int,
    "website_url": to_str,
    "business_category_id": to_int,
    "fiscal_numbers": to_list,
    "fiscalization_enabled": to_bool,
    "is_vat_taxation": to_bool,
    "is_excise_taxation": to_bool,
    "address": to_dict,
    "picture": to_dict,
}
EMPLOYEE: dict[str, Coercer] = {
    "phone_number": to_str,
    "email": to_str,
    "first_name": to_str,
    "last_name": to_str,
    "middle_name": to_str,
    "inn": to_str,
    "passport_serial": to_str,
    "passport_number": to_str,
    "role_id": to_int,
    "address_actual": to_dict,
    "address_legal": to_dict,
    "joined_at": to_date,
    "birthday": to_date,
    "gender_type_id": to_int,
    "notes": to_str,
    "additional_phone_number": to_str,
    "pin_code": to_str,
    "avatar": to_dict,
}
TERMINAL: dict[str, Coercer] = {"name": to_str, "shop_id": to_int}
ADDRESS_TYPES = {"address": 0, "address_legal": 1, "address_actual": 2}


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def router(sb: Sandbox) -> APIRouter:
    r = APIRouter(prefix="/api/v1")
    store = sb.store

    def upload(t: Tenant, obj: Record | None) -> Record | None:
        """A cached upload object becomes a stored file (the upload endpoint itself is undocumented)."""
        if not obj:
            return None
        name = f"{t.rng.getrandbits(128):032x}.png"
        return {
            "id": name,
            "filename": obj.get("filename"),
            "mime_type": obj.get("mime_type"),
            "size": obj.get("size"),
            "url": f"/uploads/store/{name}",
        }

    def apply_address(t: Tenant, record: Record, key: str, value: Record | None) -> None:
        current = record.get(key)
        if value is None:
            record[key] = None
        elif current is None:
            record[key] = store.new_address(t, value, ADDRESS_TYPES[key])
        else:
            current.update({k: value[k] for k in ("zip_code", "city_name", "content") if k in value})
            store.touch(current)

    def write_fields(t: Tenant, record: Record, data: Record) -> None:
        for key, value in data.items():
            if key in ADDRESS_TYPES:
                apply_address(t, record, key, value)
            elif key in ("phone_number", "additional_phone_number"):
                record[key] = normalize_phone(value)
            elif key in ("picture", "avatar"):
                record[key] = upload(t, value)
            else:
                record[key] = value

    # --- shops --------------------------------------------------------------------------

    @r.get("/rsn/shops")
    async def list_shops(request: Request) -> Response:
        t, _ = sb.session(request)
        page, meta = sb.paginate(request, list(t.tables["shops"].values()))
        return ok([views.shop(t, s) for s in page], meta)

    @r.get("/rsn/shops/employees")
    async def shop_employees(request: Request) -> Response:
        t, _ = sb.session(request)
        out = []
        for s in t.tables["shops"].values():
            staff = [e for e in t.tables["employees"].values() if s["id"] in (e.get("shop_ids") or [])]
            out.append(
                {
                    "id": s["id"],
                    "employees": [
                        {
                            "id": e["id"],
                            "first_name": e["first_name"],
                            "last_name": e["last_name"],
                            "role_id": e["role_id"],
                            "state": e["state"],
                            "updated_at": views.stamps(e)[1],
                        }
                        for e in staff
                    ],
                    "employees_count": s["employees_count"],
                    "state": s["state"],
                    "title": s["title"],
                }
            )
        return ok(out, {"total_count": len(out)})

    @r.post("/rsn/shops")
    async def create_shop(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Rsn::ShopForm", sb.unwrap(await sb.json_body(request), "shop"), SHOP)
        if is_blank(data.get("title")):
            raise field_error("title", "blank")
        shop = store.defaults(t, "shops") | {"website_url": None}
        write_fields(t, shop, data)
        shop = store.insert(t, "shops", shop)
        return ok(views.shop(t, shop), status=201)

    @r.get("/rsn/shops/{sid}")
    async def get_shop(sid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.shop(t, sb.get(t, "shops", sid)))

    @r.put("/rsn/shops/{sid}")
    async def update_shop(sid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        shop = sb.get(t, "shops", sid)
        data = coerce("Rsn::ShopForm", sb.unwrap(await sb.json_body(request), "shop"), SHOP)
        if "title" in data and is_blank(data["title"]):
            raise field_error("title", "blank")
        write_fields(t, shop, data)
        store.touch(shop)
        return ok(views.shop(t, shop))

    @r.delete("/rsn/shops/{sid}")
    async def delete_shop(sid: str, request: Request) -> Response:
        """Cards of the shop go with it; its terminals are detached."""
        t, _ = sb.session(request)
        shop = sb.get(t, "shops", sid)
        del t.tables["shops"][shop["id"]]
        for cid in [c["id"] for c in t.tables["cards"].values() if c["shop_id"] == shop["id"]]:
            del t.tables["cards"][cid]
        for term in t.tables["terminals"].values():
            if term["shop_id"] == shop["id"]:
                term["shop_id"] = None
        return ok({"id": shop["id"]})

    # --- employees ----------------------------------------------------------------------

    @r.get("/rsn/employees")
    async def list_employees(request: Request) -> Response:
        t, _ = sb.session(request)
        page, meta = sb.paginate(request, list(t.tables["employees"].values()))
        return ok([views.employee(t, e) for e in page], meta)

    @r.post("/rsn/employees")
    async def create_employee(request: Request) -> Response:
        t, _ = sb.session(request)
        data = coerce("Rsn::EmployeeForm", sb.unwrap(await sb.json_body(request), "employee"), EMPLOYEE)
        if is_blank(data.get("first_name")):
            raise field_error("first_name", "blank")
        employee = store.defaults(t, "employees")
        write_fields(t, employee, data)
        employee = store.insert(t, "employees", employee)
        return ok(views.employee(t, employee, addresses=True), status=201)

    @r.get("/rsn/employees/{eid}")
    async def get_employee(eid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.employee(t, sb.get(t, "employees", eid)))

    @r.put("/rsn/employees/{eid}")
    async def update_employee(eid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        employee = sb.get(t, "employees", eid)
        data = coerce("Rsn::EmployeeForm", sb.unwrap(await sb.json_body(request), "employee"), EMPLOYEE)
        if "first_name" in data and is_blank(data["first_name"]):
            raise field_error("first_name", "blank")
        write_fields(t, employee, data)
        store.touch(employee)
        # the PUT example answers pin_code null although GET shows it
        return ok(views.employee(t, employee, pin=False, addresses=True))

    @r.delete("/rsn/employees/{eid}")
    async def delete_employee(eid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        employee = sb.get(t, "employees", eid)
        del t.tables["employees"][employee["id"]]
        return ok({"id": employee["id"]})

    # --- terminals (no create: the devices provision themselves) ------------------------

    @r.get("/pos/terminals")
    async def list_terminals(request: Request) -> Response:
        t, _ = sb.session(request)
        q = request.query_params
        rows = list(t.tables["terminals"].values())
        for key in ("id", "shop_id"):
            if q.get(key):
                wanted = _int_or_none(q[key])
                rows = [x for x in rows if x[key] == wanted]
        if q.get("name"):
            rows = [x for x in rows if x["name"] == q["name"]]
        page, meta = sb.paginate(request, rows)
        return ok([views.terminal(x) for x in page], meta)

    @r.get("/pos/terminals/{tid}")
    async def get_terminal(tid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        return ok(views.terminal(sb.get(t, "terminals", tid)))

    @r.put("/pos/terminals/{tid}")
    async def update_terminal(tid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        term = sb.get(t, "terminals", tid)
        data = coerce("Pos::TerminalForm", sb.unwrap(await sb.json_body(request), "terminal"), TERMINAL)
        errors = Errors()
        if "name" in data and is_blank(data["name"]):
            errors.add("name", "blank")
        if "shop_id" in data and data["shop_id"] not in t.tables["shops"]:
            errors.add("shop_id", "invalid")
        errors.raise_if_any()
        term.update(data)
        store.touch(term)
        return ok(views.terminal(term))

    @r.delete("/pos/terminals/{tid}")
    async def delete_terminal(tid: str, request: Request) -> Response:
        t, _ = sb.session(request)
        term = sb.get(t, "terminals", tid)
        del t.tables["terminals"][term["id"]]
        return ok(views.terminal(term))

    return r
