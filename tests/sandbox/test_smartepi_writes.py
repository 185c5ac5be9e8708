"""SmartEPI sandbox: creates, versions, partial updates, deletes, duplicates, references."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sync.sandbox.smartepi import SmartEPISandboxConfig, TenantConfig, create_app

H = {"Authorization": "Bearer sk_t"}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(SmartEPISandboxConfig(tenants=[TenantConfig(api_key="sk_t", id="t")])))


def create(client: TestClient, resource: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/v1/{resource}", json=body, headers=H)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def assert_problem(response: Any, status: int, token: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"].startswith("req_")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:smartepi:error:{token}"
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_create_is_201_with_etag_location_envelope_and_timestamps(client: TestClient) -> None:
    response = client.post("/v1/sectors", json={"name": "Welding", "code": "W"}, headers=H)
    assert response.status_code == 201
    data = response.json()["data"]
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"http://testserver/v1/sectors/{data['id']}"
    assert data["name"] == "Welding" and data["code"] == "W"
    assert data["createdAt"].endswith("Z") and data["updatedAt"] == data["createdAt"]
    assert "_version" not in data and "version" not in data
    got = client.get(f"/v1/sectors/{data['id']}", headers=H)
    assert got.headers["etag"] == '"1"' and got.json() == {"data": data}


def test_worked_example_if_match_update_bumps_version(client: TestClient) -> None:
    sector = create(client, "sectors", {"name": "Welding"})
    response = client.put(
        f"/v1/sectors/{sector['id']}", json={"name": "Welding & Cutting"}, headers={**H, "If-Match": '"1"'}
    )
    assert response.status_code == 200 and response.headers["etag"] == '"2"'
    assert response.json()["data"]["name"] == "Welding & Cutting"
    assert response.json()["data"]["updatedAt"] > sector["updatedAt"]


def test_version_in_body_for_put_and_query_for_delete(client: TestClient) -> None:
    group = create(client, "groups", {"name": "G"})
    put = client.put(f"/v1/groups/{group['id']}", json={"description": "d", "_version": 1}, headers=H)
    assert put.status_code == 200 and put.headers["etag"] == '"2"'
    deleted = client.delete(f"/v1/groups/{group['id']}", params={"_version": 2}, headers=H)
    assert deleted.status_code == 200 and deleted.headers["etag"] == '"3"'
    assert deleted.json()["data"]["id"] == group["id"]


def test_missing_version_is_400_and_stale_is_409_conflict_with_nothing_changed(client: TestClient) -> None:
    group = create(client, "groups", {"name": "G"})
    path = f"/v1/groups/{group['id']}"
    assert_problem(client.put(path, json={"name": "H"}, headers=H), 400, "bad_request")
    assert_problem(client.delete(path, headers=H), 400, "bad_request")
    assert_problem(client.put(path, json={"name": "H"}, headers={**H, "If-Match": '"7"'}), 409, "conflict")
    assert_problem(client.put(path, json={"name": "H", "_version": 0}, headers=H), 409, "conflict")
    assert_problem(client.delete(path, params={"_version": 9}, headers=H), 409, "conflict")
    # If-Match and _version both sent: both must be current.
    both = client.put(path, json={"name": "H", "_version": 2}, headers={**H, "If-Match": '"1"'})
    assert_problem(both, 409, "conflict")
    assert_problem(client.put(path, json={"name": "H"}, headers={**H, "If-Match": "*"}), 400, "bad_request")
    assert_problem(client.put(path, json={"name": "H", "_version": "1"}, headers=H), 400, "bad_request")
    assert client.get(path, headers=H).json()["data"]["name"] == "G"


def test_put_is_partial_and_null_clears_an_optional_field(client: TestClient) -> None:
    sector = create(client, "sectors", {"name": "S"})
    cc = create(client, "cost-centers", {"name": "C"})
    emp = create(
        client,
        "employees",
        {"name": "Ana", "email": "ana@x.com", "sectorId": sector["id"], "costCenterId": cc["id"]},
    )
    path = f"/v1/employees/{emp['id']}"
    updated = client.put(path, json={"identification": "42"}, headers={**H, "If-Match": '"1"'}).json()["data"]
    assert updated["email"] == "ana@x.com" and updated["sectorId"] == sector["id"]
    assert updated["identification"] == "42" and updated["name"] == "Ana"
    cleared = client.put(path, json={"email": None}, headers={**H, "If-Match": '"2"'}).json()["data"]
    assert cleared["email"] is None and cleared["identification"] == "42"
    assert_problem(
        client.put(path, json={"name": None}, headers={**H, "If-Match": '"3"'}), 400, "bad_request"
    )


def test_put_that_changes_nothing_keeps_version(client: TestClient) -> None:
    group = create(client, "groups", {"name": "G"})
    response = client.put(f"/v1/groups/{group['id']}", json={"name": "G"}, headers={**H, "If-Match": '"1"'})
    assert response.status_code == 200 and response.headers["etag"] == '"1"'


def test_soft_delete_hides_record_and_frees_name_and_keys(client: TestClient) -> None:
    role = create(client, "job-roles", {"name": "Welder"})
    emp = create(client, "employees", {"name": "Ana", "identification": "1", "email": "a@x.com"})
    assert client.delete(f"/v1/job-roles/{role['id']}", headers={**H, "If-Match": '"1"'}).status_code == 200
    assert client.delete(f"/v1/employees/{emp['id']}", headers={**H, "If-Match": '"1"'}).status_code == 200
    assert_problem(client.get(f"/v1/job-roles/{role['id']}", headers=H), 404, "not_found")
    assert_problem(
        client.delete(f"/v1/job-roles/{role['id']}", headers={**H, "If-Match": '"2"'}), 404, "not_found"
    )
    assert client.get("/v1/job-roles", headers=H).json()["data"] == []
    assert client.get("/v1/job-roles", params={"name": "w"}, headers=H).json()["data"] == []
    assert client.get("/v1/employees", params={"identification": "1"}, headers=H).json()["data"] == []
    create(client, "job-roles", {"name": "welder"})
    create(client, "employees", {"name": "Ana 2", "identification": "1", "email": "a@x.com"})


def test_duplicate_name_is_case_insensitive_and_trimmed(client: TestClient) -> None:
    create(client, "products", {"name": "Luva Nitrílica"})
    body = assert_problem(
        client.post("/v1/products", json={"name": "  LUVA NITRÍLICA "}, headers=H), 409, "duplicate_name"
    )
    assert "name" in body["detail"]
    other = create(client, "products", {"name": "Bota"})
    renamed = client.put(
        f"/v1/products/{other['id']}", json={"name": "luva nitrílica"}, headers={**H, "If-Match": '"1"'}
    )
    assert_problem(renamed, 409, "duplicate_name")


def test_employee_duplicates_by_identification_or_email_but_not_name(client: TestClient) -> None:
    create(client, "employees", {"name": "Ana", "identification": "123.456", "email": "ana@acme.com"})
    create(client, "employees", {"name": "Ana"})
    create(client, "employees", {"name": "Ana"})  # no unique key: two identical POSTs, two employees
    assert_problem(
        client.post("/v1/employees", json={"name": "B", "identification": " 123.456 "}, headers=H),
        409,
        "duplicate_identification",
    )
    assert_problem(
        client.post("/v1/employees", json={"name": "B", "email": "ANA@acme.com"}, headers=H),
        409,
        "duplicate_email",
    )
    assert len(client.get("/v1/employees", headers=H).json()["data"]) == 3


def test_resource_in_use_blocks_delete_until_dependents_move(client: TestClient) -> None:
    sector = create(client, "sectors", {"name": "S"})
    other = create(client, "sectors", {"name": "T"})
    emp = create(client, "employees", {"name": "Ana", "sectorId": sector["id"]})
    assert_problem(
        client.delete(f"/v1/sectors/{sector['id']}", headers={**H, "If-Match": '"1"'}), 409, "resource_in_use"
    )
    moved = client.put(
        f"/v1/employees/{emp['id']}", json={"sectorId": other["id"]}, headers={**H, "If-Match": '"1"'}
    )
    assert moved.status_code == 200
    assert client.delete(f"/v1/sectors/{sector['id']}", headers={**H, "If-Match": '"1"'}).status_code == 200


@pytest.mark.parametrize("field", ["costCenterId", "costCenter2Id", "jobRoleId", "sectorId", "groupId"])
def test_unknown_reference_is_422_naming_the_field(client: TestClient, field: str) -> None:
    body = assert_problem(
        client.post("/v1/employees", json={"name": "Ana", field: "nope_1"}, headers=H),
        422,
        "invalid_reference",
    )
    assert body["title"] == "Invalid reference"
    assert body["detail"] == f"Unknown or cross-tenant reference: {field}"


def test_reference_to_deleted_record_and_on_update_is_422(client: TestClient) -> None:
    group = create(client, "groups", {"name": "G"})
    emp = create(client, "employees", {"name": "Ana"})
    client.delete(f"/v1/groups/{group['id']}", headers={**H, "If-Match": '"1"'})
    response = client.put(
        f"/v1/employees/{emp['id']}", json={"groupId": group["id"]}, headers={**H, "If-Match": '"1"'}
    )
    assert_problem(response, 422, "invalid_reference")
    assert_problem(
        client.post("/v1/employees", json={"name": "B", "accessGroupIds": ["ag_x"]}, headers=H),
        422,
        "invalid_reference",
    )


def test_product_nested_sizes_and_certificates(client: TestClient) -> None:
    product = create(
        client,
        "products",
        {"name": "Boot", "sizes": [{"name": "40"}, {"name": "41"}], "certificates": [{"number": "CA-1"}]},
    )
    sizes = product["sizes"]
    assert [s["name"] for s in sizes] == ["40", "41"] and all(s["id"].startswith("sz_") for s in sizes)
    assert product["certificates"][0]["number"] == "CA-1" and product["certificates"][0]["expiresAt"] is None
    response = client.put(
        f"/v1/products/{product['id']}",
        json={"sizes": [{"id": sizes[1]["id"], "name": "41W"}, {"name": "42"}]},
        headers={**H, "If-Match": '"1"'},
    )
    data = response.json()["data"]
    assert [s["name"] for s in data["sizes"]] == ["40", "41W", "42"]
    assert data["sizes"][1]["id"] == sizes[1]["id"]
    assert data["certificates"] == product["certificates"]  # omitted: left intact
    unknown = client.put(
        f"/v1/products/{product['id']}",
        json={"sizes": [{"id": "sz_404", "name": "x"}]},
        headers={**H, "If-Match": '"2"'},
    )
    assert_problem(unknown, 422, "invalid_reference")["detail"].endswith("sizes[0].id")
    bad = client.post(
        "/v1/products", json={"name": "X", "certificates": [{"number": "1", "expiresAt": "soon"}]}, headers=H
    )
    assert_problem(bad, 400, "bad_request")


def test_product_delete_cascades_to_nested_entries(client: TestClient) -> None:
    product = create(client, "products", {"name": "Boot", "sizes": [{"name": "40"}]})
    deleted = client.delete(f"/v1/products/{product['id']}", headers={**H, "If-Match": '"1"'})
    assert deleted.status_code == 200 and deleted.json()["data"]["sizes"] == []


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"{not json", "Malformed JSON"),
        (b"", "required"),
        (b"[1, 2]", "JSON object"),
        (b'{"name": NaN}', "Malformed JSON"),
        (b'{"name": 5}', "name"),
        (b'{"name": "   "}', "name"),
        (b'{"code": "x"}', "name: required"),
        (b'{"name": "x", "colour": "red"}', "colour: unknown field"),
        (b'{"name": "x", "id": "sec_1"}', "id: read-only field"),
        (b'{"name": "x", "createdAt": "2024-01-01"}', "createdAt: read-only field"),
        (b"\xff\xfe", "Malformed JSON"),
    ],
)
def test_malformed_bodies_are_400_problems(client: TestClient, content: bytes, detail: str) -> None:
    response = client.post("/v1/sectors", content=content, headers={**H, "Content-Type": "application/json"})
    assert detail in assert_problem(response, 400, "bad_request")["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("active", "yes"),
        ("admissionDate", "2024-13-01"),
        ("admissionDate", "2024-1-1"),
        ("accessGroupIds", "ag_1"),
    ],
)
def test_wrong_types_on_employees_are_400(client: TestClient, field: str, value: Any) -> None:
    response = client.post("/v1/employees", json={"name": "Ana", field: value}, headers=H)
    assert field in assert_problem(response, 400, "bad_request")["detail"]


def test_employee_defaults_and_types(client: TestClient) -> None:
    emp = create(client, "employees", {"name": "Ana", "admissionDate": "2024-02-29"})
    assert emp["active"] is True and emp["accessGroupIds"] == [] and emp["admissionDate"] == "2024-02-29"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize(
    "resource", ["withdrawals", "returns", "exchanges", "access-groups", "training-records"]
)
def test_writes_to_read_only_resources_are_405(client: TestClient, method: str, resource: str) -> None:
    path = f"/v1/{resource}" if method == "post" else f"/v1/{resource}/x-1"
    response = client.request(method.upper(), path, json={}, headers={**H, "If-Match": '"1"'})
    assert_problem(response, 405, "method_not_allowed")


def test_get_by_id_on_transactions_is_405_but_access_groups_have_it(client: TestClient) -> None:
    for resource in ("withdrawals", "returns", "exchanges"):
        assert_problem(client.get(f"/v1/{resource}/w-1", headers=H), 405, "method_not_allowed")
    group = client.post("/_admin/tenants/t/seed/access-groups", json=[{"name": "Gate A"}]).json()["data"][0]
    got = client.get(f"/v1/access-groups/{group['id']}", headers=H)
    assert got.status_code == 200 and got.headers["etag"] == '"1"'


def test_patch_is_not_an_update_verb(client: TestClient) -> None:
    group = create(client, "groups", {"name": "G"})
    assert_problem(
        client.patch(f"/v1/groups/{group['id']}", json={"name": "H"}, headers=H), 405, "method_not_allowed"
    )


@pytest.mark.parametrize("value", ["1", 'W/"1"', ' "1"', '"1" ', "'1'"])
def test_if_match_must_be_the_quoted_etag(client: TestClient, value: str) -> None:
    """Audit finding 17: the contract says ``If-Match: "<etag>"``; the sandbox is as strict."""
    sector = client.post("/v1/sectors", json={"name": "Quoted"}, headers=H).json()["data"]
    path = f"/v1/sectors/{sector['id']}"
    refused = client.put(path, json={"name": "Q2"}, headers={**H, "If-Match": value})
    assert refused.status_code == 400, refused.text
    assert client.put(path, json={"name": "Q2"}, headers={**H, "If-Match": '"1"'}).status_code == 200
