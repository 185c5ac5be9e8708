"""map_rows: ERP rows → Desired records (fields, references, children, key derivation, write-back)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sync.core.mapping import MapContext, load_mapping_texts, load_mappings, self_ref_depths
from sync.core.mapping.transforms import Invalid
from sync.core.records import Desired

REPO = Path(__file__).resolve().parents[2]
EPI = load_mappings([REPO / "mappings/smartepi.yaml"])
KASA = load_mappings([REPO / "mappings/smartkasa.yaml"])


def employee(**over: Any) -> dict[str, Any]:
    row = {
        "matricula": "0000007",
        "nome": "  Maria  da Silva ",
        "cpf": "123.456.789-09",
        "email": "Maria.Silva@Acme.com.br",
        "setor": "S01",
        "centro_custo": "1001",
        "centro_custo_2": None,
        "cargo": "C01",
        "grupo": "G1",
        "data_admissao": "02/03/2019",
        "situacao": "A",
        "updated_at": "2024-01-01 08:00:00",
    }
    row.update(over)
    return row


def test_employee_row_maps_to_normalized_fields() -> None:
    result = EPI.map_rows("smartepi", "employees", [employee()])
    assert result.quarantine == []
    (d,) = result.desired
    assert isinstance(d, Desired)
    assert (d.platform, d.entity, d.erp_key) == ("smartepi", "employees", "0000007")
    assert d.fields == {
        "name": "Maria  da Silva",
        "identification": "123.456.789-09",
        "email": "maria.silva@acme.com.br",
        "sectorId": "S01",
        "costCenterId": "1001",
        "jobRoleId": "C01",
        "groupId": "G1",
        "admissionDate": "2019-03-02",
        "active": True,
    }
    assert d.children == {}


def test_erp_hash_follows_mapped_columns_only() -> None:
    def h(row: dict[str, Any]) -> str:
        return EPI.map_rows("smartepi", "employees", [row]).desired[0].erp_hash

    base = h(employee())
    assert len(base) == 32
    assert h(employee()) == base
    assert h(employee(updated_at="2025-05-05 00:00:00", extra_column="x")) == base
    assert h(employee(nome="Maria Silva")) != base
    assert h(employee(situacao="D")) != base


def test_integer_keys_are_text_and_filtered_rows_are_counted() -> None:
    cc = EPI.map_rows(
        "smartepi",
        "cost_centers",
        [
            {"codigo": 1001, "nome": "Produção", "ativo": 1},
            {"codigo": 1002, "nome": "Antigo", "ativo": 0},
            {"codigo": "1003", "nome": "Logística", "ativo": "1"},
        ],
    )
    assert [d.erp_key for d in cc.desired] == ["1001", "1003"]
    assert cc.desired[0].fields == {"name": "1001 Produção", "code": "1001"}
    assert (cc.rows, cc.filtered) == (3, 1)


def test_employee_without_identification_or_email_gets_a_derived_key() -> None:
    result = EPI.map_rows("smartepi", "employees", [employee(cpf=None, email="  ")])
    assert result.desired[0].fields["identification"] == "ERP-0000007"
    assert "email" not in result.desired[0].fields


def test_derivation_off_quarantines_unkeyed_employees() -> None:
    text = (
        (REPO / "mappings/smartepi.yaml").read_text().replace('template: "ERP-{erp_key}"', "template: null")
    )
    mappings = load_mapping_texts({"epi.yaml": text})
    result = mappings.map_rows(
        "smartepi", "employees", [employee(cpf=None, email=None), employee(matricula="8")]
    )
    assert [d.erp_key for d in result.desired] == ["8"]
    (q,) = result.quarantine
    assert (q.erp_key, q.rule, q.field) == ("0000007", "unkeyed_employee", "identification")


def test_employees_need_a_key_even_without_derive_key_section() -> None:
    text = """
version: 1
platform: smartepi
entities:
  employees: {source: f, key: m, fields: {name: n, email: e}}
"""
    result = load_mapping_texts({"e.yaml": text}).map_rows("smartepi", "employees", [{"m": 1, "n": "Ana"}])
    assert result.quarantine[0].rule == "unkeyed_employee"


def test_references_checked_against_context() -> None:
    ctx = MapContext(
        valid_keys={"sectors": {"S01"}, "cost_centers": {"1001"}}, quarantined={"job_roles": {"C09"}}
    )
    result = EPI.map_rows(
        "smartepi",
        "employees",
        [employee(), employee(matricula="2", setor="S99"), employee(matricula="3", cargo="C09")],
        ctx,
    )
    assert [d.erp_key for d in result.desired] == ["0000007"]  # job_roles/groups not in context: not checked
    rules = {q.erp_key: (q.rule, q.field, q.message) for q in result.quarantine}
    assert rules["2"] == (
        "dangling_reference",
        "sectorId",
        "references sectors 'S99', which is not in the ERP data",
    )
    assert rules["3"] == (
        "reference_quarantined",
        "jobRoleId",
        "references job_roles 'C09', which is quarantined",
    )


def test_map_all_records_each_level_for_the_next() -> None:
    tables = {
        "setores": [{"codigo": "S01", "nome": "Soldagem"}, {"codigo": "S02", "nome": "soldagem "}],
        "centros_custo": [{"codigo": "1001", "nome": "Produção", "ativo": 1}],
        "cargos": [{"codigo": "C01", "nome": "Soldador"}],
        "grupos": [{"codigo": "G1", "nome": "Turno A"}],
        "epi_produtos": [],
        "epi_tamanhos": [],
        "epi_certificados": [],
        "funcionarios": [employee(setor="S77"), employee(matricula="2", setor="S02", cpf="1", email=None)],
    }
    results = EPI.map_all("smartepi", lambda source: iter(tables[source]))
    assert {q.rule for q in results["sectors"].quarantine} == {"natural_key_collision"}
    assert results["employees"].desired == []
    assert [q.rule for q in results["employees"].quarantine] == [
        "dangling_reference",
        "reference_quarantined",
    ]


def test_products_with_children_sorted_and_hashed() -> None:
    em = EPI.entity("smartepi", "products")
    sizes = [{"produto": "EPI-1", "tamanho": t} for t in ("M", "G", "P")]
    certs = [{"produto": "EPI-1", "numero_ca": "12345", "validade": "2027-01-31"}]
    ctx = MapContext(
        child_rows={
            "sizes": em.group_child_rows("sizes", sizes),
            "certificates": em.group_child_rows("certificates", certs),
        }
    )
    row = {"codigo": "EPI-1", "nome": "Luva", "unidade": "par", "ativo": 1}
    (d,) = em.map_rows([row], ctx).desired
    assert d.fields == {"name": "Luva", "code": "EPI-1", "unit": "PAR", "active": True}
    assert d.children == {
        "sizes": [{"name": "G"}, {"name": "M"}, {"name": "P"}],
        "certificates": [{"number": "12345", "expiresAt": "2027-01-31"}],
    }
    ctx.child_rows["sizes"] = em.group_child_rows("sizes", sizes[:2])
    assert em.map_rows([row], ctx).desired[0].erp_hash != d.erp_hash


def test_kasa_product_with_stock_cards_per_shop() -> None:
    em = KASA.entity("smartkasa", "products")
    stock = [
        {"sku": "SKU-1", "shop_code": "LVIV-01", "qty": "3.5", "track": 1},
        {"sku": "SKU-1", "shop_code": "KYIV-01", "qty": "12", "track": 0},
    ]
    ctx = MapContext(child_rows={"cards": em.group_child_rows("cards", stock)})
    row = {
        "sku": "SKU-1", "barcode": "4820000000011", "title": "Молоко 2,5%", "short_title": "Молоко",
        "category_code": "K01-01", "price": "38.9", "cost_price": "28", "tax_group": 1, "unit": "шт",
        "weighted": 0,
    }  # fmt: skip
    (d,) = em.map_rows([row], ctx).desired
    assert d.fields["price"] == Decimal("38.9")
    assert d.fields["unit_type_id"] == Decimal(2009)
    assert d.fields["sold_by_weight"] is False
    assert d.children["cards"] == [
        {"shop_id": Decimal(1), "count": Decimal(12), "counting_enabled": False},
        {"shop_id": Decimal(2), "count": Decimal("3.5"), "counting_enabled": True},
    ]


def test_embedded_children_from_a_list_column() -> None:
    text = """
version: 1
platform: smartepi
entities:
  products:
    source: produtos
    key: code
    fields: {name: name}
    children:
      sizes: {key: name, fields: {name: size}}
"""
    em = load_mapping_texts({"p.yaml": text}).entity("smartepi", "products")
    (d,) = em.map_rows([{"code": "P1", "name": "Bota", "sizes": [{"size": "42"}, {"size": "40"}]}]).desired
    assert d.children == {"sizes": [{"name": "40"}, {"name": "42"}]}


def test_categories_self_reference_depths() -> None:
    rows = [
        {"code": "K01-01", "title": "Молоко", "parent_code": "K01"},
        {"code": "K01", "title": "Молочні продукти", "parent_code": None},
        {"code": "K01-01-01", "title": "Козяче", "parent_code": "K01-01"},
    ]
    result = KASA.map_rows("smartkasa", "categories", rows)
    assert result.quarantine == []
    assert self_ref_depths(result.desired, "parent_id") == {"K01": 0, "K01-01": 1, "K01-01-01": 2}


def test_to_erp_reverses_pull_fields_only() -> None:
    em = EPI.entity("smartepi", "employees")
    assert em.to_erp({"email": "novo@acme.com.br", "name": "Ignored", "sectorId": "S02"}) == {
        "email": "novo@acme.com.br"
    }
    text = """
version: 1
platform: smartepi
lookups: {status: {A: true, D: false}}
entities:
  employees:
    source: f
    key: m
    writable: true
    fields:
      name: n
      email: e
      admissionDate: {from: adm, type: date, date_format: "%d/%m/%Y", direction: pull}
      active: {from: sit, lookup: status, type: boolean, direction: both}
"""
    em2 = load_mapping_texts({"e.yaml": text}).entity("smartepi", "employees")
    assert em2.to_erp({"admissionDate": "2020-12-31T00:00:00.000+00:00", "active": False}) == {
        "adm": "31/12/2020",
        "sit": "D",
    }
    with pytest.raises(Invalid) as exc:
        em2.to_erp({"active": "perhaps"})
    assert exc.value.field == "active"
    # and forward again: the round trip is stable
    back = em2.map_rows([{"m": "1", "n": "Ana", "e": "a@b.co", "adm": "31/12/2020", "sit": "D"}]).desired[0]
    assert (back.fields["admissionDate"], back.fields["active"]) == ("2020-12-31", False)
