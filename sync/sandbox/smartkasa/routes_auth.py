"""Sessions (§2): login, refresh with rotation, logout."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sync.sandbox.smartkasa.context import Sandbox
from sync.sandbox.smartkasa.formats import ApiError, normalize_phone, ok, unauthorized

log = logging.getLogger(__name__)
BAD_LOGIN = ApiError(422, {"errors": {"base": [{"error": "phone_number_or_password_invalid"}]}})


def router(sb: Sandbox) -> APIRouter:
    r = APIRouter(prefix="/api/v1/auth")

    @r.post("/sessions")
    async def login(request: Request) -> Response:
        tenant = sb.tenant(request)
        body = await sb.json_body(request)
        if (
            isinstance(body, dict)
            and not isinstance(body.get("session"), dict)
            and sb.config.body_style == "any"
        ):
            log.debug("smartkasa sandbox: login with an unwrapped body")
        data = sb.unwrap(body, "session")
        phone, password = data.get("phone_number"), data.get("password")
        if not isinstance(phone, str) or not isinstance(password, str):
            raise BAD_LOGIN
        if normalize_phone(phone) != normalize_phone(tenant.phone_number) or password != tenant.password:
            raise BAD_LOGIN
        return ok(sb.issue(tenant), status=201)

    @r.post("/refresh")
    async def refresh(request: Request) -> Response:
        tenant = sb.tenant(request)
        raw = request.headers.get("x-refresh-token")
        if not raw:
            raise unauthorized()
        rec = sb.token(raw.strip(), tenant, "refresh")
        rec.used = True  # rotation: a refresh token works once
        return ok(sb.issue(tenant, family=rec.family), status=201)

    @r.delete("/sessions/logout")
    async def logout(request: Request) -> Response:
        _, rec = sb.session(request)
        sb.revoke(family=rec.family)
        return ok({"id": rec.uid})

    return r
