"""Tryton's JSON-RPC value codec (field guide §3.1; trytond.protocols.jsonrpc).

Tryton sends dates, datetimes, times, timedeltas, Decimals and bytes as tagged objects::

    {"__class__": "date", "year": 2019, "month": 4, "day": 6}
    {"__class__": "datetime", "year": …, "microsecond": 867349}      # naive, UTC
    {"__class__": "Decimal", "decimal": "33.2134"}
    {"__class__": "bytes", "base64": "…"}
    {"__class__": "timedelta", "seconds": 90.0}
    {"__class__": "time", "hour": …, "microsecond": …}

``encode`` turns Python values into that plain JSON (so any JSON serialiser can send it);
``decode`` turns a parsed answer back. Aware datetimes are converted to UTC and sent
naive (Tryton stores naive UTC); decoded datetimes are naive, as Tryton means them (UTC).
An unknown ``__class__`` is left as the dict it is.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def _datetime(value: dt.datetime) -> dict[str, Any]:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return {
        "__class__": "datetime",
        "year": value.year,
        "month": value.month,
        "day": value.day,
        "hour": value.hour,
        "minute": value.minute,
        "second": value.second,
        "microsecond": value.microsecond,
    }


def encode(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with Tryton's tagged objects for the special types."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode(v) for v in value]
    if isinstance(value, dt.datetime):  # before date: a datetime is a date
        return _datetime(value)
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"Tryton cannot store the Decimal {value}")
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__class__": "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            raise ValueError("Tryton times are naive: drop the time zone first")
        return {
            "__class__": "time",
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    raise TypeError(f"cannot send a {type(value).__name__} to Tryton")


def _tagged(obj: dict[str, Any]) -> Any:
    tag = obj.get("__class__")
    try:
        if tag == "datetime":
            return dt.datetime(
                obj["year"],
                obj["month"],
                obj["day"],
                obj.get("hour", 0),
                obj.get("minute", 0),
                obj.get("second", 0),
                obj.get("microsecond", 0),
            )
        if tag == "date":
            return dt.date(obj["year"], obj["month"], obj["day"])
        if tag == "Decimal":
            return Decimal(str(obj["decimal"]))
        if tag == "bytes":
            return base64.b64decode(obj["base64"])
        if tag == "timedelta":
            return dt.timedelta(seconds=obj["seconds"])
        if tag == "time":
            return dt.time(obj["hour"], obj["minute"], obj.get("second", 0), obj.get("microsecond", 0))
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return obj  # a malformed tag stays visible as data rather than crashing the read
    return obj


def decode(value: Any) -> Any:
    """``value`` (parsed JSON) with Tryton's tagged objects turned into Python values."""
    if isinstance(value, dict):
        if "__class__" in value:
            return _tagged(value)
        return {k: decode(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) if isinstance(v, dict | list) else v for v in value]
    return value
