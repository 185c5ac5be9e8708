"""What every SmartKasa route needs: the store, auth checks, body unwrapping, paging, id lookup.

Auth (§2, §9.1): ``X-API-KEY`` names the tenant on every API route; data routes also need
``Authorization`` with an access token, bare or ``Bearer <token>`` (``auth_scheme`` can demand one form).
Tokens are checked against the server-side registry, so rotation, logout and forced expiry take effect at
once. A fault injector that says "expire this token" revokes the presented access token for good, as a
real expiry would.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from sync.sandbox.smartkasa import tokens
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig
from sync.sandbox.smartkasa.formats import ApiError, field_error, ts, unauthorized
from sync.sandbox.smartkasa.store import INT_TABLES, Record, Store, Tenant, TokenRec

if TYPE_CHECKING:
    from sync.sandbox.faults import FaultInjector


def _pos_int(text: str | None, default: int) -> int:
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value > 0 else default


class Sandbox:
    def __init__(self, config: SmartKasaSandboxConfig) -> None:
        self.config = config
        self.store = Store(config)
        self.injector: FaultInjector | None = None

    # --- auth ----------------------------------------------------------------------------

    def tenant(self, request: Request) -> Tenant:
        key = request.headers.get("x-api-key")
        tenant = self.store.tenants.get(key) if key else None
        if tenant is None:
            raise unauthorized()
        return tenant

    def session(self, request: Request) -> tuple[Tenant, TokenRec]:
        tenant = self.tenant(request)
        raw = request.headers.get("authorization")
        if not raw:
            raise unauthorized()
        scheme = self.config.auth_scheme
        if raw[:7].lower() == "bearer ":
            if scheme == "bare":
                raise unauthorized()
            raw = raw[7:].strip()
        elif scheme == "bearer":
            raise unauthorized()
        rec = self.token(raw, tenant, "access")
        if self.injector is not None and self.injector.should_expire_token(tenant.api_key):
            rec.used = True
            raise unauthorized()
        return tenant, rec

    def token(self, raw: str, tenant: Tenant, kind: str) -> TokenRec:
        store = self.store
        rec = store.token_cache.get(raw)
        if rec is None:
            claims = tokens.decode(raw, secret=self.config.jwt_secret)
            found = store.tokens.get(str(claims.get("uid"))) if claims else None
            if found is None:
                raise unauthorized()
            rec = store.token_cache[raw] = found
        if rec.kind != kind or rec.tenant_key != tenant.api_key or rec.used or rec.expires_at <= store.now():
            raise unauthorized()
        return rec

    def issue(self, tenant: Tenant, family: str | None = None) -> Record:
        """A login or refresh answer (§2.2): new access and refresh tokens of a new session token."""
        store, cfg = self.store, self.config
        now = store.now()
        session_token = str(uuid.uuid4())
        family = family or session_token
        access_uid, refresh_uid = str(uuid.uuid4()), str(uuid.uuid4())
        access_exp, refresh_exp = now + cfg.access_ttl_s, now + cfg.refresh_ttl_s
        access = tokens.encode(
            {
                "user_type_id": 1,
                "owner_id": tenant.owner_id,
                "role_id": None,
                "session_token": session_token,
                "user_id": tenant.user_id,
                "uid": access_uid,
            },
            issued=int(now),
            expires=int(access_exp),
            secret=cfg.jwt_secret,
        )
        refresh = tokens.encode(
            {"session_token": session_token, "user_id": tenant.user_id, "uid": refresh_uid},
            issued=int(now),
            expires=int(refresh_exp),
            secret=cfg.jwt_secret,
        )
        key = tenant.api_key
        store.tokens[access_uid] = TokenRec(key, "access", family, access_exp, access_uid, session_token)
        store.tokens[refresh_uid] = TokenRec(key, "refresh", family, refresh_exp, refresh_uid, session_token)
        offset = self.config.utc_offsets_minutes[0] if self.config.utc_offsets_minutes else 0
        return {
            "id": None,
            "access": access,
            "access_expires_at": ts(float(int(access_exp)), offset),
            "csrf": uuid.uuid4().hex + uuid.uuid4().hex,
            "refresh": refresh,
            "refresh_expires_at": ts(float(int(refresh_exp)), offset),
        }

    def revoke(
        self, *, family: str | None = None, tenant_key: str | None = None, kind: str | None = None
    ) -> int:
        count = 0
        for rec in self.store.tokens.values():
            if family is not None and rec.family != family:
                continue
            if tenant_key is not None and rec.tenant_key != tenant_key:
                continue
            if kind is not None and rec.kind != kind:
                continue
            if not rec.used:
                rec.used = True
                count += 1
        return count

    # --- bodies --------------------------------------------------------------------------

    @staticmethod
    async def json_body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, {"errors": {"base": [{"error": "invalid_json"}]}}) from None

    def unwrap(self, body: Any, key: str) -> dict[str, Any]:
        """``{"product": {...}}`` or ``{...}`` per ``body_style``. In strict ``wrapped`` mode a missing
        wrapper is Rails' ParameterMissing (400); in ``plain`` mode a wrapper is just an unknown key."""
        if not isinstance(body, dict):
            raise field_error(key, "invalid")
        style = self.config.body_style
        if style == "plain":
            return body
        inner = body.get(key)
        if isinstance(inner, dict):
            return inner
        if style == "wrapped":
            raise field_error(key, "blank" if inner is None else "invalid", 400)
        return body

    def check_inner_id(self, data: dict[str, Any], path_id: str) -> None:
        """``inner_id=required``: an update body must repeat the record id (the Blueprint's form, §1)
        and agree with the path; else 422 ``id`` blank/invalid, as a server reading it would answer."""
        if self.config.inner_id != "required":
            return
        inner = data.get("id")
        if inner is None:
            raise field_error("id", "blank")
        if str(inner) != str(path_id):
            raise field_error("id", "invalid")

    def unwrap_batch(self, body: Any, key: str) -> list[Any]:
        """``{"batch": {key: [...]}}`` or ``{key: [...]}``; anything else is 422 ``{key: blank}``."""
        inner = self.unwrap(body, "batch")
        items = inner.get(key)
        if not isinstance(items, list) or not items:
            raise field_error(key, "blank")
        return items

    # --- lists ---------------------------------------------------------------------------

    def paginate(
        self, request: Request, items: list[Any], default: int | None = None
    ) -> tuple[list[Any], Record]:
        """Kaminari paging with its exact meta (§3); an optional cap shrinks per_page silently;
        ``page_param`` can make the server ignore ``page``."""
        q = request.query_params
        per = _pos_int(q.get("per_page"), default or self.config.default_per_page)
        if self.config.max_per_page:
            per = min(per, self.config.max_per_page)
        page = _pos_int(q.get("page"), 1)
        mode = self.config.page_param
        if mode == "ignored":
            page = 1
        total = len(items)
        pages = -(-total // per)
        out_of_range = page > pages
        offset = (page - 1) * per
        served = 0 if mode == "ignored_echo" else offset
        meta = {
            "current_page": page,
            "next_page": page + 1 if page < pages else None,
            "prev_page": page - 1 if page > 1 and not out_of_range else None,
            "total_pages": pages,
            "total_count": total,
            "limit_value": per,
            "offset_value": offset,
        }
        return items[served : served + per], meta

    # --- ids -----------------------------------------------------------------------------

    def unknown_id(self) -> ApiError:
        if self.config.unknown_id_status == 404:
            return ApiError(404, {"message": "Not Found"})
        return field_error("id", "invalid")

    def get(self, tenant: Tenant, table: str, raw_id: str) -> Record:
        key: Any = raw_id
        if table in INT_TABLES:
            try:
                key = int(raw_id)
            except ValueError:
                raise self.unknown_id() from None
        record = tenant.tables[table].get(key)
        if record is None:
            raise self.unknown_id()
        return record
