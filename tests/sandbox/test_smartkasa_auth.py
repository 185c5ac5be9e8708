"""SmartKasa sandbox: API key, sessions, token rotation and expiry (smartkasa.md §2, §9.1)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from sync.sandbox.faults import FaultConfig
from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec

KEY = "a" * 32
OTHER = "b" * 32
CREDS = {"phone_number": "380960000006", "password": "123456789"}
UNAUTHORIZED = {"message": "Unauthorized"}


def make(faults: FaultConfig | None = None, **cfg: Any) -> TestClient:
    config = SmartKasaSandboxConfig(tenants=[TenantSpec(api_key=KEY), TenantSpec(api_key=OTHER)], **cfg)
    return TestClient(create_app(config, faults), client=("127.0.0.1", 50000))


def login(c: TestClient, key: str = KEY, body: Any = None) -> dict[str, Any]:
    r = c.post("/api/v1/auth/sessions", headers={"X-API-KEY": key}, json=body or {"session": CREDS})
    assert r.status_code == 201, r.text
    return r.json()["data"]


def claims(token: str) -> tuple[str, dict[str, Any]]:
    header, payload, _ = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    return base64.urlsafe_b64decode(header + "==").decode(), json.loads(raw) | {"_raw": raw}


def shops(c: TestClient, token: str, key: str = KEY) -> Any:
    return c.get("/api/v1/rsn/shops", headers={"X-API-KEY": key, "Authorization": token})


def test_api_key_is_required_on_every_route():
    c = make()
    for method, path in [
        ("POST", "/api/v1/auth/sessions"),
        ("POST", "/api/v1/auth/refresh"),
        ("GET", "/api/v1/inventory/products"),
        ("DELETE", "/api/v1/auth/sessions/logout"),
    ]:
        for headers in ({}, {"X-API-KEY": "unknown"}):
            r = c.request(method, path, headers=headers, json={"session": CREDS})
            assert (r.status_code, r.json()) == (401, UNAUTHORIZED), (method, path)


def test_login_answers_the_documented_shape_and_token_claims():
    c = make()
    data = login(c)
    assert set(data) == {"id", "access", "access_expires_at", "csrf", "refresh", "refresh_expires_at"}
    assert data["id"] is None
    header, access = claims(data["access"])
    assert json.loads(header) == {"alg": "HS256"}
    assert {"exp", "user_type_id", "owner_id", "role_id", "session_token", "user_id", "uid"} <= set(access)
    assert access["_raw"].count('"exp"') == 2  # the real tokens repeat exp; the last one is the expiry
    _, refresh = claims(data["refresh"])
    assert {"exp", "session_token", "user_id", "uid"} <= set(refresh)
    assert data["access_expires_at"].endswith("+02:00") and ".000" in data["access_expires_at"]


def test_login_accepts_plain_body_unless_wrapped_is_required():
    assert login(make(), body=CREDS)["access"]
    strict = make(body_style="wrapped")
    r = strict.post("/api/v1/auth/sessions", headers={"X-API-KEY": KEY}, json=CREDS)
    assert r.status_code == 400 and r.json() == {"errors": {"session": [{"error": "blank"}]}}


@pytest.mark.parametrize(
    "creds", [{**CREDS, "password": "wrong"}, {**CREDS, "phone_number": "380000000000"}, {}]
)
def test_bad_credentials_give_422_base_error(creds):
    r = make().post("/api/v1/auth/sessions", headers={"X-API-KEY": KEY}, json={"session": creds})
    assert r.status_code == 422
    assert r.json() == {"errors": {"base": [{"error": "phone_number_or_password_invalid"}]}}


def test_phone_in_local_form_logs_in_too():
    assert login(make(), body={"session": {**CREDS, "phone_number": "0960000006"}})["access"]


def test_data_routes_need_authorization_bare_or_bearer():
    c = make()
    token = login(c)["access"]
    assert shops(c, token).status_code == 200
    assert shops(c, f"Bearer {token}").status_code == 200
    assert shops(c, "wrong").json() == UNAUTHORIZED
    r = c.get("/api/v1/rsn/shops", headers={"X-API-KEY": KEY})
    assert (r.status_code, r.json()) == (401, UNAUTHORIZED)


@pytest.mark.parametrize(
    ("scheme", "ok_form", "bad_form"), [("bare", "{}", "Bearer {}"), ("bearer", "Bearer {}", "{}")]
)
def test_auth_scheme_setting_restricts_the_form(scheme, ok_form, bad_form):
    c = make(auth_scheme=scheme)
    token = login(c)["access"]
    assert shops(c, ok_form.format(token)).status_code == 200
    assert shops(c, bad_form.format(token)).status_code == 401


def test_token_of_one_tenant_is_refused_with_another_key():
    c = make()
    token = login(c)["access"]
    assert shops(c, token, key=OTHER).status_code == 401


def test_expired_access_token_gives_401():
    c = make(access_ttl_s=0.2)
    token = login(c)["access"]
    assert shops(c, token).status_code == 200
    time.sleep(0.3)
    assert shops(c, token).json() == UNAUTHORIZED


def test_refresh_rotates_and_old_refresh_token_is_single_use():
    c = make()
    first = login(c)
    r = c.post("/api/v1/auth/refresh", headers={"X-API-KEY": KEY, "X-Refresh-Token": first["refresh"]})
    assert r.status_code == 201
    second = r.json()["data"]
    assert second["refresh"] != first["refresh"] and second["access"] != first["access"]
    assert claims(second["access"])[1]["session_token"] != claims(first["access"])[1]["session_token"]
    assert shops(c, second["access"]).status_code == 200
    again = c.post("/api/v1/auth/refresh", headers={"X-API-KEY": KEY, "X-Refresh-Token": first["refresh"]})
    assert (again.status_code, again.json()) == (401, UNAUTHORIZED)
    missing = c.post("/api/v1/auth/refresh", headers={"X-API-KEY": KEY})
    assert missing.status_code == 401
    access_as_refresh = c.post(
        "/api/v1/auth/refresh", headers={"X-API-KEY": KEY, "X-Refresh-Token": second["access"]}
    )
    assert access_as_refresh.status_code == 401


def test_expired_refresh_token_gives_401():
    c = make(refresh_ttl_s=0.2)
    data = login(c)
    time.sleep(0.3)
    r = c.post("/api/v1/auth/refresh", headers={"X-API-KEY": KEY, "X-Refresh-Token": data["refresh"]})
    assert (r.status_code, r.json()) == (401, UNAUTHORIZED)


def test_logout_returns_token_uid_and_ends_the_session_family():
    c = make()
    first = login(c)
    second = c.post("/api/v1/auth/refresh", headers={"X-API-KEY": KEY, "X-Refresh-Token": first["refresh"]})
    refreshed = second.json()["data"]
    other_session = login(c)["access"]
    r = c.delete(
        "/api/v1/auth/sessions/logout", headers={"X-API-KEY": KEY, "Authorization": refreshed["access"]}
    )
    assert r.status_code == 200
    assert r.json() == {"data": {"id": claims(refreshed["access"])[1]["uid"]}, "meta": {}}
    assert shops(c, refreshed["access"]).status_code == 401
    assert shops(c, first["access"]).status_code == 401  # same login, earlier token
    assert shops(c, other_session).status_code == 200  # another login is untouched
    bad = c.delete("/api/v1/auth/sessions/logout", headers={"X-API-KEY": KEY, "Authorization": "wrong"})
    assert (bad.status_code, bad.json()) == (401, UNAUTHORIZED)


def test_admin_can_force_expire_a_tenants_access_tokens():
    c = make()
    mine, theirs = login(c)["access"], login(c, OTHER)["access"]
    r = c.post("/_admin/expire_tokens", headers={"X-API-KEY": KEY})
    assert r.json() == {"expired": 1}
    assert shops(c, mine).status_code == 401
    assert shops(c, theirs, key=OTHER).status_code == 200


def test_fault_layer_can_expire_a_token_mid_run_and_it_stays_expired():
    c = make(FaultConfig(p_expire_token=1.0))
    data = login(c)
    assert shops(c, data["access"]).status_code == 401
    c.put("/_admin/faults", json={})
    assert shops(c, data["access"]).status_code == 401
    r = c.post("/api/v1/auth/refresh", headers={"X-API-KEY": KEY, "X-Refresh-Token": data["refresh"]})
    assert shops(c, r.json()["data"]["access"]).status_code == 200
