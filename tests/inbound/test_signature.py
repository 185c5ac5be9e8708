"""Webhook signature verification (pure): the recipe, rotation, tolerance, malformed headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.core.signature import (
    MAX_TOLERANCE,
    SignatureInvalid,
    SignatureMalformed,
    SignatureStale,
    clamp_tolerance,
    digest,
    sign,
    verify,
)
from sync.sandbox.smartepi.webhooks import signature_header

secrets_st = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=8, max_size=40).map(
    lambda s: "whsec_" + s
)
bodies = st.binary(max_size=2048)
times = st.integers(min_value=1_000_000_000, max_value=4_000_000_000)


@settings(max_examples=200, deadline=None)
@given(secret=secrets_st, body=bodies, t=times, skew=st.integers(-MAX_TOLERANCE, MAX_TOLERANCE))
def test_signed_body_verifies_within_tolerance_both_ways(secret: str, body: bytes, t: int, skew: int) -> None:
    verify(sign(body, secret, timestamp=t), body, [secret], now=t + skew)


@settings(max_examples=200, deadline=None)
@given(
    secret=secrets_st,
    body=bodies,
    t=times,
    skew=st.integers(MAX_TOLERANCE + 1, 10**7),
    sign_=st.sampled_from([1, -1]),
)
def test_outside_tolerance_is_stale_whatever_the_configured_tolerance(
    secret: str, body: bytes, t: int, skew: int, sign_: int
) -> None:
    header = sign(body, secret, timestamp=t)
    for tolerance in (300, 301, 3600, 10**9):  # cannot be widened
        with pytest.raises(SignatureStale):
            verify(header, body, [secret], now=t + sign_ * skew, tolerance=tolerance)


@settings(max_examples=200, deadline=None)
@given(secret=secrets_st, body=bodies, t=times, flip=st.integers(min_value=0))
def test_any_changed_byte_is_rejected(secret: str, body: bytes, t: int, flip: int) -> None:
    header = sign(body, secret, timestamp=t)
    tampered = (
        body + b"x"
        if not body
        else body[: flip % len(body)] + bytes([body[flip % len(body)] ^ 1]) + body[flip % len(body) + 1 :]
    )
    with pytest.raises(SignatureInvalid):
        verify(header, tampered, [secret], now=t)


@settings(max_examples=100, deadline=None)
@given(good=secrets_st, other=secrets_st, body=bodies, t=times)
def test_wrong_secret_is_invalid_and_message_holds_no_secret(
    good: str, other: str, body: bytes, t: int
) -> None:
    if good == other:
        return
    header = sign(body, other, timestamp=t)
    with pytest.raises(SignatureInvalid) as info:
        verify(header, body, [good], now=t)
    text = str(info.value)
    assert good not in text and other not in text and digest(good, t, body) not in text


@settings(max_examples=100, deadline=None)
@given(old=secrets_st, new=secrets_st, body=bodies, t=times)
def test_rotation_any_secret_any_entry(old: str, new: str, body: bytes, t: int) -> None:
    both = sign(body, [old, new], timestamp=t)  # sender signs with both during a rotation
    verify(both, body, [new], now=t)
    verify(both, body, [old], now=t)
    verify(sign(body, old, timestamp=t), body, [new, old], now=t)  # receiver holds both


@settings(max_examples=100, deadline=None)
@given(secret=secrets_st, body=bodies, t=times)
def test_matches_the_sandbox_emitter_recipe(secret: str, body: bytes, t: int) -> None:
    verify(signature_header(secret, t, body), body, [secret], now=t)


def test_both_key_readings_verify_whatever_the_preference() -> None:
    body, t = b'{"id":"evt_1"}', 1_750_000_000
    stripped = signature_header("abc123secret", t, body)  # sender keyed without "whsec_"
    full = signature_header("whsec_abc123secret", t, body)
    for prefer in (True, False):
        verify(stripped, body, ["whsec_abc123secret"], now=t, key_includes_prefix=prefer)
        verify(full, body, ["whsec_abc123secret"], now=t, key_includes_prefix=prefer)
        verify(full, body, ["abc123secret"], now=t, key_includes_prefix=prefer)  # configured bare
        with pytest.raises(SignatureInvalid):
            verify(stripped, body, ["whsec_abc123secreT"], now=t, key_includes_prefix=prefer)
    assert sign(body, "whsec_abc123secret", timestamp=t, key_includes_prefix=False) == stripped


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_base64_and_hex_digests_verify(encoding: str) -> None:
    import base64

    body, t = b'{"id":"evt_2"}', 1_750_000_000
    header = sign(body, "whsec_k3y_value", timestamp=t, encoding=encoding)  # type: ignore[arg-type]
    verify(header, body, ["whsec_k3y_value"], now=t)
    mac = bytes.fromhex(digest("whsec_k3y_value", t, body))
    for value in (base64.urlsafe_b64encode(mac).decode(), base64.b64encode(mac).decode().rstrip("=")):
        verify(f"t={t},v1={value}", body, ["whsec_k3y_value"], now=t)
    with pytest.raises(SignatureInvalid):
        verify(header, body, ["whsec_k3y_valuE"], now=t)


def test_stale_only_for_authentic_signatures() -> None:
    body, t = b"{}", 1_750_000_000
    forged = sign(body, "whsec_forger", timestamp=t - 10_000)
    with pytest.raises(SignatureInvalid):
        verify(forged, body, ["whsec_realsecret"], now=t)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "v1=" + "a" * 64,  # no timestamp
        "t=1750000000",  # no signature
        "t=1750000000,v1=nothex",
        "t=abc,v1=" + "a" * 64,
        "t=-5,v1=" + "a" * 64,
        "t=1,t=2,v1=" + "a" * 64,
        "t=1750000000," + ",".join(["v1=" + "a" * 64] * 40),
    ],
)
def test_malformed_headers(header: str) -> None:
    with pytest.raises(SignatureMalformed):
        verify(header, b"{}", ["whsec_x12345678"], now=1_750_000_000)


def test_unknown_schemes_are_ignored_and_uppercase_hex_accepted() -> None:
    body, t = b"{}", 1_750_000_000
    mac = digest("whsec_s3cr3tvalue", t, body)
    verify(f"t={t},v0=deadbeef,v1={mac.upper()}", body, ["whsec_s3cr3tvalue"], now=t)


def test_no_secret_configured_rejects() -> None:
    header = sign(b"{}", "whsec_something", timestamp=1)
    with pytest.raises(SignatureInvalid):
        verify(header, b"{}", [], now=1)
    with pytest.raises(SignatureInvalid):
        verify(header, b"{}", [""], now=1)


@pytest.mark.parametrize(
    ("asked", "used"), [(0, 1), (-5, 1), (1, 1), (120, 120), (300, 300), (301, 300), (10**9, 300)]
)
def test_tolerance_is_clamped(asked: int, used: int) -> None:
    assert clamp_tolerance(asked) == used
    body, t = b"{}", 1_750_000_000
    header = sign(body, "whsec_k3y_value", timestamp=t)
    verify(header, body, ["whsec_k3y_value"], now=t + used, tolerance=asked)
    with pytest.raises(SignatureStale):
        verify(header, body, ["whsec_k3y_value"], now=t + used + 1, tolerance=asked)
