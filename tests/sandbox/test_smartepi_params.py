"""SmartEPI sandbox: only the query parameters the contract documents, per endpoint.

``?email=`` on ``/employees`` is the case that aborted applies against a strict API
(issue 14 item 4); the ``list_filters`` setting also lets tests play a lenient API and
one that ignores filters altogether.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sync.sandbox.smartepi import SmartEPISandboxConfig, TenantConfig, create_app
from sync.sandbox.smartepi.params import DOCUMENTED
from sync.sandbox.smartepi.schema import SPECS

H = {"Authorization": "Bearer sk_t"}


def make(mode: str = "strict") -> TestClient:
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key="sk_t", id="t")], list_filters=mode)
    return TestClient(create_app(config))


@pytest.fixture
def client() -> TestClient:
    return make()


def seed(client: TestClient, resource: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(f"/_admin/tenants/t/seed/{resource}", json=records)
    assert response.status_code == 201, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def assert_problem_400(response: Any, param: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert body["type"] == "urn:smartepi:error:bad_request" and body["status"] == 400
    assert param in body["detail"] and "unknown query parameter" in body["detail"]


def test_email_search_on_employees_is_400_problem(client: TestClient) -> None:
    seed(client, "employees", [{"name": "Ana", "email": "ana@x.com"}])
    assert_problem_400(client.get("/v1/employees", params={"email": "ana@x.com"}, headers=H), "email")
    # other undocumented employee filters from the contract's "probably" list
    for param in ("costCenter2Id", "active", "q"):
        assert_problem_400(client.get("/v1/employees", params={param: "x"}, headers=H), param)


def test_every_documented_list_parameter_is_accepted(client: TestClient) -> None:
    org = {r: seed(client, r, [{"name": f"{r} 1"}])[0]["id"] for r in ("sectors", "cost-centers")}
    values = {
        "limit": "5",
        "createdSince": "2024-01-01T00:00:00Z",
        "createdUntil": "2030-01-01T00:00:00Z",
        "sectorId": org["sectors"],
        "costCenterId": org["cost-centers"],
    }
    for resource, ops in DOCUMENTED.items():
        for param in sorted(ops["list"] - {"cursor"}):
            response = client.get(f"/v1/{resource}", params={param: values.get(param, "x")}, headers=H)
            assert response.status_code == 200, (resource, param, response.text)


@pytest.mark.parametrize("resource", sorted(DOCUMENTED))
def test_undocumented_list_parameter_is_400_on_every_resource(client: TestClient, resource: str) -> None:
    assert_problem_400(client.get(f"/v1/{resource}", params={"email": "a@b.c"}, headers=H), "email")


def test_single_record_endpoints_check_their_parameters(client: TestClient) -> None:
    sector = seed(client, "sectors", [{"name": "Weld"}])[0]
    path = f"/v1/sectors/{sector['id']}"
    assert_problem_400(client.get(path, params={"name": "Weld"}, headers=H), "name")
    assert_problem_400(client.post("/v1/sectors?dryRun=1", json={"name": "X"}, headers=H), "dryRun")
    put = client.put(path + "?_version=1", json={"name": "W2"}, headers={**H, "If-Match": '"1"'})
    assert_problem_400(put, "_version")  # _version travels in the body for updates (§2.6)
    assert_problem_400(client.delete(path + "?force=1", headers={**H, "If-Match": '"1"'}), "force")
    assert client.get("/v1/sectors", headers=H).json()["data"][0]["name"] == "Weld"  # nothing changed
    assert client.delete(path + "?_version=1", headers=H).status_code == 200  # documented on delete


def test_every_sandbox_resource_has_a_row_in_the_table() -> None:
    assert set(DOCUMENTED) == set(SPECS)


def test_lenient_mode_ignores_undocumented_parameters_and_applies_documented_ones() -> None:
    client = make("lenient")
    seed(
        client, "employees", [{"name": "Ana", "identification": "1"}, {"name": "Bia", "identification": "2"}]
    )
    names = [e["name"] for e in client.get("/v1/employees?email=x&name=bi", headers=H).json()["data"]]
    assert names == ["Bia"]


def test_ignore_mode_returns_unfiltered_pages_that_still_page_correctly() -> None:
    client = make("ignore")
    seed(client, "employees", [{"name": f"E{i}", "identification": str(i)} for i in range(7)])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"identification": "3", "name": "E3", "limit": "3", **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/employees", params=params, headers=H).json()
        seen += [e["name"] for e in body["data"]]
        cursor = body["cursor"]
        if cursor is None:
            break
    assert seen == [f"E{i}" for i in reversed(range(7))]


def test_the_mode_can_be_switched_at_runtime_through_admin(client: TestClient) -> None:
    assert client.get("/_admin/list-filters").json() == {"mode": "strict"}
    assert client.put("/_admin/list-filters", json={"mode": "ignore"}).json() == {"mode": "ignore"}
    assert client.get("/v1/employees?email=a@b.c", headers=H).status_code == 200
    assert client.put("/_admin/list-filters", json={"mode": "bogus"}).status_code == 422
