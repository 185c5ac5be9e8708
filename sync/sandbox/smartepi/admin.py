"""``/_admin``: what the SmartEPI web console and the devices do, for tests and demos.

No authentication, loopback clients only (a request from elsewhere gets 403 unless
``admin_loopback_only`` is off). Endpoints:

- ``POST /_admin/tenants`` ``{api_key, id?, webhook_url?, webhook_secret?, webhook_events?,
  allowed_ips?}``: create a tenant. A webhook URL without a secret gets a generated
  ``whsec_…`` secret, returned once in this response (as the console shows it once).
- ``GET /_admin/tenants``, ``PATCH /_admin/tenants/{tid}`` (webhook settings, allow-list).
- ``POST /_admin/reset``: drop all tenants and the webhook queue/log and stats
  (the fault config stays; it has its own endpoint).
- ``GET /_admin/tenants/{tid}/state``: every record, deleted ones included, with
  ``_version`` and ``_deleted``.
- ``POST /_admin/tenants/{tid}/seed/{resource}`` (list of records; ``id`` and
  ``createdAt`` may be given): records "filled by hand", any resource including the
  read-only ones; ``?emit_webhooks=true`` also sends webhooks for seeded transactions.
- ``PUT``/``DELETE /_admin/tenants/{tid}/records/{resource}/{id}``: a person editing
  or deleting in the console: same validation, no version needed, bumps the version
  and ``updatedAt``.
- ``POST /_admin/tenants/{tid}/generate`` ``{kind, count, seed?, start?, spacing_s?}``:
  device activity for existing employees/products, with webhooks.
- ``GET /_admin/webhooks`` (queue, failures, delivery log), ``PUT /_admin/webhooks/options``,
  ``POST /_admin/webhooks/deliver``, ``POST /_admin/webhooks/flush?timeout=``,
  ``POST /_admin/tenants/{tid}/webhooks/test``.
- ``GET/PUT /_admin/faults``, ``GET/DELETE /_admin/stats`` (from the fault injector).
- ``GET/PUT /_admin/list-filters`` ``{"mode": "strict"|"lenient"|"ignore"}``: how the API
  treats undocumented query parameters and list filters (see ``params.py``); not reset
  by ``/_admin/reset``, like the faults.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from sync.sandbox.smartepi.config import TenantConfig
from sync.sandbox.smartepi.generators import KINDS, generate
from sync.sandbox.smartepi.params import FilterMode
from sync.sandbox.smartepi.problems import ApiError, not_found
from sync.sandbox.smartepi.schema import SPECS
from sync.sandbox.smartepi.store import Record, Tenant, dto, us_from_iso
from sync.sandbox.smartepi.webhooks import WebhookOptions, event_for

if TYPE_CHECKING:
    from sync.sandbox.smartepi.app import Sandbox

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_events: list[str] | None = None
    allowed_ips: list[str] | None = None


class FilterSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: FilterMode


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    count: int = Field(1, ge=0, le=100_000)
    seed: int = 0
    start: dt.datetime | None = None
    spacing_s: float = Field(1.0, ge=0)
    p_failed: float = Field(0.1, ge=0, le=1)


def _subscribed(tenant: Tenant, event_type: str) -> bool:
    return "*" in tenant.webhook_events or event_type in tenant.webhook_events


def emit(sandbox: Sandbox, tenant: Tenant, resource: str, records: list[Record]) -> int:
    """Queue ``<type>.created`` webhooks for new transactions; returns how many events."""
    spec = SPECS[resource]
    if spec.event_type is None or not tenant.webhook_url or not tenant.webhook_secret:
        return 0
    if not _subscribed(tenant, spec.event_type):
        return 0
    events = [event_for(spec.event_type, r.id, dto(spec, r), r.created_us // 1_000_000) for r in records]
    sandbox.emitter.enqueue(tenant.id, tenant.webhook_url, tenant.webhook_secret, events)
    return len(events)


def loopback_guard(sandbox: Sandbox) -> Any:
    """A dependency that refuses admin calls from non-loopback clients."""

    def local_only(request: Request) -> None:
        host = request.client.host if request.client else None
        if sandbox.config.admin_loopback_only and host not in LOOPBACK:
            raise ApiError(403, "forbidden", "admin endpoints answer loopback clients only")

    return Depends(local_only)


STRICTNESS_KNOBS = (
    "training_records",
    "duplicate_token",
    "window_fraction_digits",
    "identification_search",
    "gateway_style",
    "paging",
    "retry_after_format",
    "access_group_by_id",
    "null_on_update",
)


def admin_router(sandbox: Sandbox) -> APIRouter:
    store = sandbox.store
    router = APIRouter(prefix="/_admin", dependencies=[loopback_guard(sandbox)], tags=["admin"])

    def tenant(tid: str) -> Tenant:
        found = store.tenants.get(tid)
        if found is None:
            raise not_found()
        return found

    def resource_of(name: str) -> str:
        if name not in SPECS:
            raise ApiError(404, "not_found", f"unknown resource {name}")
        return name

    @router.post("/tenants", status_code=201)
    def create_tenant(body: TenantConfig) -> dict[str, Any]:
        generated: str | None = None
        if body.webhook_url and body.webhook_secret is None:
            generated = "whsec_" + os.urandom(24).hex()
            body = body.model_copy(update={"webhook_secret": SecretStr(generated)})
        out = sandbox.add_tenant(body).public()
        if generated is not None:
            out["webhook_secret"] = generated
        return out

    @router.get("/tenants")
    def list_tenants() -> list[dict[str, Any]]:
        return [t.public() for t in store.tenants.values()]

    @router.patch("/tenants/{tid}")
    def patch_tenant(tid: str, body: TenantPatch) -> dict[str, Any]:
        t = tenant(tid)
        given = body.model_fields_set
        with store.lock:
            if "webhook_url" in given:
                t.webhook_url = body.webhook_url
            if "webhook_secret" in given:
                t.webhook_secret = body.webhook_secret.get_secret_value() if body.webhook_secret else None
            if "webhook_events" in given and body.webhook_events is not None:
                t.webhook_events = body.webhook_events
            if "allowed_ips" in given:
                t.allowed_ips = body.allowed_ips
        return t.public()

    @router.post("/reset")
    def reset() -> dict[str, Any]:
        store.reset()
        sandbox.emitter.clear()
        sandbox.faults.stats.reset()
        return {"ok": True}

    @router.get("/tenants/{tid}/state")
    def dump(tid: str) -> dict[str, Any]:
        t = tenant(tid)
        with store.lock:
            return {
                res: [
                    {**dto(SPECS[res], rec), "_version": rec.version, "_deleted": rec.deleted}
                    for rec in sorted(table.records.values(), key=lambda r: r.seq)
                ]
                for res, table in t.tables.items()
            }

    @router.post("/tenants/{tid}/seed/{resource}", status_code=201)
    def seed(
        tid: str, resource: str, records: list[dict[str, Any]], emit_webhooks: bool = False
    ) -> dict[str, Any]:
        t = tenant(tid)
        res = resource_of(resource)
        created: list[Record] = []
        for i, raw in enumerate(records):
            body = dict(raw)
            record_id = body.pop("id", None)
            created_at = body.pop("createdAt", None)
            body.pop("updatedAt", None)
            try:
                created_us = us_from_iso(created_at, "createdAt") if isinstance(created_at, str) else None
                created.append(store.create(t, res, body, record_id=record_id, created_us=created_us))
            except ApiError as exc:
                raise ApiError(exc.status, exc.token, f"record {i}: {exc.detail}") from None
        events = emit(sandbox, t, res, created) if emit_webhooks else 0
        return {"data": [dto(SPECS[res], r) for r in created], "events": events}

    @router.put("/tenants/{tid}/records/{resource}/{record_id}")
    def console_edit(tid: str, resource: str, record_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        res = resource_of(resource)
        rec = store.update(tenant(tid), res, record_id, changes, None)
        return {"data": dto(SPECS[res], rec), "_version": rec.version}

    @router.delete("/tenants/{tid}/records/{resource}/{record_id}")
    def console_delete(tid: str, resource: str, record_id: str) -> dict[str, Any]:
        res = resource_of(resource)
        rec = store.delete(tenant(tid), res, record_id, [store.get(tenant(tid), res, record_id).version])
        return {"data": dto(SPECS[res], rec), "_version": rec.version}

    @router.post("/tenants/{tid}/generate", status_code=201)
    def generate_records(tid: str, body: GenerateRequest) -> dict[str, Any]:
        t = tenant(tid)
        if body.kind not in KINDS:
            raise ApiError(400, "bad_request", f"kind: must be one of {', '.join(KINDS)}")
        start = body.start
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
        records = generate(
            store, t, body.kind, body.count, seed=body.seed, start=start,
            spacing_s=body.spacing_s, p_failed=body.p_failed,
        )  # fmt: skip
        events = emit(sandbox, t, body.kind, records)
        return {"ids": [r.id for r in records], "events": events}

    @router.get("/list-filters")
    def get_list_filters() -> dict[str, Any]:
        return {"mode": sandbox.config.list_filters}

    @router.put("/list-filters")
    def put_list_filters(body: FilterSetting) -> dict[str, Any]:
        sandbox.config.list_filters = body.mode
        return {"mode": sandbox.config.list_filters}

    @router.get("/strictness")
    def get_strictness() -> dict[str, Any]:
        return {k: getattr(sandbox.config, k) for k in STRICTNESS_KNOBS}

    @router.patch("/strictness")
    def patch_strictness(body: dict[str, Any]) -> dict[str, Any]:
        """Contract-silent behaviours a stricter simulator may choose (``training_records``,
        ``duplicate_token``): set any of them at run time."""
        unknown = set(body) - set(STRICTNESS_KNOBS)
        if unknown:
            raise HTTPException(400, f"unknown knob(s): {', '.join(sorted(unknown))}")
        try:
            checked = type(sandbox.config).model_validate(body)  # every other field has a default
        except ValidationError as exc:
            raise HTTPException(400, str(exc.errors()[0].get("msg", "invalid value"))) from None
        for key in body:
            setattr(sandbox.config, key, getattr(checked, key))
        return {k: getattr(sandbox.config, k) for k in STRICTNESS_KNOBS}

    @router.get("/webhooks")
    def webhook_status() -> dict[str, Any]:
        return {"options": sandbox.emitter.options.model_dump(), **sandbox.emitter.status()}

    @router.put("/webhooks/options")
    def webhook_options(options: WebhookOptions) -> dict[str, Any]:
        sandbox.emitter.options = options
        return options.model_dump()

    @router.post("/webhooks/deliver")
    def deliver() -> dict[str, Any]:
        return {"released": sandbox.emitter.deliver_now()}

    @router.post("/webhooks/flush")
    def flush(timeout: float = 10.0) -> dict[str, Any]:
        return {"idle": sandbox.emitter.flush(timeout)}

    @router.post("/tenants/{tid}/webhooks/test")
    def send_test(tid: str) -> dict[str, Any]:
        t = tenant(tid)
        if not t.webhook_url or not t.webhook_secret:
            raise ApiError(400, "bad_request", "the tenant has no webhook endpoint")
        now = int(time.time())
        event = event_for("webhook.test", f"test_{now}_{os.urandom(3).hex()}", {"message": "test"}, now)
        sandbox.emitter.enqueue(t.id, t.webhook_url, t.webhook_secret, [event], test=True)
        return {"event_id": event["id"]}

    return router
