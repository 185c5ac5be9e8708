"""The SmartEPI sandbox as a FastAPI app: ``create_app(config, faults)``.

Layers, outermost first, as on the real platform: fault injection and quota (the
gateway's throttling, per tenant), then the gateway's bearer-key check (401/403 in AWS
shape, no request id), then the application (problem+json with ``X-Request-Id``).

The ``/v1`` routes are plain Starlette routes taking the raw request: the handlers
parse and validate JSON themselves, so a malformed body or a wrong type is always a
400 problem (never FastAPI's default 422) and per-request overhead stays small. Query
parameters are checked per endpoint against the contract's table (``params.py``):
undocumented ones are a 400 unless ``config.list_filters`` relaxes that.
Admin routes live under ``/_admin`` (see ``admin.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sync.sandbox.faults import ASGIApp, FaultConfig, FaultInjector, Message, Receive, Scope, Send
from sync.sandbox.smartepi.config import SmartEPISandboxConfig, TenantConfig
from sync.sandbox.smartepi.params import FilterMode, Operation, accepted_params
from sync.sandbox.smartepi.problems import (
    ApiError,
    bad_request,
    gateway_parts,
    method_not_allowed,
    problem_parts,
    problem_response,
    rate_limited_parts,
    request_id,
    server_error_parts,
)
from sync.sandbox.smartepi.schema import SPECS, EntitySpec
from sync.sandbox.smartepi.store import Store, Tenant, dto
from sync.sandbox.smartepi.webhooks import WebhookEmitter

TENANT_SCOPE_KEY = "smartepi.tenant"
_JSON = "application/json"


@dataclass
class Sandbox:
    """Everything a test, the runner or the admin API may want to reach directly."""

    config: SmartEPISandboxConfig
    store: Store
    emitter: WebhookEmitter
    faults: FaultInjector

    def add_tenant(self, tc: TenantConfig) -> Tenant:
        tenant = Tenant(
            id=tc.id or self.store.new_tenant_id(),
            api_key=tc.api_key.get_secret_value(),
            webhook_url=tc.webhook_url,
            webhook_secret=tc.webhook_secret.get_secret_value() if tc.webhook_secret else None,
            webhook_events=list(tc.webhook_events),
            allowed_ips=tc.allowed_ips,
            active_after=time.time() + self.config.key_activation_s,
        )
        return self.store.add_tenant(tenant)


def _bearer(scope: Scope) -> str | None:
    """The key from ``Authorization: Bearer <key>``; "" if the header is malformed. The key is
    taken exactly as sent (no trimming: a gateway compares it byte for byte); the scheme is
    case-insensitive (RFC 7235)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key if scheme.lower() == "bearer" else ""
    return None


def _auth_middleware(store: Store, style: Callable[[], str] = lambda: "B") -> Callable[[ASGIApp], ASGIApp]:
    """The gateway: 401 without a header, 403 for any key that is sent but not usable.

    ``gateway_style`` "A" answers as the older revision does (§2.2 A, §5.1): 401
    ``{"message":"Unauthorized"}`` for an unknown, inactive or revoked key too, and 403 only for
    the IP allow-list, as RFC 7807 ``urn:smartepi:error:forbidden`` with an ``X-Request-Id``."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def gateway(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/v1"):
                key = _bearer(scope)
                tenant = store.tenant_for_key(key) if key else None
                revision_a = style() == "A"
                status = 401 if key is None else 0
                ip_blocked = False
                if tenant is None:
                    status = status or (401 if revision_a else 403)
                elif tenant.active_after > time.time():
                    status = 401 if revision_a else 403
                elif tenant.allowed_ips is not None:
                    client = scope.get("client")
                    if client is None or client[0] not in tenant.allowed_ips:
                        status, ip_blocked = 403, True
                if status:
                    if revision_a and ip_blocked:
                        code, headers, body = problem_parts(403, "forbidden", "source IP not allowed")
                    else:
                        code, headers, body = gateway_parts(status)
                    headers = [*headers, (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": code, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
                scope[TENANT_SCOPE_KEY] = tenant
            await app(scope, receive, send)

        return gateway

    return wrap


GATEWAY_MISSING_TOKEN = b'{"message":"Missing Authentication Token"}'


def _unserved_middleware(config: SmartEPISandboxConfig) -> Callable[[ASGIApp], ASGIApp]:
    """``training_records`` other than "serve": /v1/training-records does not exist. API Gateway
    answers an unknown resource before the authorizer runs, so this sits outside the key check."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def unserved(scope: Scope, receive: Receive, send: Send) -> None:
            mode = config.training_records
            path = scope.get("path", "") if scope["type"] == "http" else ""
            unserved_path = path == "/v1/training-records" or path.startswith("/v1/training-records/")
            if mode != "serve" and unserved_path:
                if mode == "403":
                    code, headers, body = 403, [(b"content-type", b"application/json")], GATEWAY_MISSING_TOKEN
                else:
                    code = int(mode)
                    token = "not_found" if code == 404 else "method_not_allowed"
                    code, headers, body = problem_parts(code, token, f"No route for {path}")
                headers = [*headers, (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": code, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return unserved

    return wrap


class _Wrapped:
    """Adapts a function ``app -> app`` to Starlette's ``add_middleware``."""

    def __init__(self, app: ASGIApp, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        self._app = wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(payload), status, {"X-Request-Id": request_id(), **(headers or {})}, _JSON)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


async def read_json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("A JSON object body is required")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Malformed JSON body") from None
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object")
    return body


def _nulls_as_configured(body: dict[str, Any], mode: str) -> dict[str, Any]:
    """A ``null`` field of an update body under the ``null_on_update`` knob (clearing is undocumented)."""
    nulls = sorted(k for k, v in body.items() if v is None and not k.startswith("_"))
    if not nulls or mode == "clears":
        return body
    if mode == "rejected":
        raise bad_request(f"{nulls[0]}: must not be null")
    return {k: v for k, v in body.items() if k not in nulls}


def _versions_from(request: Request, body_version: Any = None, *, in_body: bool) -> list[int]:
    from sync.sandbox.smartepi.schema import parse_version

    versions: list[int] = []
    if_match = request.headers.get("if-match")
    if if_match is not None:
        # §2.6: ``If-Match: "<etag>"``, the strong ETag as sent (a quoted integer); an unquoted,
        # weak or padded value is refused (400), as a strict server could (the bare integer is
        # the ``_version`` channel).
        if not _QUOTED_VERSION.match(if_match):
            raise bad_request('If-Match: must be the quoted ETag, e.g. "4"')
        versions.append(parse_version(if_match, "If-Match"))
    if in_body:
        if body_version is not None:
            if isinstance(body_version, bool) or not isinstance(body_version, int):
                raise bad_request("_version: must be an integer")
            versions.append(body_version)
    else:
        raw = request.query_params.get("_version")
        if raw is not None:
            versions.append(parse_version(raw, "_version"))
    return versions


Endpoint = Callable[[Request], Awaitable[Response]]
_QUOTED_VERSION = re.compile(r'^"[0-9]+"$')


def _routes(
    app: FastAPI,
    store: Store,
    spec: EntitySpec,
    mode: Callable[[], FilterMode],
    window_digits: Callable[[], int] = lambda: 6,
    identification_search: Callable[[], str] = lambda: "folded",
    paging: Callable[[], str] = lambda: "exact",
    access_group_by_id: Callable[[], bool] = lambda: True,
    null_on_update: Callable[[], str] = lambda: "clears",
) -> None:
    resource = spec.resource
    base = f"/v1/{resource}"

    def check_query(request: Request, operation: Operation) -> None:
        """400 for a query parameter the contract does not document here (strict mode)."""
        if request.query_params:
            accepted_params(resource, operation, request.query_params.multi_items(), mode())

    def tenant_of(request: Request) -> Tenant:
        tenant: Tenant = request.scope[TENANT_SCOPE_KEY]
        return tenant

    def single(
        rec_spec: EntitySpec, tenant: Tenant, record_id: str, status: int = 200, **extra: str
    ) -> Response:
        rec = tenant.tables[rec_spec.resource].records[record_id]
        return _reply({"data": dto(rec_spec, rec)}, status, {"ETag": rec.etag, **extra})

    async def list_records(request: Request) -> Response:
        tenant = tenant_of(request)
        ident = request.query_params.get("identification") if resource == "employees" else None
        ident_mode = identification_search()
        if ident is not None and ident_mode == "reject":
            raise bad_request("identification: unsupported query parameter")
        with store.lock:
            params = request.query_params.multi_items()
            page, cursor = store.list_page(
                tenant, resource, params, mode(), window_digits(), paging() == "dynamo"
            )
            if ident is not None and ident_mode == "exact_text":  # the stored text, as typed
                page = [rec for rec in page if rec.data.get("identification") == ident]
            data = [dto(spec, rec) for rec in page]
        return _reply({"data": data, "cursor": cursor})

    async def create_record(request: Request) -> Response:
        tenant = tenant_of(request)
        check_query(request, "create")
        body = await read_json_object(request)
        rec = store.create(tenant, resource, body)
        location = f"{str(request.base_url).rstrip('/')}{base}/{rec.id}"
        return single(spec, tenant, rec.id, 201, Location=location)

    async def get_record(request: Request) -> Response:
        tenant = tenant_of(request)
        check_query(request, "get")
        rec = store.get(tenant, resource, request.path_params["id"])
        return single(spec, tenant, rec.id)

    async def update_record(request: Request) -> Response:
        tenant = tenant_of(request)
        record_id = request.path_params["id"]
        check_query(request, "update")
        store.get(tenant, resource, record_id)
        body = _nulls_as_configured(await read_json_object(request), null_on_update())
        versions = _versions_from(request, body.get("_version"), in_body=True)
        rec = store.update(tenant, resource, record_id, body, versions)
        return single(spec, tenant, rec.id)

    async def delete_record(request: Request) -> Response:
        tenant = tenant_of(request)
        record_id = request.path_params["id"]
        check_query(request, "delete")
        store.get(tenant, resource, record_id)
        rec = store.delete(tenant, resource, record_id, _versions_from(request, in_body=False))
        return _reply({"data": dto(spec, rec)}, 200, {"ETag": rec.etag})

    async def not_allowed(request: Request) -> Response:
        if spec.transaction and request.method == "GET":
            raise method_not_allowed(f"/{resource} is list-only: there is no GET by id")
        if spec.writable:
            raise method_not_allowed(f"{request.method} is not supported here; updates use PUT")
        raise method_not_allowed(f"/{resource} is read-only")

    async def by_id(request: Request) -> Response:
        handler = {"GET": get_record, "PUT": update_record, "DELETE": delete_record}.get(request.method)
        if handler is None or (request.method != "GET" and not spec.writable):
            return await not_allowed(request)
        if request.method == "GET" and resource == "access-groups" and not access_group_by_id():
            raise method_not_allowed("/access-groups is list-only: there is no GET by id")
        return await handler(request)

    async def collection(request: Request) -> Response:
        if request.method == "GET":
            return await list_records(request)
        if request.method == "POST" and spec.writable:
            return await create_record(request)
        return await not_allowed(request)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app.add_route(base, collection, methods=methods, include_in_schema=False)
    item = not_allowed if spec.transaction else by_id
    app.add_route(f"{base}/{{id}}", item, methods=methods, include_in_schema=False)


def create_app(config: SmartEPISandboxConfig | None = None, faults: FaultConfig | None = None) -> FastAPI:
    """A fresh sandbox; state, webhooks and faults live on ``app.state.sandbox``."""
    from sync.sandbox.smartepi.admin import admin_router, loopback_guard

    config = config or SmartEPISandboxConfig()
    store = Store()

    def account_of(scope: dict[str, Any]) -> str | None:
        key = _bearer(scope)
        tenant = store.tenant_for_key(key) if key else None
        return tenant.id if tenant is not None else None

    injector = FaultInjector(
        "smartepi",
        faults or FaultConfig(),
        account_of=account_of,
        rate_limited=lambda retry_after: rate_limited_parts(
            retry_after, config.gateway_style, config.retry_after_format == "http_date"
        ),
        server_error=server_error_parts,
    )
    sandbox = Sandbox(config, store, WebhookEmitter(config.webhooks), injector)
    for tc in config.tenants:
        sandbox.add_tenant(tc)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        sandbox.emitter.stop()

    app = FastAPI(
        title="SmartEPI sandbox", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.sandbox = sandbox

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        token = exc.token
        if exc.status == 409 and token.startswith("duplicate_") and sandbox.config.duplicate_token:
            token = sandbox.config.duplicate_token
        return problem_response(exc.status, token, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        token = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return problem_response(exc.status_code, token, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Response:
        status, headers, body = server_error_parts()
        return Response(body, status, {k.decode(): v.decode() for k, v in headers})

    for spec in SPECS.values():
        _routes(
            app,
            store,
            spec,
            lambda: sandbox.config.list_filters,
            lambda: sandbox.config.window_fraction_digits,
            lambda: sandbox.config.identification_search,
            lambda: sandbox.config.paging,
            lambda: sandbox.config.access_group_by_id,
            lambda: sandbox.config.null_on_update,
        )
    app.include_router(admin_router(sandbox))
    app.include_router(injector.admin_router(dependencies=[loopback_guard(sandbox)]))
    app.add_middleware(_Wrapped, wrap=_auth_middleware(store, lambda: sandbox.config.gateway_style))
    app.add_middleware(_Wrapped, wrap=_unserved_middleware(sandbox.config))
    app.add_middleware(_Wrapped, wrap=injector.wrap)
    return app


__all__ = ["Message", "Sandbox", "SmartEPISandboxConfig", "TenantConfig", "create_app", "read_json_object"]
