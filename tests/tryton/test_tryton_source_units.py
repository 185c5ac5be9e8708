"""The Tryton source's declarative parts without a server: entity overrides, column
extraction (paths, where, pick, dict keys), and the config schema."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from sync.errors import ConfigError
from sync.sources.config import TrytonColumnConfig, TrytonSourceConfig
from sync.sources.tryton import (
    DEFAULT_ENTITIES,
    Column,
    Cond,
    Hop,
    _stamp,
    _timestamps,
    entity_configs,
    extract,
)


def config(**entities: Any) -> TrytonSourceConfig:
    return TrytonSourceConfig(
        url="http://tryton.test:8000/", database="erp", user="epi", password="pw-1234", entities=entities
    )


def test_overrides_merge_column_by_column_and_new_entities_need_a_model() -> None:
    merged = entity_configs(config(employees={"columns": {"cost_center": "x_cost_center.id"}}))
    employees = merged["employees"]
    assert employees.model == "company.employee" and employees.writable
    assert employees.columns["cost_center"] == "x_cost_center.id"
    assert set(employees.columns) == set(DEFAULT_ENTITIES["employees"]["columns"])  # others kept
    other = entity_configs(config(employees={"model": "hr.person", "columns": {"name": "full_name"}}))
    assert other["employees"].columns == {"name": "full_name"}  # another model: its own columns
    custom = entity_configs(config(badges={"model": "x.badge", "columns": {"code": "code"}}))
    assert custom["badges"].model == "x.badge" and custom["badges"].active_test is False
    with pytest.raises(ConfigError, match="needs a model and columns"):
        entity_configs(config(badges={"columns": {"code": "code"}}))
    with pytest.raises(ValidationError):
        config(employees={"modle": "typo"})  # unknown keys are errors
    assert config().url == "http://tryton.test:8000"
    with pytest.raises(ValidationError):
        TrytonSourceConfig(url="tryton.test", database="erp", user="u", password="p")


def hop(name: str, kind: str = "m2o") -> Hop:
    return Hop(name, kind, "model", "many2one" if kind == "m2o" else "one2many")


def column(
    hops: list[Hop],
    leaf: str,
    *,
    conds: tuple[Cond, ...] = (),
    pick: str = "first",
    keys: tuple[str, ...] = (),
) -> Column:
    conf = TrytonColumnConfig(path="x", pick=pick)  # type: ignore[arg-type]
    return Column("c", conf, tuple(hops), leaf, keys, conds, (), "model")


EMPLOYEE = {
    "id": 1,
    "party.": {
        "id": 3,
        "name": "Helena",
        "identifiers.": [
            {"id": 1, "type": "br_vat", "code_compact": "11222333000181"},
            {"id": 3, "type": "br_cpf", "code_compact": "83863794052"},
        ],
        "categories.": [
            {"id": 4, "name": "Almoxarifado", "parent.": {"id": 1, "name": "Setor"}},
            {"id": 26, "name": "Supervisor", "parent.": {"id": 17, "name": "Cargo"}},
        ],
        "contact_mechanisms.": [],
    },
}


def test_extract_follows_paths_filters_and_picks() -> None:
    party = hop("party")
    assert extract([EMPLOYEE], column([party], "name")) == "Helena"
    cpf = Cond(("type",), "=", "br_cpf")
    assert extract([EMPLOYEE], column([party, hop("identifiers", "x2m")], "code_compact", conds=(cpf,))) == (
        "83863794052"
    )
    cargo = Cond(("parent.", "name"), "=", "Cargo")
    assert extract([EMPLOYEE], column([party, hop("categories", "x2m")], "id", conds=(cargo,))) == 26
    assert extract([EMPLOYEE], column([party, hop("contact_mechanisms", "x2m")], "value")) is None
    all_ids = column([party, hop("categories", "x2m")], "id", pick="all")
    assert extract([EMPLOYEE], all_ids) == [4, 26]
    assert extract([EMPLOYEE], column([party, hop("categories", "x2m")], "id", pick="count")) == 2
    not_setor = Cond(("parent.", "name"), "!=", "Setor")
    assert extract([EMPLOYEE], column([party, hop("categories", "x2m")], "name", conds=(not_setor,))) == (
        "Supervisor"
    )


def test_join_normalises_numbers_and_dict_keys_are_read() -> None:
    product = {"id": 5, "taxes.": [{"rate": Decimal("0.20")}, {"rate": Decimal("0.0500")}]}
    assert extract([product], column([hop("taxes", "x2m")], "rate", pick="join")) == "0.05+0.2"
    variant = {"id": 7, "attributes": {"tamanho": "GG", "ca_numero": "12345"}}
    assert extract([variant], column([], "attributes", keys=("tamanho",))) == "GG"
    assert extract([{"id": 8, "attributes": None}], column([], "attributes", keys=("tamanho",))) is None


def test_change_stamps_and_timestamps_of_nested_answers() -> None:
    row = {
        "id": 1,
        "last_modified_at": "2026-12-07 01:00:00.5",
        "party.": {"id": 3, "last_modified_at": dt.datetime(2026, 12, 7, 1, 5), "identifiers.": []},
        "_timestamp": "1796605979.27",
    }
    assert _stamp(row) == dt.datetime(2026, 12, 7, 1, 5, tzinfo=dt.UTC)
    nested = {
        "id": 1,
        "_timestamp": "1",
        "party.": {"id": 3, "_timestamp": "2", "contact_mechanisms.": [{"id": 9, "_timestamp": "3"}]},
    }
    stamps = _timestamps(
        nested,
        "company.employee",
        {"party": "party.party", "party.contact_mechanisms": "party.contact_mechanism"},
    )
    assert stamps == {"company.employee,1": "1", "party.party,3": "2", "party.contact_mechanism,9": "3"}
