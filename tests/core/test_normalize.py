"""Normalization: idempotent, and formatting differences never look like changes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.core.normalize import content_hash, normalize_fields, normalize_value, parse_decimal

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(values)
def test_normalize_value_is_idempotent(value: Any) -> None:
    once = normalize_value(value)
    assert normalize_value(once) == once
    assert content_hash(normalize_value(once)) == content_hash(once)


@given(st.dictionaries(st.text(max_size=5), values, max_size=6))
def test_normalize_fields_is_idempotent_and_drops_none(fields: dict[str, Any]) -> None:
    once = normalize_fields(fields)
    assert normalize_fields(once) == once
    assert None not in once.values()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Decimal("100"), "100.0"),
        (100, Decimal("100.00")),
        (1.5, Decimal("1.50")),
        (Decimal("-0.0"), 0),
        ("  Luvas  ", "Luvas"),
        ("", None),
        ("e\u0301", "\u00e9"),  # NFC
        (dt.date(2026, 1, 2), "2026-01-02"),
        (
            dt.datetime(2026, 1, 2, 3, 0),
            dt.datetime(2026, 1, 2, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
        ),
        ({"a": 1, "b": None}, {"a": Decimal("1.0")}),
        ({"a": " "}, {}),
    ],
)
def test_equivalent_forms_normalize_equal(a: Any, b: Any) -> None:
    if isinstance(b, str) and not isinstance(a, str) and not isinstance(a, dt.date):
        b = parse_decimal(b)
    assert normalize_value(a) == normalize_value(b)


def test_long_decimals_are_exact() -> None:
    # the default 28-digit context used to round these (and quantize raised above 28 digits)
    assert normalize_value(Decimal("1234567890123456789012345678901.50")) == Decimal(
        "1234567890123456789012345678901.5"
    )
    assert normalize_value(Decimal("1E+30")) == Decimal(10**30)
    assert str(normalize_value(Decimal("1E+30"))) == "1" + "0" * 30


def test_bool_is_not_a_number() -> None:
    assert normalize_value(True) is True
    with pytest.raises(ValueError):
        parse_decimal(True)
