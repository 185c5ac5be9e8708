"""SmartEPI sandbox: list envelopes, cursors, limits, ordering and filter rules."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sync.sandbox.smartepi import SmartEPISandboxConfig, TenantConfig, create_app

H = {"Authorization": "Bearer sk_t"}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(SmartEPISandboxConfig(tenants=[TenantConfig(api_key="sk_t", id="t")])))


def seed(client: TestClient, resource: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(f"/_admin/tenants/t/seed/{resource}", json=records)
    assert response.status_code == 201, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def get_all(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, params=query, headers=H)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"data", "cursor"}
        items.extend(body["data"])
        cursor = body["cursor"]
        if cursor is None:
            return items


def test_list_envelope_has_no_etag_and_default_limit_20(client: TestClient) -> None:
    seed(client, "sectors", [{"name": f"S{i:02}"} for i in range(25)])
    page = client.get("/v1/sectors", headers=H)
    assert "etag" not in page.headers
    assert len(page.json()["data"]) == 20
    assert isinstance(page.json()["cursor"], str)


def test_default_order_is_newest_first_and_paging_is_complete(client: TestClient) -> None:
    made = seed(client, "job-roles", [{"name": f"Role {i}"} for i in range(23)])
    listed = get_all(client, "/v1/job-roles", limit=5)
    assert [r["id"] for r in listed] == [r["id"] for r in reversed(made)]


def test_ordering_follows_created_at_not_insertion(client: TestClient) -> None:
    seed(
        client,
        "groups",
        [
            {"name": "middle", "createdAt": "2024-01-02T00:00:00Z"},
            {"name": "newest", "createdAt": "2024-01-03T00:00:00Z"},
            {"name": "oldest", "createdAt": "2024-01-01T00:00:00Z"},
        ],
    )
    assert [g["name"] for g in get_all(client, "/v1/groups", limit=1)] == ["newest", "middle", "oldest"]


def test_last_page_cursor_is_null_and_never_followed_by_empty_page(client: TestClient) -> None:
    seed(client, "groups", [{"name": f"G{i}"} for i in range(4)])
    first = client.get("/v1/groups", params={"limit": 2}, headers=H).json()
    second = client.get("/v1/groups", params={"limit": 2, "cursor": first["cursor"]}, headers=H).json()
    assert len(second["data"]) == 2 and second["cursor"] is None


def test_records_created_between_pages_do_not_shift_pages(client: TestClient) -> None:
    seed(client, "groups", [{"name": f"G{i}"} for i in range(4)])
    first = client.get("/v1/groups", params={"limit": 2}, headers=H).json()
    seed(client, "groups", [{"name": "late"}])
    rest = get_all(client, "/v1/groups", limit=2, cursor=first["cursor"])
    assert [g["name"] for g in first["data"] + rest] == ["G3", "G2", "G1", "G0"]


def test_cursor_is_base64_json_and_opaque(client: TestClient) -> None:
    seed(client, "groups", [{"name": f"G{i}"} for i in range(3)])
    cursor = client.get("/v1/groups", params={"limit": 1}, headers=H).json()["cursor"]
    assert cursor.startswith("eyJQSyI6")
    assert json.loads(base64.urlsafe_b64decode(cursor))["PK"] == "t"


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!!",
        "eyJQSyI6",  # truncated
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        base64.urlsafe_b64encode(b'{"PK":"t","SK":"groups#desc","Q":"x","K":[1,2]}').decode(),
    ],
)
def test_invalid_cursor_is_400_not_a_restart(client: TestClient, cursor: str) -> None:
    seed(client, "groups", [{"name": "G"}])
    response = client.get("/v1/groups", params={"cursor": cursor}, headers=H)
    assert response.status_code == 400
    assert response.json()["type"] == "urn:smartepi:error:bad_request"
    assert response.headers["x-request-id"]


def test_cursor_from_another_query_or_resource_is_400(client: TestClient) -> None:
    seed(client, "groups", [{"name": f"G{i}"} for i in range(3)])
    seed(client, "sectors", [{"name": f"S{i}"} for i in range(3)])
    cursor = client.get("/v1/groups", params={"limit": 1}, headers=H).json()["cursor"]
    assert client.get("/v1/sectors", params={"cursor": cursor}, headers=H).status_code == 400
    assert client.get("/v1/groups", params={"cursor": cursor, "name": "g"}, headers=H).status_code == 400


@pytest.mark.parametrize("limit", ["0", "-1", "101", "1.5", "abc", "", " 5"])
def test_limit_outside_1_to_100_is_400(client: TestClient, limit: str) -> None:
    response = client.get("/v1/sectors", params={"limit": limit}, headers=H)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("limit", ["1", "100"])
def test_limit_bounds_are_accepted(client: TestClient, limit: str) -> None:
    assert client.get("/v1/sectors", params={"limit": limit}, headers=H).status_code == 200


def test_name_filter_is_case_insensitive_prefix_in_ascending_order(client: TestClient) -> None:
    seed(
        client,
        "employees",
        [{"name": n} for n in ["silvana costa", "Ana da Silva", "SILVA Junior", "Silvério", "Bruno"]],
    )
    names = [e["name"] for e in get_all(client, "/v1/employees", name="silva", limit=1)]
    assert names == ["SILVA Junior", "silvana costa"]


def test_code_filter_on_cost_centers_is_prefix_ascending(client: TestClient) -> None:
    seed(
        client,
        "cost-centers",
        [{"name": n, "code": c} for n, c in [("a", "10.2"), ("b", "10.1"), ("c", "20")]],
    )
    assert [c["code"] for c in get_all(client, "/v1/cost-centers", code="10.")] == ["10.1", "10.2"]
    both = client.get("/v1/cost-centers", params={"code": "1", "name": "a"}, headers=H)
    assert both.status_code == 400


def _org(client: TestClient) -> dict[str, str]:
    ids = {}
    for resource in ("sectors", "cost-centers", "job-roles", "groups"):
        ids[resource] = seed(client, resource, [{"name": f"{resource} one"}, {"name": f"{resource} two"}])[0][
            "id"
        ]
    return ids


def test_one_relationship_filter_per_request(client: TestClient) -> None:
    org = _org(client)
    seed(
        client,
        "employees",
        [
            {"name": "Ana", "sectorId": org["sectors"], "identification": "1"},
            {"name": "Alice", "sectorId": org["sectors"], "costCenterId": org["cost-centers"]},
            {"name": "Bia", "costCenterId": org["cost-centers"]},
        ],
    )
    by_sector = get_all(client, "/v1/employees", sectorId=org["sectors"], limit=1)
    assert [e["name"] for e in by_sector] == ["Alice", "Ana"]
    two = client.get(
        "/v1/employees", params={"sectorId": org["sectors"], "costCenterId": org["cost-centers"]}, headers=H
    )
    assert two.status_code == 400
    assert two.json()["type"] == "urn:smartepi:error:bad_request"
    # One relationship filter combined with a name search is allowed, in name order.
    combined = get_all(client, "/v1/employees", sectorId=org["sectors"], name="a", limit=1)
    assert [e["name"] for e in combined] == ["Alice", "Ana"]
    with_id = get_all(client, "/v1/employees", sectorId=org["sectors"], identification="1")
    assert [e["name"] for e in with_id] == ["Ana"]


def test_identification_filter_is_an_exact_lookup(client: TestClient) -> None:
    seed(
        client,
        "employees",
        [
            {"name": "Ana", "identification": "123", "email": "Ana@x.com"},
            {"name": "Bia", "identification": "1234"},
        ],
    )
    assert [e["name"] for e in get_all(client, "/v1/employees", identification="123")] == ["Ana"]
    assert get_all(client, "/v1/employees", identification="12") == []


def test_unknown_repeated_or_empty_query_parameters_are_400(client: TestClient) -> None:
    assert client.get("/v1/sectors", params={"colour": "red"}, headers=H).status_code == 400
    assert client.get("/v1/sectors?limit=1&limit=2", headers=H).status_code == 400
    assert client.get("/v1/employees", params={"sectorId": ""}, headers=H).status_code == 400
    # Time windows exist only on transaction lists.
    assert (
        client.get("/v1/sectors", params={"createdSince": "2024-01-01T00:00:00Z"}, headers=H).status_code
        == 400
    )


def _transactions(client: TestClient) -> dict[str, Any]:
    org = _org(client)
    emp = seed(client, "employees", [{"name": "Ana", "sectorId": org["sectors"]}, {"name": "Bia"}])
    prd = seed(client, "products", [{"name": "Glove"}, {"name": "Boot"}])
    rows = [
        {"employeeId": emp[0]["id"], "productId": prd[0]["id"], "createdAt": "2024-05-01T10:00:00Z"},
        {"employeeId": emp[1]["id"], "productId": prd[1]["id"], "createdAt": "2024-05-01T11:00:00Z"},
        {"employeeId": emp[0]["id"], "productId": prd[1]["id"], "createdAt": "2024-05-01T12:00:00Z"},
    ]
    return {"emp": emp, "prd": prd, "tx": seed(client, "withdrawals", rows)}


def test_transaction_time_window_since_inclusive_until_exclusive(client: TestClient) -> None:
    t = _transactions(client)
    window = get_all(
        client, "/v1/withdrawals", createdSince="2024-05-01T11:00:00Z", createdUntil="2024-05-01T12:00:00Z"
    )
    assert [w["id"] for w in window] == [t["tx"][1]["id"]]
    since = get_all(client, "/v1/withdrawals", createdSince="2024-05-01T11:00:00+00:00", limit=1)
    assert [w["id"] for w in since] == [t["tx"][2]["id"], t["tx"][1]["id"]]
    assert t["tx"][0]["createdAt"] == "2024-05-01T10:00:00.000000Z"
    bad = client.get("/v1/withdrawals", params={"createdSince": "yesterday"}, headers=H)
    assert bad.status_code == 400


def test_transaction_relationship_filters_and_their_combination_rules(client: TestClient) -> None:
    t = _transactions(client)
    by_employee = get_all(client, "/v1/withdrawals", employeeId=t["emp"][0]["id"])
    assert [w["id"] for w in by_employee] == [t["tx"][2]["id"], t["tx"][0]["id"]]
    by_product = get_all(client, "/v1/withdrawals", productId=t["prd"][1]["id"])
    assert len(by_product) == 2
    two = {"employeeId": t["emp"][0]["id"], "productId": t["prd"][0]["id"]}
    assert client.get("/v1/withdrawals", params=two, headers=H).status_code == 400
    mixed = {"employeeId": t["emp"][0]["id"], "createdSince": "2024-01-01T00:00:00Z"}
    assert client.get("/v1/withdrawals", params=mixed, headers=H).status_code == 400
    assert client.get("/v1/withdrawals", params={"name": "x"}, headers=H).status_code == 400


def test_training_records_are_list_only_with_employee_filter(client: TestClient) -> None:
    emp = seed(client, "employees", [{"name": "Ana"}, {"name": "Bia"}])
    seed(
        client,
        "training-records",
        [{"employeeId": emp[0]["id"], "title": "NR-35"}, {"employeeId": emp[1]["id"], "title": "NR-10"}],
    )
    listed = get_all(client, "/v1/training-records", employeeId=emp[0]["id"])
    assert [r["title"] for r in listed] == ["NR-35"]
    assert set(listed[0]) >= {"id", "employeeId", "title", "completedAt", "expiresAt", "createdAt"}
    assert client.get(f"/v1/training-records/{listed[0]['id']}", headers=H).status_code == 405
