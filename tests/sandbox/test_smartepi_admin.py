"""SmartEPI sandbox: admin endpoints (tenants, seed, console edits, dump, generators, reset)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sync.sandbox.smartepi import create_app

H = {"Authorization": "Bearer sk_t"}


@pytest.fixture
def client() -> TestClient:
    client = TestClient(create_app())
    assert client.post("/_admin/tenants", json={"api_key": "sk_t", "id": "t"}).status_code == 201
    return client


def seed(client: TestClient, resource: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(f"/_admin/tenants/t/seed/{resource}", json=records)
    assert response.status_code == 201, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_create_tenant_rejects_reused_key_and_generates_a_webhook_secret_once(client: TestClient) -> None:
    assert client.post("/_admin/tenants", json={"api_key": "sk_t"}).status_code == 409
    made = client.post(
        "/_admin/tenants", json={"api_key": "sk_u", "webhook_url": "http://127.0.0.1:9/h"}
    ).json()
    assert made["webhook_secret"].startswith("whsec_") and made["has_webhook_secret"]
    listed = client.get("/_admin/tenants").json()
    assert [t["id"] for t in listed] == ["t", made["id"]]
    assert "webhook_secret" not in listed[1]


def test_seeded_records_keep_given_ids_and_are_validated(client: TestClient) -> None:
    [sector] = seed(client, "sectors", [{"id": "sec_123", "name": "Welding"}])
    assert sector["id"] == "sec_123"
    got = client.get("/v1/sectors/sec_123", headers=H)
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    dup = client.post("/_admin/tenants/t/seed/sectors", json=[{"name": "welding"}])
    assert dup.status_code == 409 and dup.json()["detail"].startswith("record 0:")
    assert client.post("/_admin/tenants/t/seed/unknown", json=[]).status_code == 404
    assert client.post("/_admin/tenants/nope/seed/sectors", json=[]).status_code == 404


def test_console_edit_bumps_version_and_updated_at(client: TestClient) -> None:
    [group] = seed(client, "groups", [{"name": "G"}])
    edited = client.put(f"/_admin/tenants/t/records/groups/{group['id']}", json={"description": "by hand"})
    assert edited.status_code == 200 and edited.json()["_version"] == 2
    got = client.get(f"/v1/groups/{group['id']}", headers=H)
    assert got.headers["etag"] == '"2"' and got.json()["data"]["description"] == "by hand"
    assert got.json()["data"]["updatedAt"] > group["updatedAt"]
    # A client holding the old ETag now conflicts.
    stale = client.put(f"/v1/groups/{group['id']}", json={"name": "X"}, headers={**H, "If-Match": '"1"'})
    assert stale.status_code == 409
    deleted = client.delete(f"/_admin/tenants/t/records/groups/{group['id']}")
    assert deleted.status_code == 200
    assert client.get(f"/v1/groups/{group['id']}", headers=H).status_code == 404


def test_dump_shows_everything_including_deleted_with_versions(client: TestClient) -> None:
    [group] = seed(client, "groups", [{"name": "G"}])
    client.delete(f"/v1/groups/{group['id']}", headers={**H, "If-Match": '"1"'})
    state = client.get("/_admin/tenants/t/state").json()
    assert set(state) >= {"employees", "products", "withdrawals", "training-records"}
    assert state["groups"] == [{**state["groups"][0], "_version": 2, "_deleted": True}]


def _people_and_products(client: TestClient) -> None:
    [cc] = seed(client, "cost-centers", [{"name": "Ops"}])
    [sector] = seed(client, "sectors", [{"name": "Plant"}])
    seed(
        client,
        "employees",
        [{"name": f"E{i}", "costCenterId": cc["id"], "sectorId": sector["id"]} for i in range(3)],
    )
    seed(client, "products", [{"name": "Boot", "sizes": [{"name": "40"}]}, {"name": "Glove"}])


@pytest.mark.parametrize("kind", ["withdrawals", "returns", "exchanges", "training-records"])
def test_generators_create_listable_seeded_records(client: TestClient, kind: str) -> None:
    _people_and_products(client)
    made = client.post("/_admin/tenants/t/generate", json={"kind": kind, "count": 5, "seed": 1})
    assert made.status_code == 201 and len(made.json()["ids"]) == 5
    assert made.json()["events"] == 0  # no webhook endpoint configured
    listed = client.get(f"/v1/{kind}", headers=H).json()["data"]
    assert [r["id"] for r in listed] == list(reversed(made.json()["ids"]))
    employees = {e["id"]: e for e in client.get("/v1/employees", headers=H).json()["data"]}
    for record in listed:
        assert record["employeeId"] in employees
        if kind != "training-records":
            assert record["costCenterId"] == employees[record["employeeId"]]["costCenterId"]
            assert 1 <= record["quantity"] <= 3


def test_generators_are_reproducible_for_a_seed(client: TestClient) -> None:
    _people_and_products(client)

    def run(seed_value: int) -> list[tuple[Any, ...]]:
        ids = client.post(
            "/_admin/tenants/t/generate", json={"kind": "withdrawals", "count": 8, "seed": seed_value}
        ).json()["ids"]
        rows = {
            r["id"]: r for r in client.get("/v1/withdrawals", params={"limit": 100}, headers=H).json()["data"]
        }
        return [(rows[i]["employeeId"], rows[i]["productId"], rows[i]["quantity"]) for i in ids]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_generator_backdates_with_start_and_spacing(client: TestClient) -> None:
    _people_and_products(client)
    body = {"kind": "returns", "count": 3, "start": "2024-03-01T00:00:00Z", "spacing_s": 60}
    client.post("/_admin/tenants/t/generate", json=body)
    stamps = [r["createdAt"] for r in client.get("/v1/returns", headers=H).json()["data"]]
    assert stamps == [
        "2024-03-01T00:02:00.000000Z",
        "2024-03-01T00:01:00.000000Z",
        "2024-03-01T00:00:00.000000Z",
    ]


def test_generator_needs_employees_and_a_known_kind(client: TestClient) -> None:
    assert (
        client.post("/_admin/tenants/t/generate", json={"kind": "withdrawals", "count": 1}).status_code == 409
    )
    assert client.post("/_admin/tenants/t/generate", json={"kind": "sales", "count": 1}).status_code == 400


def test_reset_drops_tenants_and_stats(client: TestClient) -> None:
    client.get("/v1/sectors", headers=H)
    assert client.get("/_admin/stats").json()["total"] == 1
    assert client.post("/_admin/reset").status_code == 200
    assert client.get("/_admin/tenants").json() == []
    assert client.get("/v1/sectors", headers=H).status_code == 403
    assert client.get("/_admin/stats").json()["total"] == 1  # only the 403 after the reset


def test_admin_faults_endpoint_changes_behaviour(client: TestClient) -> None:
    assert client.put("/_admin/faults", json={"p_5xx": 1.0}).status_code == 200
    assert client.post("/v1/sectors", json={"name": "S"}, headers=H).status_code == 500
    assert client.get("/v1/sectors", headers=H).status_code == 200


def test_strictness_knobs_are_set_at_run_time_and_validated(client: TestClient) -> None:
    assert client.get("/_admin/strictness").json() == {
        "training_records": "serve",
        "duplicate_token": None,
        "window_fraction_digits": 6,
        "identification_search": "folded",
        "gateway_style": "B",
        "paging": "exact",
        "retry_after_format": "seconds",
        "access_group_by_id": True,
        "null_on_update": "clears",
    }
    assert client.get("/v1/training-records", headers=H).status_code == 200
    got = client.patch("/_admin/strictness", json={"training_records": "403", "duplicate_token": "conflict"})
    assert got.status_code == 200 and got.json()["training_records"] == "403"
    unserved = client.get("/v1/training-records", headers=H)
    assert unserved.status_code == 403 and unserved.json() == {"message": "Missing Authentication Token"}
    assert "x-request-id" not in unserved.headers
    seed(client, "sectors", [{"name": "Welding"}])
    dup = client.post("/v1/sectors", json={"name": "welding"}, headers=H)
    assert dup.status_code == 409 and dup.json()["type"] == "urn:smartepi:error:conflict"
    for bad in ({"training_records": "500"}, {"window_fraction_digits": 7}, {"api_key": "x"}):
        assert client.patch("/_admin/strictness", json=bad).status_code == 400
    assert client.get("/_admin/strictness").json()["training_records"] == "403"


def test_access_groups_can_be_made_list_only(client: TestClient) -> None:
    [group] = seed(client, "access-groups", [{"name": "All doors"}])
    assert client.get(f"/v1/access-groups/{group['id']}", headers=H).status_code == 200
    assert client.patch("/_admin/strictness", json={"access_group_by_id": False}).status_code == 200
    refused = client.get(f"/v1/access-groups/{group['id']}", headers=H)
    assert refused.status_code == 405 and refused.json()["type"] == "urn:smartepi:error:method_not_allowed"
    assert client.get("/v1/access-groups", headers=H).json()["data"][0]["id"] == group["id"]
