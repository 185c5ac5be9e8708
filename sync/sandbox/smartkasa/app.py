"""The SmartKasa sandbox application: routes, error handling, and the shared fault layer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from sync.sandbox.faults import ASGIApp, CannedResponse, FaultConfig, FaultInjector, Receive, Scope, Send
from sync.sandbox.smartkasa import admin, routes_auth, routes_catalog, routes_org, routes_sales
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig
from sync.sandbox.smartkasa.context import Sandbox
from sync.sandbox.smartkasa.formats import ApiError, dumps, json_response

_JSON = [(b"content-type", b"application/json")]


def account_of(scope: dict[str, Any]) -> str | None:
    """The quota account of a request: its ``X-API-KEY``."""
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            return str(value.decode("latin-1"))
    return None


def rate_limited(retry_after: float | None) -> CannedResponse:
    """Undocumented on SmartKasa; assumed ``{"message":"Too Many Requests"}`` (+ Retry-After when set)."""
    headers = list(_JSON)
    if retry_after is not None:
        headers.append((b"retry-after", f"{retry_after:g}".encode()))
    return 429, headers, dumps({"message": "Too Many Requests"})


def server_error() -> CannedResponse:
    return 500, list(_JSON), dumps({"message": "Internal Server Error"})


class _FaultLayer:
    """Puts the injector inside the app's middleware stack, so ``create_app`` still returns a FastAPI."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self._asgi = injector.wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)


def create_app(config: SmartKasaSandboxConfig | None = None, faults: FaultConfig | None = None) -> FastAPI:
    sandbox = Sandbox(config or SmartKasaSandboxConfig())
    app = FastAPI(title="SmartKasa sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = sandbox

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return json_response(exc.body, exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        phrases = {404: "Not Found", 405: "Method Not Allowed"}
        return json_response({"message": phrases.get(exc.status_code, str(exc.detail))}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/_admin"):
            return await request_validation_exception_handler(request, exc)
        return json_response({"errors": "[Request.new] has invalid type"}, 422)

    # Routes are added flat, not through include_router: FastAPI's nested included routers double the
    # per-request matching cost, which is most of this sandbox's CPU on simple requests (bench/sandbox.py).
    for module in (routes_auth, routes_catalog, routes_org, routes_sales, admin):
        app.router.routes.extend(module.router(sandbox).routes)

    injector = FaultInjector(
        "smartkasa",
        faults or FaultConfig(),
        account_of=account_of,
        rate_limited=rate_limited,
        server_error=server_error,
    )
    sandbox.injector = injector
    app.router.routes.extend(injector.admin_router(dependencies=[admin.guard(sandbox)]).routes)
    app.add_middleware(_FaultLayer, injector=injector)
    return app
