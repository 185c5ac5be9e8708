"""One value codec, two named encodings of the values JSON cannot carry faithfully.

Records hold ``Decimal``, ``date`` and ``datetime`` values; JSON has none of them. Both
encodings round-trip what erpsync stores, and they differ only where their readers differ:

- **tagged** (saved plan files, ``erpsync plan --out``): ``{"$decimal": "1.5"}``,
  ``{"$date": …}``, ``{"$datetime": …}``; a person reads the file, and ``MASKED`` stands
  for a sensitive value left out of it. A data dict with a ``$``-key is wrapped as
  ``{"$dict": …}`` so it is never read as a tag.
- **compact** (the state store's JSON columns: bases, intents): a decimal is a string
  with a control-character prefix (``"\\x1fd:1.5"``), dates are ISO text. Bases are read
  by the million during a plan, and a flat string decodes with one prefix test, whereas a
  tag dict costs an allocation per value; ``decode_compact_text`` skips the walk
  altogether when the text holds no tag. Content hashes of intents are taken over this
  encoding, so it must not change.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any


class _Masked:
    """A sensitive value left out of a saved plan (``sync.core.plan``)."""

    _instance: _Masked | None = None

    def __new__(cls) -> _Masked:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MASKED"


MASKED = _Masked()
_MASKED_TAG = "$masked"


def is_masked(value: object) -> bool:
    """Whether ``value`` is the ``MASKED`` stand-in (typed ``object``: any field may hold it)."""
    return value is MASKED


# --- tagged -------------------------------------------------------------------------


def encode_tagged(value: Any) -> Any:
    """Tag values JSON cannot carry faithfully: ``{"$decimal": "1.5"}``, ``{"$date": …}``."""
    if value is MASKED:
        return {_MASKED_TAG: True}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dict):
        out = {str(k): encode_tagged(v) for k, v in value.items()}
        return {"$dict": out} if any(k.startswith("$") for k in out) else out
    if isinstance(value, list | tuple):
        return [encode_tagged(v) for v in value]
    return value


def decode_tagged(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, raw),) = value.items()
            if tag == "$decimal":
                return Decimal(raw)
            if tag == "$datetime":
                return dt.datetime.fromisoformat(raw)
            if tag == "$date":
                return dt.date.fromisoformat(raw)
            if tag == "$dict":
                return {k: decode_tagged(v) for k, v in raw.items()}
            if tag == _MASKED_TAG:
                return MASKED
        return {k: decode_tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_tagged(v) for v in value]
    return value


# --- compact ------------------------------------------------------------------------

_DEC = "\x1fd:"
# How the decimal tag's control character can appear in stored JSON text.
_TAG_MARKS = ("\\u001f", "\\u001F", "\x1f")


def encode_compact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _DEC + str(value)
    if isinstance(value, dict):
        return {k: encode_compact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_compact(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def decode_compact(value: Any) -> Any:
    if isinstance(value, str):
        return Decimal(value[len(_DEC) :]) if value.startswith(_DEC) else value
    if isinstance(value, dict):
        return {k: decode_compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_compact(v) for v in value]
    return value


def decode_compact_text(text: str) -> Any:
    """Decode stored JSON text; the tag walk is skipped when no value can carry the tag."""
    data = json.loads(text)
    for mark in _TAG_MARKS:
        if mark in text:
            return decode_compact(data)
    return data
