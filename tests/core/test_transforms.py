"""Field transforms: each option alone, their order, and the inverse used for write-back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from sync.core.mapping.transforms import (
    Invalid,
    canon_text,
    column_fn,
    compile_field,
    concat_fn,
    inverse_fn,
    key_text,
    template_fn,
    to_bool,
    to_date,
    to_datetime,
    to_decimal,
    to_integer,
    to_text,
)


def field(column: str = "v", **kw: Any) -> Any:
    return compile_field("f", extract=column_fn(column), **kw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("  Soldagem ", "Soldagem"),
        ("   ", None),
        ("Manuten\u0063\u0327a\u0303o", "Manutenção"),  # decomposed → NFC
        (12, "12"),
        (Decimal("1.50"), "1.5"),
        (True, "true"),
        (dt.date(2024, 5, 1), "2024-05-01"),
    ],
)
def test_to_text(raw: Any, expected: Any) -> None:
    assert to_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "precision", "expected"),
    [
        ("12.90", None, Decimal("12.9")),
        ("12,5", None, Decimal("12.5")),
        (3, None, Decimal(3)),
        (0.1, None, Decimal("0.1")),
        ("2.345", 2, Decimal("2.35")),  # half up, not banker's
        ("100", 2, Decimal(100)),
        ("", None, None),
    ],
)
def test_to_decimal(raw: Any, precision: int | None, expected: Any) -> None:
    assert to_decimal(raw, precision) == expected


@pytest.mark.parametrize("raw", ["abc", "NaN", "Infinity", True])
def test_to_decimal_rejects(raw: Any) -> None:
    with pytest.raises(ValueError):
        to_decimal(raw)


def test_integers_and_booleans() -> None:
    assert to_integer("2009") == Decimal(2009)
    assert to_integer("7.0") == Decimal(7)
    with pytest.raises(ValueError):
        to_integer("7.5")
    assert [to_bool(v) for v in (1, 0, "sim", "Não", "true", " F ", None, "")] == [
        True, False, True, False, True, False, None, None,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        to_bool("talvez")


def test_dates_and_datetimes() -> None:
    assert to_date("02/03/2019", "%d/%m/%Y") == "2019-03-02"
    assert to_date("2019-03-02T10:00:00.000+02:00") == "2019-03-02"
    assert to_date(dt.datetime(2019, 3, 2, 23, 0)) == "2019-03-02"
    assert to_datetime("2024-01-01T10:00:00+02:00") == "2024-01-01T08:00:00+00:00"
    assert to_datetime("2024-01-01") == "2024-01-01T00:00:00+00:00"
    with pytest.raises(ValueError):
        to_date("31/02/2019", "%d/%m/%Y")


def test_canon_text_makes_sql_csv_and_yaml_values_equal() -> None:
    assert (
        canon_text(1) == canon_text("1") == canon_text(True) == canon_text(1.0) == canon_text("true") == "1"
    )
    assert canon_text(Decimal("2.50")) == "2.5"
    assert key_text(12) == key_text(" 12 ") == key_text(12.0) == "12"
    assert key_text("  ") is None


def test_extractors() -> None:
    row = {"first": " Ana ", "last": "Silva", "none": None}
    assert template_fn("{first} {last}", ["first", "last"])(row) == "Ana Silva"
    assert template_fn("{none}-{missing}", ["none", "missing"])(row) is None
    assert template_fn("ERP-{erp_key}", ["erp_key"], {"erp_key": "0007"})(row) == "ERP-0007"
    assert concat_fn(["first", "none", "last"], " / ")(row) == "Ana / Silva"
    assert concat_fn(["none"], " ")(row) is None


def test_pipeline_order_trim_case_lookup_default_type() -> None:
    units = {"шт": 2009, "кг": 301}
    fn = field(case="lower", lookup=units, type_="integer")
    assert fn({"v": " ШТ "}) == Decimal(2009)
    assert fn({"v": None}) is None
    with_default = field(lookup=units, has_default=True, default=2009, type_="integer")
    assert with_default({"v": ""}) == Decimal(2009)
    fallback = field(lookup=units, has_lookup_default=True, lookup_default=None)
    assert fallback({"v": "пачка"}) is None
    with pytest.raises(Invalid) as exc:
        field(lookup=units)({"v": "пачка"})
    assert (exc.value.rule, exc.value.value) == ("unknown_value", "пачка")


def test_spaces_collapse_and_case() -> None:
    assert field(spaces="collapse", case="title")({"v": "  maria   da  silva "}) == "Maria Da Silva"
    assert field()({"v": "  maria   da  silva "}) == "maria   da  silva"


@pytest.mark.parametrize(
    ("options", "value", "rule"),
    [
        ({"required": True}, "  ", "required"),
        ({"max_length": 3}, "abcd", "max_length"),
        ({"min_length": 3}, "ab", "min_length"),
        ({"email": True}, "maria@", "format"),
        ({"email": True}, "maria silva@acme.com", "format"),
        ({"pattern": "[0-9]{5}"}, "1234a", "pattern"),
        ({}, "Ana\x00", "control_chars"),
        ({}, "Ana\x1b[31m", "control_chars"),
        ({}, "Zo\x85ë", "control_chars"),  # C1 control inside non-ASCII text
        ({"type_": "decimal", "minimum": Decimal(0)}, "-0.01", "min"),
        ({"type_": "integer", "maximum": Decimal(10)}, "11", "max"),
        ({"type_": "decimal"}, "12,34,5", "type"),
        ({"type_": "date"}, "yesterday", "type"),
        ({"type_": "boolean"}, "maybe", "type"),
    ],
)
def test_rules(options: dict[str, Any], value: Any, rule: str) -> None:
    with pytest.raises(Invalid) as exc:
        field(**options)({"v": value})
    assert exc.value.rule == rule
    assert exc.value.field == "f"


@pytest.mark.parametrize(
    ("options", "value", "expected"),
    [
        ({"email": True}, "maria.silva+epi@acme.com.br", "maria.silva+epi@acme.com.br"),
        ({"max_length": 4}, "Zoë ", "Zoë"),
        ({}, "linha 1\nlinha 2\tfim", "linha 1\nlinha 2\tfim"),
        ({"type_": "decimal", "minimum": Decimal(0), "precision": 2}, "0.004", Decimal(0)),
    ],
)
def test_values_that_pass(options: dict[str, Any], value: Any, expected: Any) -> None:
    assert field(**options)({"v": value}) == expected


def test_constant_is_coerced_once() -> None:
    fn = compile_field("active", extract=lambda row: "sim", type_="boolean", constant=True)
    assert fn({}) is True
    with pytest.raises(Invalid):
        compile_field("n", extract=lambda row: "x", type_="integer", constant=True)


def test_date_cache_returns_same_values_as_uncached() -> None:
    fn = field(type_="date", date_format="%d/%m/%Y")
    values = [f"{d:02d}/03/2020" for d in range(1, 29)] * 3
    assert [fn({"v": v}) for v in values] == [to_date(v, "%d/%m/%Y") for v in values]


def test_inverse() -> None:
    assert inverse_fn(type_="date", date_format="%d/%m/%Y", lookup=None)("2019-03-02") == "02/03/2019"
    assert inverse_fn(type_="decimal", date_format=None, lookup=None)("100.0") == Decimal(100)
    assert inverse_fn(type_="integer", date_format=None, lookup=None)(Decimal("7")) == 7
    reverse = inverse_fn(type_="boolean", date_format=None, lookup={"A": True, "D": False})
    assert (reverse(True), reverse(False)) == ("A", "D")
    with pytest.raises(Invalid):
        inverse_fn(type_="string", date_format=None, lookup={"A": "x"})("y")
