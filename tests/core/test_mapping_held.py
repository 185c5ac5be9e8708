"""Rows the platform rejected at an earlier apply quarantine their dependents at mapping
(issue 19 item 3): ``reference_quarantined``, as for a row quarantined at validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sync.core.mapping import load_mappings

REPO = Path(__file__).resolve().parents[2]
EPI = load_mappings([REPO / "mappings/smartepi.yaml"])

ROWS: dict[str, list[dict[str, Any]]] = {
    "setores": [{"codigo": "S1", "nome": "Setor"}],
    "centros_custo": [
        {"codigo": "1001", "nome": "Linha 1", "ativo": 1},
        {"codigo": "1002", "nome": "Linha 2", "ativo": 1},
    ],
    "cargos": [],
    "grupos": [],
    "funcionarios": [
        {"matricula": "E1", "nome": "Ana", "cpf": "111", "centro_custo": "1001", "situacao": "A"},
        {"matricula": "E2", "nome": "Bia", "cpf": "222", "centro_custo_2": "1001", "situacao": "A"},
        {"matricula": "E3", "nome": "Caio", "cpf": "333", "centro_custo": "1002", "situacao": "A"},
    ],
    "epi_produtos": [],
    "epi_tamanhos": [],
    "epi_certificados": [],
}


def _hash(code: str) -> str:
    results = EPI.map_all("smartepi", lambda e: ROWS[e])
    return next(d.erp_hash for d in results["cost_centers"].desired if d.erp_key == code)


def test_dependents_of_a_row_held_since_apply_are_quarantined() -> None:
    held = {"cost_centers": {"1001": _hash("1001")}}
    results = EPI.map_all("smartepi", lambda e: ROWS[e], held=held)
    employees = results["employees"]
    assert [d.erp_key for d in employees.desired] == ["E3"]
    rules = {q.erp_key: (q.field, q.rule) for q in employees.quarantine}
    assert rules == {
        "E1": ("costCenterId", "reference_quarantined"),
        "E2": ("costCenter2Id", "reference_quarantined"),
    }


def test_a_changed_row_is_no_longer_held() -> None:
    held = {"cost_centers": {"1001": "0" * 32}}  # the ERP row changed since the platform refused it
    results = EPI.map_all("smartepi", lambda e: ROWS[e], held=held)
    assert [d.erp_key for d in results["employees"].desired] == ["E1", "E2", "E3"]


def test_a_held_parent_category_holds_its_subtree() -> None:
    kasa = load_mappings([REPO / "mappings/smartkasa.yaml"])
    rows = {
        "kasa_categories": [
            {"code": "K1", "title": "Напої", "parent_code": None},
            {"code": "K1-1", "title": "Соки", "parent_code": "K1"},
            {"code": "K1-1-1", "title": "Яблучні", "parent_code": "K1-1"},
            {"code": "K2", "title": "Хліб", "parent_code": None},
        ],
        "kasa_products": [],
        "kasa_stock": [],
    }
    first = kasa.map_all("smartkasa", lambda e: rows[e])["categories"]
    k1 = next(d.erp_hash for d in first.desired if d.erp_key == "K1")
    result = kasa.map_all("smartkasa", lambda e: rows[e], held={"categories": {"K1": k1}})["categories"]
    assert sorted(d.erp_key for d in result.desired) == ["K1", "K2"]  # K1 itself: the engine holds it
    assert {q.erp_key: q.rule for q in result.quarantine} == {
        "K1-1": "reference_quarantined",
        "K1-1-1": "reference_quarantined",
    }
