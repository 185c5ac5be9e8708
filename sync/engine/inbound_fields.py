"""Per-field checks of inbound records: one bad value fails its record, never the pipeline.

A platform record is read field by field into the typed sink columns (``sync.sinks.base``);
each reader rejects what its column cannot hold with a ``RecordError`` naming the field and
the rule: text that is not valid Unicode (a lone ``\\udcff`` escape), text longer than
``TEXT_LIMIT``, numbers that are not plain numerals, are ambiguous (``"1,000"``), not finite
(a JSON ``1e400`` arrives as ``inf``) or wider than the sink's NUMERIC(20, 6), integers
outside a 32-bit column. The whole payload is checked too, because the sink stores it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sync.core.normalize import check_text, normalize_value, parse_decimal

# NUMERIC(20, 6) in the SQL sink: at most 14 digits before the point.
DEC_INTEGER_DIGITS = 14
# Free text goes into TEXT columns; this only stops a hostile megabyte "device id".
TEXT_LIMIT = 10_000
# A record id is a key: the inbox event id (``evt_<type>_<id>``), the markers and the
# sink's ``remote_id`` hold 255 characters, so the id itself may use 200 of them.
ID_LIMIT = 200
INT_RANGE = (-(2**31), 2**31 - 1)  # INTEGER columns on PostgreSQL


class RecordError(ValueError):
    """One field of one inbound record breaks a rule; the record is held as failed."""

    def __init__(self, field: str, rule: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {rule}: {message}")
        self.field, self.rule, self.message = field, rule, message
        self.value = None if value is None else shown(value)

    def reason(self, stream: str, remote_id: str) -> str:
        """``withdrawals w-1: field deviceId: too_long: ...``: the record, the field and the rule."""
        return f"{stream} {shown(remote_id, 80)}: field {self.field}: {self.rule}: {self.message}"


def shown(value: Any, limit: int = 200) -> str:
    """A value safe to store and print: lone surrogates escaped, long text cut."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def get(record: Any, name: str) -> Any:
    """A field of a dict or of a model object."""
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


class Fields:
    """Reads the fields of one record (``prefix`` names a child: ``items[2].``)."""

    def __init__(self, record: Any, prefix: str = "") -> None:
        self.record = record
        self.prefix = prefix

    def _error(self, name: str, rule: str, message: str, value: Any = None) -> RecordError:
        return RecordError(self.prefix + name, rule, message, value)

    def raw(self, name: str) -> Any:
        return get(self.record, name)

    def text(self, name: str, limit: int = TEXT_LIMIT) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal | float):
            raise self._error(name, "not_text", f"expected text, got {type(value).__name__}", value)
        text = value if isinstance(value, str) else str(value)
        try:
            check_text(text)
        except ValueError as exc:
            raise self._error(name, "invalid_text", str(exc), text) from None
        if len(text) > limit:
            raise self._error(name, "too_long", f"{len(text)} characters, at most {limit} allowed", text)
        return text

    def ident(self, name: str) -> str | None:
        return self.text(name, ID_LIMIT)

    def timestamp(self, name: str) -> str | None:
        """Timestamps stay as sent (ISO text); only whitespace is normalized."""
        text = self.text(name, 64)
        norm = normalize_value(text)
        return None if norm is None else str(norm)

    def decimal(self, name: str) -> Decimal | None:
        value = self.raw(name)
        try:
            return parse_decimal(value, max_integer_digits=DEC_INTEGER_DIGITS)
        except ValueError as exc:
            raise self._error(name, "invalid_number", str(exc), value) from None

    def integer(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                parsed = None if isinstance(value, bool) else parse_decimal(value)
            except ValueError:
                parsed = None
            if parsed is None or parsed != parsed.to_integral_value():
                raise self._error(name, "invalid_integer", "not a whole number", value)
            number = int(parsed)
        if not INT_RANGE[0] <= number <= INT_RANGE[1]:
            raise self._error(name, "out_of_range", "integer outside the 32-bit column range", value)
        return number

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self._error(name, "invalid_boolean", "expected true or false", value)


def record_id(record: Any) -> str:
    """The record's own id, checked: it becomes a key in the inbox, the markers and the sink."""
    rid = Fields(record).ident("id")
    if rid is None:
        raise RecordError("id", "missing_id", "the record has no id")
    return rid


def check_payload(value: Any, path: str = "") -> None:
    """Every string (and key) of the payload is valid text, every number finite.

    The payload is stored next to the columns and hashed, so a lone surrogate in a field
    we do not map would otherwise fail the write of the whole batch."""
    if isinstance(value, str):
        try:
            check_text(value)
        except ValueError as exc:
            raise RecordError(path or "payload", "invalid_text", str(exc), value) from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(path or "payload", "invalid_number", f"not a finite number: {value!r}", value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise RecordError(path or "payload", "invalid_number", f"not a finite number: {value}", value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_payload(str(key), f"{path}.{shown(key, 40)}" if path else shown(key, 40))
            check_payload(item, f"{path}.{shown(key, 40)}" if path else shown(key, 40))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_payload(item, f"{path}[{i}]")


def json_safe(value: Any) -> Any:
    """``value`` storable in a JSON column on every store: non-finite floats become text.

    PostgreSQL's JSON rejects ``Infinity``; a parked record keeps ``"inf"`` instead, which
    the number check rejects again on a replay (the original was not finite either)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
