"""SmartEPI sandbox: gateway rules (auth, quota, CORS) and tenant isolation."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from sync.sandbox.faults import FaultConfig
from sync.sandbox.smartepi import SmartEPISandboxConfig, TenantConfig, create_app

A = {"Authorization": "Bearer sk_alpha"}
B = {"Authorization": "Bearer sk_beta"}
DENY = "User is not authorized to access this resource with an explicit deny in an identity-based policy"


@pytest.fixture
def client() -> TestClient:
    config = SmartEPISandboxConfig(
        tenants=[TenantConfig(api_key="sk_alpha", id="ta"), TenantConfig(api_key="sk_beta", id="tb")]
    )
    return TestClient(create_app(config))


def test_missing_header_is_401_gateway_body_without_request_id(client: TestClient) -> None:
    response = client.get("/v1/employees")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert "x-request-id" not in response.headers
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "value", ["Bearer sk_unknown", "Bearer ", "Basic c2tfYWxwaGE=", "sk_alpha", "Bearer  sk_alpha"]
)
def test_any_sent_but_unusable_key_is_403_aws_deny(client: TestClient, value: str) -> None:
    response = client.get("/v1/employees", headers={"Authorization": value})
    assert response.status_code == 403
    assert response.json() == {"Message": DENY}
    assert "x-request-id" not in response.headers


def test_gateway_applies_to_unknown_paths_too(client: TestClient) -> None:
    assert client.get("/v1/nowhere").status_code == 401
    response = client.get("/v1/nowhere", headers=A)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:smartepi:error:not_found"


def test_new_key_is_inactive_during_activation_window() -> None:
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key="sk_new")], key_activation_s=60)
    client = TestClient(create_app(config))
    assert client.get("/v1/sectors", headers={"Authorization": "Bearer sk_new"}).status_code == 403


def test_ip_allow_list_blocks_other_sources_with_403() -> None:
    config = SmartEPISandboxConfig(
        tenants=[
            TenantConfig(api_key="sk_ok", allowed_ips=["testclient"]),
            TenantConfig(api_key="sk_blocked", allowed_ips=["10.0.0.1"]),
        ]
    )
    client = TestClient(create_app(config))
    assert client.get("/v1/sectors", headers={"Authorization": "Bearer sk_ok"}).status_code == 200
    blocked = client.get("/v1/sectors", headers={"Authorization": "Bearer sk_blocked"})
    assert blocked.status_code == 403 and blocked.json() == {"Message": DENY}


def test_quota_429_is_gateway_shaped_per_tenant_and_counted() -> None:
    config = SmartEPISandboxConfig(
        tenants=[TenantConfig(api_key="sk_alpha"), TenantConfig(api_key="sk_beta")]
    )
    client = TestClient(create_app(config, FaultConfig(quota_rps=0.001, quota_burst=2)))
    codes = [client.get("/v1/sectors", headers=A).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = client.get("/v1/sectors", headers=A)
    assert limited.json() == {"message": "Too Many Requests"}
    assert limited.headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert "retry-after" not in limited.headers and "x-request-id" not in limited.headers
    assert client.get("/v1/sectors", headers=B).status_code == 200  # metered per tenant
    stats = client.get("/_admin/stats").json()
    assert stats["routes"]["GET /v1/sectors"] == {"200": 3, "429": 2}
    assert stats["by_account"]["t1"]["rate_limited"] == 2


def test_retry_after_only_when_configured() -> None:
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key="sk_alpha")])
    client = TestClient(create_app(config, FaultConfig(p_429=1.0, retry_after=3)))
    assert client.get("/v1/sectors", headers=A).headers["retry-after"] == "3"


def test_injected_5xx_is_problem_json_with_request_id_and_commits_nothing() -> None:
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key="sk_alpha", id="ta")])
    client = TestClient(create_app(config, FaultConfig(p_5xx=1.0)))
    response = client.post("/v1/sectors", json={"name": "Welding"}, headers=A)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"]
    assert response.json()["type"] == "urn:smartepi:error:internal_error"
    assert client.get("/_admin/tenants/ta/state").json()["sectors"] == []
    client.put("/v1/sectors/sec_9", json={"name": "x"}, headers={**A, "If-Match": '"1"'})
    # Answered before routing, yet counted under the route template.
    assert client.get("/_admin/stats").json()["routes"]["PUT /v1/sectors/{id}"] == {"500": 1}


def test_no_cors_headers_even_on_preflight(client: TestClient) -> None:
    preflight = client.options(
        "/v1/employees",
        headers={**A, "Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code in (401, 403, 405)
    listed = client.get("/v1/employees", headers={**A, "Origin": "https://app.example"})
    for response in (preflight, listed):
        assert not any(h.lower().startswith("access-control-") for h in response.headers)


def test_tenants_are_isolated_by_key(client: TestClient) -> None:
    created = client.post("/v1/cost-centers", json={"name": "Ops", "code": "01"}, headers=A).json()["data"]
    assert client.get(f"/v1/cost-centers/{created['id']}", headers=B).status_code == 404
    assert client.get("/v1/cost-centers", headers=B).json() == {"data": [], "cursor": None}
    # The same name is free in the other tenant.
    assert client.post("/v1/cost-centers", json={"name": "Ops"}, headers=B).status_code == 201
    # A reference to another tenant's record is 422, naming the field.
    bad = client.post("/v1/employees", json={"name": "Ana", "costCenterId": created["id"]}, headers=B)
    assert bad.status_code == 422
    assert bad.json()["detail"] == "Unknown or cross-tenant reference: costCenterId"
    # Writes to another tenant's record look like "not found".
    put = client.put(
        f"/v1/cost-centers/{created['id']}", json={"name": "X"}, headers={**B, "If-Match": '"1"'}
    )
    assert put.status_code == 404


def test_admin_is_loopback_only_unless_configured() -> None:
    app = create_app(SmartEPISandboxConfig())
    remote = TestClient(app, client=("203.0.113.5", 5000))
    assert remote.get("/_admin/tenants").status_code == 403
    assert remote.get("/_admin/faults").status_code == 403
    local = TestClient(app, client=("127.0.0.1", 5000))
    assert local.get("/_admin/tenants").status_code == 200
    open_app = create_app(SmartEPISandboxConfig(admin_loopback_only=False))
    assert TestClient(open_app, client=("203.0.113.5", 5000)).get("/_admin/tenants").status_code == 200


def test_secrets_do_not_leak_into_reprs_or_admin_listings(client: TestClient) -> None:
    config = TenantConfig(api_key="sk_topsecret", webhook_secret="whsec_topsecret")
    assert "topsecret" not in repr(config)
    sandbox = client.app.state.sandbox  # type: ignore[attr-defined]
    tenant = sandbox.add_tenant(config)
    assert "topsecret" not in repr(tenant)
    assert "topsecret" not in client.get("/_admin/tenants").text


def test_drop_after_commit_on_a_real_server_commits_then_breaks_the_response() -> None:
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key="sk_alpha", id="ta")])
    app = create_app(config, FaultConfig(p_drop_after_commit=1.0, path_regex=r"^/v1/sectors/"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=A, timeout=5) as http:
            sector = http.post("/v1/sectors", json={"name": "Welding"}).json()["data"]
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                http.put(f"/v1/sectors/{sector['id']}", json={"name": "Cutting"}, headers={"If-Match": '"1"'})
            assert http.get(f"/v1/sectors/{sector['id']}").json()["data"]["name"] == "Cutting"
            stats = http.get("/_admin/stats").json()
        assert stats["routes"]["PUT /v1/sectors/{id}"] == {"dropped": 1}
    finally:
        server.should_exit = True
        thread.join(10)
