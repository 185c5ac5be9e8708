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
import re
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


# Numbers with more integer digits than this are rejected as out of range: beyond the
# default decimal context's 28 digits no column or platform we write holds them exactly.
MAX_INTEGER_DIGITS = 28


# A plain decimal numeral: digits with an optional point and exponent, nothing else
# (no spaces, no grouping, no "NaN"/"Infinity", which ``Decimal`` would otherwise accept).
def _show(value: Any) -> str:
    """A short ``repr`` for messages: a hostile value can be megabytes long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_NUMERAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _numeral(text: str, original: Any) -> str:
    """``text`` as a numeral with a decimal point; a single decimal comma is accepted.

    ``"12,5"`` is a decimal comma (common in the ERPs and tills we serve), but a comma
    followed by exactly three digits (``"1,000"``) could be a thousands separator as well,
    and a comma next to a point (``"1,234.5"``) is a grouped number in some locale: both are
    ambiguous, so they are rejected instead of being guessed (``"1,000"`` is not 1).
    """
    if "," in text:
        head, _, tail = text.partition(",")
        if "," in tail or "." in text:
            raise ValueError(f"ambiguous number (thousands separator?): {_show(original)}")
        digits = tail.split("e")[0].split("E")[0]
        if len(digits) == 3 and digits.isascii() and digits.isdigit():
            raise ValueError(
                f"ambiguous number: {_show(original)} could be a thousands separator or a decimal comma"
            )
        text = f"{head}.{tail}"
    if not _NUMERAL.fullmatch(text):
        raise ValueError(f"not a number: {_show(original)}")
    return text


def parse_decimal(value: Any, *, max_integer_digits: int = MAX_INTEGER_DIGITS) -> Decimal | None:
    """Parse a number that may arrive as a JSON number or a decimal string; never via float.

    Rejected (``ValueError``): booleans, text that is not a plain numeral (``"abc"``,
    ``"1 000"``, ``"NaN"``), ambiguous separators (``"1,000"``), non-finite values (a JSON
    ``1e400`` reaches us as ``inf``) and values with more than ``max_integer_digits``
    digits before the point (callers pass the width of the column they write).
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {_show(value)}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.lstrip("+-").lower() in ("inf", "infinity", "nan", "snan"):
            raise ValueError(f"not a finite number: {_show(value)}")
        try:
            number = Decimal(_numeral(text, value))
        except InvalidOperation as exc:
            raise ValueError(f"not a number: {_show(value)}") from exc
    else:
        raise ValueError(f"not a number: {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"not a finite number: {_show(value)}")
    if number != 0 and number.adjusted() >= max_integer_digits:
        raise ValueError(f"number out of range (more than {max_integer_digits} digits before the point)")
    return number


_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def check_text(value: str) -> str:
    """``value`` if it can be stored as text anywhere; ``ValueError`` for a lone UTF-16
    surrogate (a ``\\udcff`` JSON escape: not encodable as UTF-8) or a NUL character
    (PostgreSQL text cannot hold it)."""
    bad = _BAD_TEXT.search(value)
    if bad is None:
        return value
    char = bad.group()
    what = (
        "a NUL character"
        if char == "\x00"
        else f"a lone surrogate {char.encode('utf-8', 'backslashreplace').decode()}"
    )
    raise ValueError(f"text contains {what} at position {bad.start()}: not valid Unicode text")


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
