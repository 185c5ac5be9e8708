"""Events for unknown entities are refused (#16.7).

An event names an ERP entity (a mapping's ``source:``). One that names something no mapping
reads (often the platform entity, ``employees`` instead of ``funcionarios``) used to be
accepted and sync nothing: ``POST /erp/events`` now answers 400 and ``erpsync notify``
exits 1, both listing the ERP entities the tenant's mappings read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sync.cli import app as cli_app
from sync.engine.entities import entity_names
from sync.engine.throttle import Admission
from sync.playground import shipped_mappings
from sync.settings import Settings
from sync.state.store import StateStore
from sync.web import create_app

TOKEN = "acme-event-token-0123456789"
EPI_SOURCES = ["setores", "centros_custo", "cargos", "grupos", "funcionarios"]


def _config(tmp_path: Path, redis_url: str) -> dict[str, Any]:
    tenant = {
        "erp": {"kind": "sql", "url": f"sqlite:///{tmp_path}/erp.db"},
        "mappings": [str(p) for p in shipped_mappings()],
        "smartepi": {"base_url": "http://127.0.0.1:9/v1", "api_key": "acme-api-key-secret"},
        "smartkasa": {
            "base_url": "http://127.0.0.1:9",
            "api_key": "acme-kasa-key",
            "phone": "380971234567",
            "password": "acme-kasa-password",
        },
        "event_token": TOKEN,
    }
    return {
        "state_url": f"sqlite:///{tmp_path}/state.db",
        "redis_url": redis_url,
        "tenants": {"acme": tenant},
    }


class Submitted:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []

    def __call__(self, tenant: str, entity: str, keys: Sequence[str]) -> Admission:
        self.calls.append((tenant, entity, list(keys)))
        return Admission(send={"task-1": (list(keys), 0.0)}, task_ids={k: "task-1" for k in keys})


@pytest.fixture
def http(tmp_path: Path, redis_url: str) -> tuple[TestClient, Submitted]:
    settings = Settings(**_config(tmp_path, redis_url))
    submit = Submitted()
    return TestClient(create_app(settings, submit=submit, store=StateStore(settings.state_url))), submit


def _post(client: TestClient, entity: str, keys: list[str]) -> Any:
    body = {"tenant": "acme", "entity": entity, "keys": keys}
    return client.post("/erp/events", json=body, headers={"Authorization": f"Bearer {TOKEN}"})


def test_erp_events_refuses_an_entity_no_mapping_reads(http: tuple[TestClient, Submitted]) -> None:
    client, submitted = http
    r = _post(client, "employees", ["0000001"])  # the platform entity, not the ERP table
    assert r.status_code == 400
    body = r.json()
    assert {*EPI_SOURCES, "kasa_products", "kasa_stock"} <= set(body["known_entities"])
    assert "employees" not in body["known_entities"] and "products" not in body["known_entities"]
    assert "unknown ERP entity 'employees'" in body["problems"][0]
    assert "funcionarios" in body["problems"][0]
    r = _post(client, "funcionario", ["0000001"])
    assert "did you mean 'funcionarios'?" in r.json()["problems"][0]
    assert submitted.calls == []  # nothing was queued for them

    assert _post(client, "funcionarios", ["0000001"]).status_code == 202
    assert _post(client, "kasa_stock", ["SKU-0000001"]).status_code == 202  # a child source: parent keys
    assert [c[1] for c in submitted.calls] == ["funcionarios", "kasa_stock"]


def test_notify_refuses_an_unknown_entity_and_lists_the_known_ones(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, redis_url)), encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["notify", "employees", "0000001", "--config", str(path)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "unknown ERP entity 'employees'" in said
    listed = said.split("the mappings read: ", 1)[1]
    assert all(name in listed for name in [*EPI_SOURCES, "kasa_stock"])
    assert "Traceback" not in result.output


def test_notify_help_example_names_an_entity_and_keys_the_shipped_mappings_read(
    tmp_path: Path, redis_url: str
) -> None:
    result = CliRunner().invoke(cli_app, ["notify", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    found = re.search(r"erpsync notify (\S+) ((?:\S+ )+)--config", result.output)
    assert found is not None, result.output
    entity, keys = found.group(1), found.group(2).split()
    settings = Settings(**_config(tmp_path, redis_url))
    assert entity in entity_names(settings.tenants["acme"])
    assert entity == "funcionarios" and all(re.fullmatch(r"[0-9]{7}", k) for k in keys)  # matricula
