"""Validation inside map_rows: each bad row is quarantined with key, field, rule and value; the rest go on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.core.mapping import MapContext, load_mapping_texts, load_mappings
from sync.core.records import QuarantineEntry

REPO = Path(__file__).resolve().parents[2]
EPI = load_mappings([REPO / "mappings/smartepi.yaml"])
KASA = load_mappings([REPO / "mappings/smartkasa.yaml"])


def emp(key: str, **over: Any) -> dict[str, Any]:
    row = {
        "matricula": key,
        "nome": f"Pessoa {key}",
        "cpf": f"000.000.000-{key}",
        "email": f"p{key}@acme.com.br",
    }
    row.update(over)
    return row


def only(entries: list[QuarantineEntry], key: str) -> QuarantineEntry:
    found = [q for q in entries if q.erp_key == key]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("over", "field", "rule", "value"),
    [
        ({"nome": None}, "name", "required", None),
        ({"nome": "x" * 151}, "name", "max_length", "x" * 151),
        ({"email": "maria.acme.com.br"}, "email", "format", "ma*** (17 chars)"),  # personal: in part
        ({"nome": "Ana\x00Paula"}, "name", "control_chars", "Ana\\x00Paula"),
        ({"data_admissao": "2019-31-12"}, "admissionDate", "type", "2019-31-12"),
        ({"situacao": "X"}, "active", "unknown_value", "X"),
        ({"cpf": "123.456.789-0912345678"}, "identification", "max_length", "***"),  # sensitive: redacted
    ],
)
def test_field_rules_quarantine_one_row(
    over: dict[str, Any], field: str, rule: str, value: str | None
) -> None:
    result = EPI.map_rows("smartepi", "employees", [emp("01"), emp("02", **over), emp("03")])
    assert [d.erp_key for d in result.desired] == ["01", "03"]
    q = only(result.quarantine, "02")
    assert (q.platform, q.entity, q.field, q.rule, q.value, q.stage) == (
        "smartepi", "employees", field, rule, value, "validate",
    )  # fmt: skip
    assert q.erp_hash and q.reason().startswith(f"employees '02' field '{field}': {rule}: ")


def test_all_problems_of_a_row_are_counted_in_one_entry() -> None:
    result = EPI.map_rows("smartepi", "employees", [emp("01", nome=None, email="bad", situacao="?")])
    (q,) = result.quarantine
    assert q.rule == "required" and q.column == "nome"
    assert q.message == (
        "a value is required; also email (ERP column email): format: not a valid e-mail address;"
        " active (ERP column situacao): unknown_value: value not in the lookup table"
    )


def test_sensitive_values_never_appear_in_entries() -> None:
    secret = "999.888.777-66\x07"
    result = EPI.map_rows("smartepi", "employees", [emp("01", cpf=secret)])
    (q,) = result.quarantine
    assert q.rule == "control_chars" and q.value == "***"
    assert "999" not in repr(q) and "999" not in q.reason()


def test_negative_price_and_bad_barcode() -> None:
    rows = [
        {"sku": "A", "barcode": "4820000000011", "title": "Хліб", "price": "-1.00"},
        {"sku": "B", "barcode": "48200-0000", "title": "Сир", "price": "10"},
        {"sku": "C", "barcode": "4820000000028", "title": "Сік", "price": "abc"},
        {"sku": "D", "barcode": "4820000000035", "title": "Вода", "price": "0"},
    ]
    result = KASA.map_rows("smartkasa", "products", rows)
    assert [d.erp_key for d in result.desired] == ["D"]
    assert {q.erp_key: (q.field, q.rule) for q in result.quarantine} == {
        "A": ("price", "min"),
        "B": ("number", "pattern"),
        "C": ("price", "type"),
    }


def test_duplicate_erp_keys_quarantine_every_copy() -> None:
    result = EPI.map_rows(
        "smartepi", "employees", [emp("01"), emp("02"), emp(" 01 ", nome="Outra"), emp("03")]
    )
    assert [d.erp_key for d in result.desired] == ["02", "03"]
    q = only(result.quarantine, "01")
    assert (q.rule, q.field, q.message) == ("duplicate_erp_key", "matricula", "2 ERP rows share this key")


def test_duplicate_key_wins_over_an_earlier_field_problem() -> None:
    result = EPI.map_rows("smartepi", "employees", [emp("01", email="bad"), emp("01")])
    assert result.desired == []
    assert [q.rule for q in result.quarantine] == ["duplicate_erp_key"]


def test_missing_erp_key() -> None:
    result = EPI.map_rows("smartepi", "employees", [emp(""), emp("02")])
    assert [d.erp_key for d in result.desired] == ["02"]
    assert result.quarantine[0].rule == "missing_key"
    assert "row 1" in result.quarantine[0].message


def test_natural_key_collision_names_the_other_row() -> None:
    rows = [
        {"codigo": "S01", "nome": "Soldagem"},
        {"codigo": "S02", "nome": "Manutenção"},
        {"codigo": "S03", "nome": "  SOLDAGEM  "},
        {"codigo": "S04", "nome": "Pintura"},
    ]
    result = EPI.map_rows("smartepi", "sectors", rows)
    assert [d.erp_key for d in result.desired] == ["S02", "S04"]
    s1, s3 = only(result.quarantine, "S01"), only(result.quarantine, "S03")
    assert (s1.rule, s1.field) == ("natural_key_collision", "name")
    assert "'S03'" in s1.message and "'S01'" in s3.message


def test_employee_collisions_on_any_candidate_key() -> None:
    rows = [
        emp("01", cpf="123.456.789-09", email="a@acme.com"),
        emp("02", cpf="12345678909", email="b@acme.com"),  # same CPF, other punctuation
        emp("03", cpf=None, email="C@Acme.com"),
        emp("04", cpf="111.111.111-11", email="c@acme.com"),  # same e-mail as 03
        emp("05", cpf=None, email=None),  # derived ERP-05: unique
    ]
    result = EPI.map_rows("smartepi", "employees", rows)
    assert [d.erp_key for d in result.desired] == ["05"]
    assert {q.erp_key: q.field for q in result.quarantine} == {
        "01": "identification", "02": "identification", "03": "email", "04": "email",
    }  # fmt: skip
    assert only(result.quarantine, "01").value == "***"  # identification is sensitive


def test_a_bad_child_row_is_set_aside_alone_and_the_parent_syncs() -> None:
    """Issue 14 items 5 and 8: child keys fold case; a bad child row never holds its parent."""
    em = EPI.entity("smartepi", "products")
    sizes = [
        {"produto": "P1", "tamanho": "M"},
        {"produto": "P1", "tamanho": " m "},  # the same size as "M" (case and spaces ignored)
        {"produto": "P1", "tamanho": "G"},
        {"produto": "P2", "tamanho": "G"},
        {"produto": "P2", "tamanho": None},  # a size without a name
        {"produto": "P2", "tamanho": "P"},
    ]
    certs = [{"produto": "P2", "numero_ca": "12A45"}, {"produto": "P2", "numero_ca": "12345"}]
    ctx = MapContext(
        child_rows={
            "sizes": em.group_child_rows("sizes", sizes),
            "certificates": em.group_child_rows("certificates", certs),
        }
    )
    result = em.map_rows(
        [
            {"codigo": "P1", "nome": "Luva"},
            {"codigo": "P2", "nome": "Bota"},
            {"codigo": "P3", "nome": "Óculos"},
        ],
        ctx,
    )
    by_key = {d.erp_key: d for d in result.desired}
    assert sorted(by_key) == ["P1", "P2", "P3"]
    assert by_key["P1"].children["sizes"] == [{"name": "G"}]
    assert by_key["P2"].children == {
        "sizes": [{"name": "G"}, {"name": "P"}],
        "certificates": [{"number": "12345"}],
    }
    p1, p2 = only(result.quarantine, "P1"), only(result.quarantine, "P2")
    assert len(result.quarantine) == 2
    assert (p1.field, p1.rule) == ("sizes.name", "duplicate_child_key")
    assert "sizes row 1" in p1.message and "sizes row 2" in p1.message and "'M' / 'm'" in p1.message
    assert p1.set_aside == (("sizes", ("name",), ("m",)),)
    assert (p2.field, p2.rule) == ("sizes.name", "required")
    assert "sizes row 2 (name: required" in p2.message and "certificates row 1 (number: pattern" in p2.message
    assert p2.set_aside == (("sizes", ("name",), None), ("certificates", ("number",), None))
    assert p1.child_only and p2.child_only
    # a parent with child rows set aside is not "quarantined" for records referencing it
    ctx.record("products", result)
    assert ctx.quarantined["products"] == set()


def test_duplicate_children() -> None:
    em = KASA.entity("smartkasa", "products")
    stock = [
        {"sku": "A", "shop_code": "KYIV-01", "qty": 1},
        {"sku": "A", "shop_code": "KYIV-01", "qty": 2},
        {"sku": "A", "shop_code": "LVIV-01", "qty": "n/a"},  # a count that is not a number
    ]
    ctx = MapContext(child_rows={"cards": em.group_child_rows("cards", stock)})
    result = em.map_rows([{"sku": "A", "title": "Хліб", "price": 1}], ctx)
    (q,) = result.quarantine
    assert (q.field, q.rule) == ("cards.shop_id", "duplicate_child_key")
    assert q.set_aside == (("cards", ("shop_id",), ("1",)), ("cards", ("shop_id",), ("2",)))
    assert "cards row 3 (count: type" in q.message
    (d,) = result.desired
    assert d.children == {"cards": []}


def test_a_parent_quarantined_for_itself_keeps_one_entry() -> None:
    em = EPI.entity("smartepi", "products")
    ctx = MapContext(child_rows={"sizes": em.group_child_rows("sizes", [{"produto": "P1", "tamanho": None}])})
    result = em.map_rows([{"codigo": "P1", "nome": "Luva"}, {"codigo": "P2", "nome": "luva"}], ctx)
    assert result.desired == []
    assert sorted((q.erp_key, q.rule) for q in result.quarantine) == [
        ("P1", "natural_key_collision"),
        ("P2", "natural_key_collision"),
    ]


def test_category_subtree_of_a_quarantined_parent_and_cycles() -> None:
    rows = [
        {"code": "K01", "title": "Напої", "parent_code": None},
        {"code": "K02", "title": "\x1bНапої", "parent_code": None},  # control char: quarantined
        {"code": "K02-01", "title": "Соки", "parent_code": "K02"},
        {"code": "K02-01-01", "title": "Яблучні", "parent_code": "K02-01"},
        {"code": "K03", "title": "Без батька", "parent_code": "K99"},
        {"code": "K04", "title": "Цикл А", "parent_code": "K05"},
        {"code": "K05", "title": "Цикл Б", "parent_code": "K04"},
        {"code": "K06", "title": "Під циклом", "parent_code": "K05"},
    ]
    result = KASA.map_rows("smartkasa", "categories", rows)
    assert [d.erp_key for d in result.desired] == ["K01"]
    rules = {q.erp_key: q.rule for q in result.quarantine}
    assert rules == {
        "K02": "control_chars",
        "K02-01": "reference_quarantined",
        "K02-01-01": "reference_quarantined",
        "K03": "dangling_reference",
        "K04": "reference_cycle",
        "K05": "reference_cycle",
        "K06": "reference_cycle",
    }
    assert "parent categories 'K02' is quarantined" in only(result.quarantine, "K02-01").message


def test_self_reference_to_a_parent_known_from_context() -> None:
    row = {"code": "K09-01", "title": "Соки", "parent_code": "K09"}
    assert KASA.map_rows("smartkasa", "categories", [row]).quarantine[0].rule == "dangling_reference"
    ctx = MapContext(valid_keys={"categories": {"K09"}})
    assert KASA.map_rows("smartkasa", "categories", [row], ctx).quarantine == []


def test_erp_hash_changes_when_the_bad_row_is_fixed() -> None:
    bad = EPI.map_rows("smartepi", "employees", [emp("01", email="bad")]).quarantine[0]
    again = EPI.map_rows("smartepi", "employees", [emp("01", email="bad")]).quarantine[0]
    fixed = EPI.map_rows("smartepi", "employees", [emp("01", email="ok@acme.com")]).desired[0]
    assert bad.erp_hash == again.erp_hash != fixed.erp_hash


def test_long_values_are_cut_in_entries() -> None:
    text = (
        "version: 1\nplatform: smartepi\nentities:\n"
        "  groups: {source: g, key: k, fields: {name: {from: n, max_length: 5}}}\n"
    )
    (q,) = (
        load_mapping_texts({"g.yaml": text})
        .map_rows("smartepi", "groups", [{"k": 1, "n": "y" * 500}])
        .quarantine
    )
    assert q.value is not None and len(q.value) == 200 and q.value.endswith("…")
