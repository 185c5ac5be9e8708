"""HS256 JWTs shaped like SmartKasa's (§2.2), built with the standard library.

The payload repeats ``exp`` like the real tokens do: first the issue time, last the expiry (a JSON
parser keeps the last one). Validity is decided server-side by the token registry (rotation, logout,
forced expiry), so the signature only proves the token came from this sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256"}').rstrip(b"=")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], *, issued: int, expires: int, secret: str) -> str:
    body = json.dumps(claims, separators=(",", ":"))[1:-1]
    payload = f'{{"exp":{issued},{body},"exp":{expires}}}'.encode()
    signing_input = _HEADER + b"." + _b64(payload)
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


def decode(token: str, *, secret: str) -> dict[str, Any] | None:
    """Claims of a token this sandbox signed, or None (bad shape or signature)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    expected = _b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, parts[2]):
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None
