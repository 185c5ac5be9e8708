"""Wire formats of the SmartKasa sandbox: Ruby-like decimals, timestamps, the error shapes, type coercion.

Error shapes (smartkasa.md §4): A ``{"errors":{field:[{"error":code}]}}``, B/B′ batch,
C ``{"errors":"<string>"}`` for a value of the wrong JSON type, D ``{"message":"Unauthorized"}``.
Handlers raise :class:`ApiError`; the app turns it into a response, so malformed input never reaches
FastAPI's own 422 or a 500.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from starlette.responses import Response

MESSAGES = {
    "blank": "Не може бути пустим",
    "invalid": "Має неприпустиме значення",
    "taken": "Вже використовується",
}


class ApiError(Exception):
    """An HTTP error answer in one of the platform's shapes."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def unauthorized() -> ApiError:
    return ApiError(401, {"message": "Unauthorized"})


def field_error(field: str, code: str = "invalid", status: int = 422) -> ApiError:
    return ApiError(status, {"errors": {field: [{"error": code}]}})


class Errors:
    """Accumulates shape-A errors the way a Rails model does (all fields, then one answer)."""

    def __init__(self) -> None:
        self.items: dict[str, list[dict[str, str]]] = {}

    def add(self, field: str, code: str) -> None:
        self.items.setdefault(field, []).append({"error": code})

    def __bool__(self) -> bool:
        return bool(self.items)

    def messages(self) -> str:
        """Shape-B text: ``"title: Не може бути пустим"`` (several joined with ", ")."""
        return ", ".join(
            f"{f}: {MESSAGES.get(e['error'], e['error'])}" for f, es in self.items.items() for e in es
        )

    def raise_if_any(self) -> None:
        if self.items:
            raise ApiError(422, {"errors": self.items})


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json", headers=headers)


def ok(data: Any, meta: dict[str, Any] | None = None, status: int = 200) -> Response:
    return json_response({"data": data, "meta": meta if meta is not None else {}}, status)


# --- numbers ----------------------------------------------------------------------------

MONEY = Decimal("0.01")
QTY = Decimal("0.001")


def ruby_decimal(value: Decimal | None) -> str | None:
    """BigDecimal#to_s('F') as Rails renders it: ``"100.0"``, ``"71.89"``, ``"0.99"``."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    if "." not in text:
        return text + ".0"
    return text


def json_number(value: Decimal | None) -> int | float | None:
    """Z-report style number: integral values as ints (``0``), others as floats (``12276.25``)."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def quantize(value: Decimal, step: Decimal = MONEY) -> Decimal:
    return value.quantize(step, rounding=ROUND_HALF_UP)


# --- time -------------------------------------------------------------------------------

_TZ_CACHE: dict[int, dt.timezone] = {}


def tz(offset_minutes: int) -> dt.timezone:
    zone = _TZ_CACHE.get(offset_minutes)
    if zone is None:
        zone = _TZ_CACHE[offset_minutes] = dt.timezone(dt.timedelta(minutes=offset_minutes))
    return zone


def ts(epoch: float | None, offset_minutes: int) -> str | None:
    """``2021-03-22T13:51:48.382+02:00``: milliseconds and an explicit offset (``+00:00`` too)."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, tz(offset_minutes)).isoformat(timespec="milliseconds")


def date_ts(value: dt.date | None) -> str | None:
    """Dates come back as midnight UTC: ``"1980-01-01"`` → ``"1980-01-01T00:00:00.000+00:00"``."""
    if value is None:
        return None
    return f"{value.isoformat()}T00:00:00.000+00:00"


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_bound(text: str, *, end: bool, default_offset: int) -> float:
    """A ``date_start``/``date_end`` value → epoch. A bare date covers the whole day (inclusive);
    a timestamp without an offset is read in the tenant's offset. Raises ValueError."""
    text = text.strip()
    if _DATE_ONLY.match(text):
        day = dt.date.fromisoformat(text)
        moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min, tz(default_offset))
        return moment.timestamp()
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz(default_offset))
    return moment.timestamp()


# --- type coercion (shape C) ------------------------------------------------------------


def _ruby_class(value: Any) -> str:
    if value is None:
        return "NilClass"
    if isinstance(value, bool):
        return "TrueClass" if value else "FalseClass"
    return {int: "Integer", float: "Float", str: "String", dict: "Hash", list: "Array"}.get(
        type(value), "Object"
    )


def _inspect(value: Any) -> str:
    if value is None:
        return "nil"
    return json.dumps(value, ensure_ascii=False, default=str)


class CoercionError(ValueError):
    def __init__(self, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason


def type_error(form: str, field: str, exc: CoercionError) -> ApiError:
    """Shape C: ``[Pos::TerminalForm.new] "wrong" (String) has invalid type for :shop_id violates …``."""
    value = exc.value
    text = (
        f"[{form}.new] {_inspect(value)} ({_ruby_class(value)}) has invalid type for :{field} "
        f"violates constraints ({exc.reason} failed)"
    )
    return ApiError(422, {"errors": text})


def to_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CoercionError(value, f"invalid value for Float(): {_inspect(value)}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise CoercionError(value, f"invalid value for Float(): {_inspect(value)}") from None
    if not number.is_finite():
        raise CoercionError(value, f"invalid value for Float(): {_inspect(value)}")
    return number


def to_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    raise CoercionError(value, f"invalid value for Integer(): {_inspect(value)}")


def to_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise CoercionError(value, f"type?(String, {_inspect(value)})")


def to_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if value in ("true", "1", 1):
        return True
    if value in ("false", "0", 0):
        return False
    raise CoercionError(value, f"type?(Bool, {_inspect(value)})")


def to_dict(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise CoercionError(value, f"type?(Hash, {_inspect(value)})")


def to_list(value: Any) -> list[Any] | None:
    if value is None or isinstance(value, list):
        return value
    raise CoercionError(value, f"type?(Array, {_inspect(value)})")


def to_date(value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise CoercionError(value, f"invalid value for Date(): {_inspect(value)}")


Coercer = Callable[[Any], Any]


def coerce(form: str, data: dict[str, Any], spec: dict[str, Coercer]) -> dict[str, Any]:
    """Keep the known attributes (unknown ones are dropped silently, as Rails does), typed."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        conv = spec.get(key)
        if conv is None:
            continue
        try:
            out[key] = conv(value)
        except CoercionError as exc:
            raise type_error(form, key, exc) from None
    return out


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def normalize_phone(value: str | None) -> str | None:
    """Forms store Ukrainian numbers as ``380XXXXXXXXX`` (create/update responses show that form)."""
    if value is None:
        return None
    digits = re.sub(r"\D", "", value)
    if len(digits) == 10 and digits.startswith("0"):
        return "38" + digits
    return digits or value
