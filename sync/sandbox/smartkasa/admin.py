"""``/_admin``: the test harness's hands on the sandbox (no auth, loopback only).

Tenant-scoped operations name the tenant with the ``X-API-KEY`` header, never in the URL, so keys do not
end up in access logs. Seeds insert pre-existing records as given; console edits change a record the way
a person in the back office would (no API validation, ``updated_at`` bumped); generators play the tills.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from sync.sandbox.smartkasa import generators, views
from sync.sandbox.smartkasa.config import TenantSpec
from sync.sandbox.smartkasa.context import Sandbox
from sync.sandbox.smartkasa.formats import ApiError, json_response, ts
from sync.sandbox.smartkasa.store import TABLES, Record, Tenant

LOOPBACK = ("127.", "::1", "localhost")


def jsonable(value: Any) -> Any:
    """Internal values → JSON: decimals as Ruby strings are for the API; the dump keeps plain text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def dump_record(record: Record) -> Record:
    out = {k: jsonable(v) for k, v in record.items() if not k.startswith("_")}
    for key in ("created_at", "updated_at"):
        if isinstance(record.get(key), float):
            out[key] = ts(record[key], record.get("_tz", 0))
    return out


def guard(sb: Sandbox) -> Any:
    """The dependency every admin route carries: callers must be on the loopback interface."""

    def loopback_only(request: Request) -> None:
        host = request.client.host if request.client else ""
        if sb.config.admin_loopback_only and not host.startswith(LOOPBACK):
            raise ApiError(403, {"message": "Forbidden"})

    return Depends(loopback_only)


def router(sb: Sandbox) -> APIRouter:
    r = APIRouter(prefix="/_admin", dependencies=[guard(sb)])
    store = sb.store

    def tenant(request: Request) -> Tenant:
        key = request.headers.get("x-api-key")
        t = store.tenants.get(key) if key else None
        if t is None:
            raise ApiError(404, {"message": "unknown tenant (send its key in X-API-KEY)"})
        return t

    async def body(request: Request) -> dict[str, Any]:
        data = await sb.json_body(request)
        if not isinstance(data, dict):
            raise ApiError(422, {"message": "expected a JSON object"})
        return data

    def rng(t: Tenant, data: dict[str, Any]) -> random.Random:
        return random.Random(data["seed"]) if data.get("seed") is not None else t.rng

    def table(name: str) -> str:
        if name not in TABLES:
            raise ApiError(404, {"message": f"unknown table; one of {', '.join(TABLES)}"})
        return name

    @r.post("/tenants")
    async def create_tenant(request: Request) -> Response:
        try:
            spec = TenantSpec.model_validate(await body(request))
        except ValueError:
            raise ApiError(422, {"message": "expected {api_key, phone_number, password[, shops]}"}) from None
        if spec.api_key in store.tenants:
            raise ApiError(409, {"message": "a tenant with this key exists"})
        t = store.add_tenant(spec)
        return json_response(
            {
                "user_id": t.user_id,
                "shops": sorted(t.tables["shops"]),
                "terminals": sorted(t.tables["terminals"]),
            },
            201,
        )

    @r.post("/reset")
    async def reset(request: Request) -> Response:
        """Without a key: every tenant back to the configured ones. With a key: that tenant, re-seeded."""
        key = request.headers.get("x-api-key")
        if not key:
            store.reset()
            return json_response({"tenants": len(store.tenants)})
        old = tenant(request)
        sb.revoke(tenant_key=key)
        del store.tenants[key]
        store.add_tenant(TenantSpec(api_key=key, phone_number=old.phone_number, password=old.password))
        return json_response({"tenants": len(store.tenants)})

    @r.post("/seed/{name}")
    async def seed(name: str, request: Request) -> Response:
        t = tenant(request)
        data = await sb.json_body(request)
        rows = data if isinstance(data, list) else [data]
        if not all(isinstance(x, dict) for x in rows):
            raise ApiError(422, {"message": "expected an object or a list of objects"})
        try:
            made = [store.seed(t, table(name), dict(x)) for x in rows]
        except (ValueError, TypeError) as exc:
            raise ApiError(422, {"message": f"bad seed value: {exc}"}) from None
        return json_response({"data": [{"id": m["id"]} for m in made]}, 201)

    @r.patch("/records/{name}/{rid}")
    async def console_edit(name: str, rid: str, request: Request) -> Response:
        t = tenant(request)
        rows = t.tables[table(name)]
        record = rows.get(rid) or (rows.get(int(rid)) if rid.isdigit() else None)
        if record is None:
            raise ApiError(404, {"message": "no such record"})
        try:
            record.update(
                store.materialize(name, {k: v for k, v in (await body(request)).items() if k != "id"})
            )
        except (ValueError, TypeError) as exc:
            raise ApiError(422, {"message": f"bad value: {exc}"}) from None
        store.touch(record)
        return json_response({"data": dump_record(record)})

    @r.delete("/records/{name}/{rid}")
    async def console_delete(name: str, rid: str, request: Request) -> Response:
        t = tenant(request)
        rows = t.tables[table(name)]
        key: Any = rid if rid in rows else (int(rid) if rid.isdigit() else rid)
        if rows.pop(key, None) is None:
            raise ApiError(404, {"message": "no such record"})
        return json_response({"data": {"id": key}})

    @r.get("/dump")
    async def dump(request: Request) -> Response:
        t = tenant(request)
        return json_response(
            {name: [dump_record(x) for x in rows.values()] for name, rows in t.tables.items()}
        )

    @r.patch("/config")
    async def patch_config(request: Request) -> Response:
        """Change behaviour knobs at run time (``batch_order``, ``batch_mode``, …) for out-of-process
        sandboxes; tenants and secrets are not changeable here. Routes read the same config object."""
        data = await body(request)
        fixed = {"tenants", "jwt_secret", "admin_loopback_only"} & set(data)
        unknown = set(data) - set(type(sb.config).model_fields)
        if fixed or unknown:
            names = ", ".join(sorted(fixed | unknown))
            raise ApiError(422, {"message": f"unknown or not changeable at run time: {names}"})
        try:
            merged = type(sb.config).model_validate(sb.config.model_dump() | data)
        except ValueError as exc:
            raise ApiError(422, {"message": f"bad config: {exc}"}) from None
        for name in data:
            setattr(sb.config, name, getattr(merged, name))
        return json_response({"data": sb.config.model_dump(exclude={"tenants", "jwt_secret"})})

    @r.post("/expire_tokens")
    async def expire_tokens(request: Request) -> Response:
        t = tenant(request)
        return json_response({"expired": sb.revoke(tenant_key=t.api_key, kind="access")})

    # --- generators ---------------------------------------------------------------------

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except generators.GeneratorError as exc:
            raise ApiError(422, {"message": str(exc)}) from None

    @r.post("/generate/shifts")
    async def gen_open_shift(request: Request) -> Response:
        t, data = tenant(request), await body(request)
        shift = run(generators.open_shift, store, t, rng(t, data), data.get("terminal_id"))
        return json_response({"data": views.shift(shift)}, 201)

    @r.post("/generate/shifts/{sid}/close")
    async def gen_close_shift(sid: str, request: Request) -> Response:
        t, data = tenant(request), await body(request)
        shift = run(generators.close_shift, store, t, sid, with_z_report=data.get("z_report", True))
        return json_response({"data": views.shift(shift)})

    @r.post("/generate/shifts/{sid}/expire")
    async def gen_expire_shift(sid: str, request: Request) -> Response:
        t = tenant(request)
        shift = run(generators.expire_shift, store, t, sid)
        return json_response({"data": views.shift(shift)})

    @r.post("/generate/receipts")
    async def gen_receipts(request: Request) -> Response:
        t, data = tenant(request), await body(request)
        made = run(
            generators.sell,
            store,
            t,
            rng(t, data),
            str(data.get("shift_id")),
            int(data.get("count", 1)),
            float(data.get("refunds", 0.0)),
            offline=bool(data.get("offline", False)),
        )
        return json_response({"data": [{"id": x["id"]} for x in made]}, 201)

    @r.post("/generate/z_reports")
    async def gen_z_report(request: Request) -> Response:
        t, data = tenant(request), await body(request)
        z = run(generators.z_report, store, t, str(data.get("shift_id")))
        return json_response({"data": views.z_report(t, z)}, 201)

    @r.post("/generate/stock")
    async def gen_stock(request: Request) -> Response:
        t, data = tenant(request), await body(request)
        changed = generators.stock_changes(store, t, rng(t, data), int(data.get("count", 1)))
        return json_response({"data": [views.card(c) for c in changed]})

    @r.post("/generate/day")
    async def gen_day(request: Request) -> Response:
        t, data = tenant(request), await body(request)
        shifts = run(
            generators.day,
            store,
            t,
            rng(t, data),
            int(data.get("receipts_per_shift", 5)),
            float(data.get("refunds", 0.0)),
        )
        return json_response({"data": [views.shift(s) for s in shifts]}, 201)

    return r
