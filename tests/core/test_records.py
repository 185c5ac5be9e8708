"""``Desired`` is stored compactly but behaves as the frozen dataclass it replaced."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest

from sync.core.mapping import load_mapping_texts
from sync.core.records import Desired, field_names


def test_desired_reads_like_a_dataclass() -> None:
    d = Desired("smartepi", "products", "P1", {"name": "Luva", "price": Decimal("1.5")}, erp_hash="ab")
    assert d.fields == {"name": "Luva", "price": Decimal("1.5")}
    assert list(d.fields) == ["name", "price"]  # field order kept
    assert d.children == {} and d.erp_hash == "ab"
    assert d.get("price") == Decimal("1.5") and d.get("missing") is None and d.get("missing", 0) == 0
    assert repr(d) == (
        "Desired(platform='smartepi', entity='products', erp_key='P1',"
        " fields={'name': 'Luva', 'price': Decimal('1.5')}, children={}, erp_hash='ab')"
    )
    match d:
        case Desired("smartepi", "products", key, fields):
            assert key == "P1" and fields["name"] == "Luva"
        case _:
            pytest.fail("no match")


def test_desired_is_frozen_and_compares_by_value() -> None:
    d = Desired("smartepi", "products", "P1", {"name": "Luva"}, {"sizes": [{"name": "M"}]}, "h")
    d.fields["name"] = "other"  # a fresh dict per access: the record does not change
    assert d.fields == {"name": "Luva"}
    with pytest.raises(FrozenInstanceError):
        d.erp_key = "P2"  # type: ignore[misc]
    assert d == Desired("smartepi", "products", "P1", {"name": "Luva"}, {"sizes": [{"name": "M"}]}, "h")
    assert d != Desired("smartepi", "products", "P1", {"name": "Luvas"}, {"sizes": [{"name": "M"}]}, "h")
    assert d != Desired("smartepi", "products", "P1", {"name": "Luva"}, {}, "h")
    with pytest.raises(TypeError):
        hash(d)
    assert pickle.loads(pickle.dumps(d)) == d


def test_packed_records_share_names_and_show_the_hash_as_hex() -> None:
    digest = hashlib.blake2b(b"row", digest_size=16).digest()
    names = field_names(("name", "code"))
    a = Desired.packed("smartepi", "sectors", "S1", names, ("Solda", "S1"), {}, digest)
    assert a.erp_hash == digest.hex()
    assert a == Desired("smartepi", "sectors", "S1", {"name": "Solda", "code": "S1"}, {}, digest.hex())
    assert field_names(("name", "code")) is names


def test_mapped_records_share_one_name_tuple_per_shape() -> None:
    ms = load_mapping_texts(
        {
            "m.yaml": """
version: 1
platform: smartepi
entities:
  job_roles:
    source: cargos
    key: codigo
    fields:
      name: {from: nome, required: true}
      description: descr
"""
        }
    )
    rows = [{"codigo": f"S{i}", "nome": f"Setor {i}", "descr": "x" if i % 2 else None} for i in range(6)]
    result = ms.map_rows("smartepi", "job_roles", rows)
    assert [d.fields for d in result.desired][:2] == [
        {"name": "Setor 0"},
        {"name": "Setor 1", "description": "x"},
    ]
    shapes = {id(d._names) for d in result.desired}
    assert len(shapes) == 2
