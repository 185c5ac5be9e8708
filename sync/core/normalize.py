"""Normalization of field values before they are compared or hashed.

Both sides of every comparison go through ``normalize_value`` so that formatting
differences the platforms introduce never show up as changes: SmartKasa returns
``"100.0"`` for a price sent as ``100``; dates come back as ``...T00:00:00.000+00:00``;
strings may carry stray whitespace; ``None`` and a missing key mean the same.
The function is idempotent: ``normalize_value(normalize_value(x)) == normalize_value(x)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Any

# Exact arithmetic for canonicalization: the default context (28 digits) would round long
# values in ``normalize()`` and make ``quantize()`` raise for integers above 28 digits.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def normalize_decimal(value: Decimal) -> Decimal:
    """Canonical decimal: no exponent, no trailing zeros (``Decimal('1.50')`` → ``1.5``)."""
    if not value.is_finite():
        return value
    if value == 0:
        return Decimal(0)
    value = value.normalize(_EXACT)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return value.quantize(Decimal(1), context=_EXACT)
    return value


def normalize_string(value: str) -> str:
    """NFC, trimmed; inner whitespace runs are kept (they can be meaningful)."""
    return unicodedata.normalize("NFC", value).strip()


def normalize_value(value: Any) -> Any:
    """Return the canonical form of one field value (see module docstring)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return normalize_decimal(value)
    if isinstance(value, int):
        return normalize_decimal(Decimal(value))
    if isinstance(value, float):
        return normalize_decimal(Decimal(repr(value)))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        s = normalize_string(value)
        return s if s != "" else None
    if isinstance(value, dict):
        # Filter after normalizing: a value that normalizes to None (" ") is dropped on the
        # first pass already, which keeps the function idempotent.
        return normalize_fields({str(k): v for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))})
    if isinstance(value, (list, tuple)):
        return [normalize_value(v) for v in value]
    return value


def normalize_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Normalize a record; keys whose value normalizes to ``None`` are dropped (None ≡ missing)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        norm = normalize_value(value)
        if norm is not None:
            out[key] = norm
    return out


def parse_decimal(value: Any) -> Decimal | None:
    """Parse a number that may arrive as a JSON number or a decimal string; never via float."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        return Decimal(str(value).strip().replace(",", ".")) if isinstance(value, str) else Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"cannot hash {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Stable JSON text of normalized data (sorted keys, decimals as strings)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def content_hash(value: Any) -> str:
    """Short stable hash of normalized data: change means content, not timestamps."""
    return hashlib.blake2b(canonical_json(value).encode(), digest_size=16).hexdigest()
