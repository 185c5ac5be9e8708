"""SmartKasa sandbox wire formats: Ruby decimals, timestamps, taxes, tokens, type coercion."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from sync.sandbox.smartkasa import tokens
from sync.sandbox.smartkasa.formats import (
    CoercionError,
    date_ts,
    json_number,
    normalize_phone,
    parse_bound,
    ruby_decimal,
    to_bool,
    to_decimal,
    to_int,
    ts,
)
from sync.sandbox.smartkasa.views import tax_amounts


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("100", "100.0"),
        ("71.89", "71.89"),
        ("0.99", "0.99"),
        ("3064.00", "3064.0"),
        ("0", "0.0"),
        ("1E+3", "1000.0"),
        ("-2.50", "-2.5"),
        ("9.990", "9.99"),
    ],
)
def test_ruby_decimal_strings(value, text):
    assert ruby_decimal(Decimal(value)) == text


def test_json_numbers_for_report_amounts():
    assert json_number(Decimal("0.00")) == 0 and isinstance(json_number(Decimal("0.00")), int)
    assert json_number(Decimal("12276.25")) == 12276.25


def test_timestamps_have_milliseconds_and_offset():
    epoch = dt.datetime(2021, 3, 22, 11, 51, 48, 382000, tzinfo=dt.UTC).timestamp()
    assert ts(epoch, 120) == "2021-03-22T13:51:48.382+02:00"
    assert ts(epoch, 0) == "2021-03-22T11:51:48.382+00:00"
    assert date_ts(dt.date(1980, 1, 1)) == "1980-01-01T00:00:00.000+00:00"


def test_date_bounds_cover_whole_days_and_respect_offsets():
    start = parse_bound("2021-03-22", end=False, default_offset=120)
    end = parse_bound("2021-03-22", end=True, default_offset=120)
    assert end - start == pytest.approx(86400, abs=0.001)
    assert parse_bound("2021-03-22T00:00:00+00:00", end=False, default_offset=120) == start + 7200
    with pytest.raises(ValueError):
        parse_bound("soon", end=False, default_offset=0)


def test_tax_amounts_match_the_realistic_receipt():
    assert tax_amounts(Decimal("1438.0"), 6) == {"З": 6848, "А": 22825}
    assert tax_amounts(Decimal("100"), 0) == {} and tax_amounts(Decimal("120"), 1) == {"А": 2000}


def test_coercion_accepts_numeric_strings_and_rejects_the_rest():
    assert to_decimal("71.89") == Decimal("71.89") and to_decimal(71.89) == Decimal("71.89")
    assert to_int("42") == 42 and to_int(3.0) == 3 and to_bool("false") is False
    for fn, bad in (
        (to_decimal, "wrong"),
        (to_decimal, True),
        (to_decimal, "NaN"),
        (to_int, 1.5),
        (to_bool, "x"),
    ):
        with pytest.raises(CoercionError):
            fn(bad)


def test_phone_normalization():
    assert normalize_phone("0971234567") == "380971234567"
    assert normalize_phone("+380 97 123 45 67") == "380971234567"


def test_tokens_roundtrip_and_reject_tampering():
    token = tokens.encode({"uid": "u1", "user_id": 7}, issued=100, expires=200, secret="s")
    assert tokens.decode(token, secret="s") == {"exp": 200, "uid": "u1", "user_id": 7}
    head, payload, sig = token.split(".")
    assert tokens.decode(token, secret="other") is None
    assert tokens.decode(f"{head}.{payload}x.{sig}", secret="s") is None
    assert tokens.decode("not-a-jwt", secret="s") is None


def test_secrets_stay_out_of_reprs():
    from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec
    from sync.sandbox.smartkasa.store import Store

    config = SmartKasaSandboxConfig(tenants=[TenantSpec(api_key="key-SECRET-1", password="pw-SECRET-2")])
    store = Store(config)
    tenant = store.tenants["key-SECRET-1"]
    texts = [repr(config), str(config), repr(config.tenants[0]), repr(tenant)]
    assert not any("SECRET" in t or "smartkasa-sandbox-secret" in t for t in texts)
