"""A ``constant`` takes its platform field's type (issue 19 item 2).

``active: {constant: true}`` used to map to the text "true", which never equals the
boolean the platform returns, so every employee was PUT on every apply.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from sync.core.mapping.loader import MappingFileError, load_mapping_texts

EPI = """
version: 1
platform: smartepi
entities:
  employees:
    source: f
    key: m
    fields:
      name: nome
      identification: cpf
      active: {spec}
"""

KASA = """
version: 1
platform: smartkasa
entities:
  products:
    source: p
    key: sku
    fields:
      title: t
      number: b
      price: {price}
      sold_by_weight: {weight}
    children:
      cards:
        source: s
        parent_key: sku
        key: shop_id
        fields:
          shop_id: {{constant: "7"}}
          counting_enabled: {{constant: "yes"}}
"""

ROW = {"m": "1", "nome": "Ana", "cpf": "12345678900"}


def _active(spec: str, fastpath: bool) -> object:
    ms = load_mapping_texts({"m.yaml": EPI.format(spec=spec)})
    em = ms.entity("smartepi", "employees")
    em.fastpath = fastpath
    result = em.map_rows([ROW])
    assert result.quarantine == []
    return result.desired[0].fields["active"]


@pytest.mark.parametrize("fastpath", [True, False])
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{constant: true}", True),
        ("{constant: false}", False),
        ("{constant: 'S'}", True),
        ("{constant: 0}", False),
    ],
)
def test_boolean_constant_is_a_boolean(spec: str, expected: bool, fastpath: bool) -> None:
    value = _active(spec, fastpath)
    assert value is expected


def test_constants_on_numbers_and_child_fields_take_the_platform_type() -> None:
    ms = load_mapping_texts(
        {"k.yaml": KASA.format(price="{constant: '10.50'}", weight="{constant: 'false'}")}
    )
    em = ms.entity("smartkasa", "products")
    from sync.core.mapping import MapContext

    ctx = MapContext(child_rows={"cards": {"A": [{"sku": "A"}]}})
    result = em.map_rows([{"sku": "A", "t": "Tea", "b": "12345678"}], ctx)
    assert result.quarantine == []
    d = result.desired[0]
    assert d.fields["price"] == Decimal("10.5") and d.fields["sold_by_weight"] is False
    assert d.children["cards"] == [{"shop_id": Decimal(7), "counting_enabled": True}]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("{constant: maybe}", "constant 'maybe' is not a valid boolean"),
        ("{constant: true, type: string}", "active is a boolean field on smartepi"),
    ],
)
def test_constant_that_cannot_take_the_type_fails_the_check(spec: str, needle: str) -> None:
    with pytest.raises(MappingFileError) as err:
        load_mapping_texts({"m.yaml": EPI.format(spec=spec)})
    (problem,) = err.value.problems
    assert needle in problem and problem.startswith("m.yaml:11: entities.employees.fields.active")


def test_constant_price_that_is_not_a_number_fails_the_check() -> None:
    with pytest.raises(MappingFileError) as err:
        load_mapping_texts({"k.yaml": KASA.format(price="{constant: cheap}", weight="{constant: true}")})
    assert any("constant 'cheap' is not a valid decimal" in p for p in err.value.problems)


def test_explicit_number_type_on_a_decimal_field_is_accepted() -> None:
    ms = load_mapping_texts(
        {"k.yaml": KASA.format(price="{constant: 3, type: integer}", weight="{constant: 1}")}
    )
    assert ms.entity("smartkasa", "products").policy().entity == "products"
