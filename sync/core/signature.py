"""SmartEPI webhook signatures: pure verification of ``X-SmartEPI-Signature``.

The recipe is an assumption (smartepi.md §4, §5.5) kept in this one module:
``t=<unix seconds>,v1=<HMAC-SHA256 of "<t>.<raw body>">``. Two parts of it are undocumented
and the contract asks receivers to be tolerant of both answers, so ``verify`` accepts either:

- the key: the whole secret (``whsec_…`` included) or only the part after ``whsec_``;
  ``key_includes_prefix`` is only the reading tried first (and the one ``sign`` uses);
- the ``v1`` encoding: hex (either case) or base64 (standard or URL-safe, padded or not) of
  the 32-byte digest; any other ``v1`` value is ignored.

Several ``v1=`` entries may appear (the sender signs with every active secret during a
rotation), and the receiver may hold several secrets too: any (secret, key reading, entry)
match accepts.

Why the rules are strict:

- the digest is compared with ``hmac.compare_digest`` (as raw bytes, after decoding the
  entry) so timing does not leak it, and every pair is compared, with no early exit;
- the timestamp tolerance is clamped to 1..300 s and applies in both directions, so a
  captured delivery cannot be replayed later and a configuration cannot switch it off;
- the signature is checked before the timestamp, so ``SignatureStale`` is only ever raised
  for an authentic but old (or future) delivery: a clock-skew diagnosis, not a forgery;
- errors never contain a secret or a digest, only what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import ClassVar, Literal

from sync.errors import ErpsyncError

SECRET_PREFIX = "whsec_"
MAX_TOLERANCE = 300
MAX_ENTRIES = 16  # more signature entries than this is not a rotation, it is abuse
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_BASE64_32 = re.compile(r"^[A-Za-z0-9+/_-]{43}=?$")  # 32 bytes in base64, padded or not


class WebhookRejected(ErpsyncError):
    """A webhook delivery we refuse; ``status`` is the HTTP answer to give."""

    kind = "record"
    status: ClassVar[int] = 400
    default_hint = "the sender retries; check the webhook secret and the clocks if this persists"


class SignatureMalformed(WebhookRejected):
    """The header is missing or cannot be parsed."""

    status = 400


class SignatureInvalid(WebhookRejected):
    """No signature entry matches any configured secret."""

    status = 401


class SignatureStale(WebhookRejected):
    """The signature is authentic but its timestamp is outside the tolerance."""

    status = 401


def clamp_tolerance(tolerance: int) -> int:
    """1..300 s whatever is asked: the tolerance cannot be widened or switched off."""
    return max(1, min(MAX_TOLERANCE, int(tolerance)))


def _key(secret: str, key_includes_prefix: bool) -> bytes:
    if not key_includes_prefix and secret.startswith(SECRET_PREFIX):
        secret = secret[len(SECRET_PREFIX) :]
    return secret.encode()


def _key_readings(secret: str, prefer_prefix: bool) -> list[bytes]:
    """Both readings of a secret's HMAC key, the preferred one first: with and without
    ``whsec_`` (a secret configured without the prefix also gets it added)."""
    if secret.startswith(SECRET_PREFIX):
        full, bare = secret, secret[len(SECRET_PREFIX) :]
    else:
        full, bare = SECRET_PREFIX + secret, secret
    ordered = [full, bare] if prefer_prefix else [bare, full]
    return [k.encode() for k in ordered if k]


def _decode_v1(value: str) -> bytes | None:
    """The 32 digest bytes of one ``v1`` value in hex or base64; None for anything else."""
    if _HEX64.match(value):
        return bytes.fromhex(value)
    if _BASE64_32.match(value):
        text = value.rstrip("=").replace("+", "-").replace("/", "_") + "="
        try:
            raw = base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            return None
        return raw if len(raw) == 32 else None
    return None


def _mac(key: bytes, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).digest()


def digest(
    secret: str,
    timestamp: int,
    body: bytes,
    *,
    key_includes_prefix: bool = True,
    encoding: Literal["hex", "base64"] = "hex",
) -> str:
    """HMAC-SHA256 of ``"<timestamp>.<body>"``, lowercase hex (or standard base64)."""
    raw = _mac(_key(secret, key_includes_prefix), timestamp, body)
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


def sign(
    body: bytes,
    secrets: str | Sequence[str],
    *,
    timestamp: int,
    key_includes_prefix: bool = True,
    encoding: Literal["hex", "base64"] = "hex",
) -> str:
    """The header value a sender would send (one ``v1`` entry per secret); for tests and the bench."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    entries = [
        f"v1={digest(s, timestamp, body, key_includes_prefix=key_includes_prefix, encoding=encoding)}"
        for s in keys
    ]
    return ",".join([f"t={timestamp}", *entries])


def parse_header(header: str) -> tuple[int, list[bytes]]:
    """``(timestamp, [v1 digests as bytes])``; unknown schemes (``v0=``…) are ignored."""
    timestamp: int | None = None
    candidates: list[bytes] = []
    parts = header.split(",") if header else []
    if len(parts) > MAX_ENTRIES + 1:
        raise SignatureMalformed("signature header has too many entries")
    for part in parts:
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureMalformed("signature header entry without '='")
        if name == "t":
            if timestamp is not None:
                raise SignatureMalformed("signature header has more than one timestamp")
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise SignatureMalformed("signature timestamp is not a unix time in seconds")
            timestamp = int(value)
        elif name == "v1":
            decoded = _decode_v1(value.strip())
            if decoded is not None:
                candidates.append(decoded)
    if timestamp is None:
        raise SignatureMalformed("signature header has no timestamp (t=)")
    if not candidates:
        raise SignatureMalformed("signature header has no v1 signature")
    return timestamp, candidates


def verify(
    header: str,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: int,
    tolerance: int = MAX_TOLERANCE,
    key_includes_prefix: bool = True,
) -> None:
    """Return if ``header`` authenticates ``body`` at time ``now``; raise a ``WebhookRejected`` otherwise.

    ``key_includes_prefix`` is a preference, not a requirement: both key readings are tried."""
    timestamp, candidates = parse_header(header)
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureInvalid("no webhook secret is configured")
    matched = False
    for secret in usable:
        for key in _key_readings(secret, key_includes_prefix):
            expected = _mac(key, timestamp, body)
            for candidate in candidates:
                # no short-circuit: every pair is compared, so timing says nothing about which matched
                matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureInvalid("signature does not match")
    age = int(now) - timestamp
    if abs(age) > clamp_tolerance(tolerance):
        when = "in the past" if age > 0 else "in the future"
        raise SignatureStale(
            f"signature timestamp is {abs(age)} s {when} (tolerance {clamp_tolerance(tolerance)} s)"
        )
