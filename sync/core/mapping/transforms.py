"""Field transforms, compiled once per mapping into closures ``row -> normalized value``.

The 1M-row benchmark runs every row through these, so nothing here touches pydantic
or re-reads the spec per row: ``compile_field`` resolves every option up front and
returns one small function. A value that breaks a rule raises ``Invalid`` (the row is
quarantined by the caller). Outputs are already normalized (``sync.core.normalize``):
``Decimal`` numbers, trimmed NFC strings, ISO date strings, ``None`` for empty.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sync.core.normalize import normalize_decimal, normalize_string, normalize_value, parse_decimal

Row = Mapping[str, Any]
FieldFn = Callable[[Row], Any]

# C0 controls except tab/newline/CR, DEL and C1 controls: never valid in platform text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# A lone UTF-16 surrogate (a JSON export's "\udcff", a mis-decoded file) is not Unicode text:
# it cannot be encoded as UTF-8, so no platform request or state-store row could carry it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
EMAIL_RE = _EMAIL  # the ``format: email`` rule (the generated fast path checks it inline)
_TRUE = frozenset({"1", "true", "t", "yes", "y", "s", "sim", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "não", "nao", "off"})


class Invalid(Exception):
    """One value breaks one rule; carries what the quarantine entry needs."""

    def __init__(self, field: str, rule: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {rule}: {message}")
        self.field = field
        self.rule = rule
        self.message = message
        self.value = value


def canon_text(value: Any) -> str | None:
    """Canonical text used to compare ERP values with filter and lookup keys.

    ``1``, ``1.0``, ``"1"`` and ``True`` all give ``"1"`` so a SQL integer, a CSV string
    and a YAML boolean compare equal.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | Decimal):
        return str(normalize_decimal(Decimal(value)))
    if isinstance(value, float):
        return str(normalize_decimal(Decimal(repr(value))))
    text = str(value).strip()
    folded = text.casefold()
    if folded == "true":
        return "1"
    if folded == "false":
        return "0"
    return text


def key_text(value: Any) -> str | None:
    """An ERP key as text (``12`` and ``"12"`` are the same key; ``12.0`` too)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return canon_text(value) or None


# --- type coercion ---------------------------------------------------------------------


def to_text(value: Any) -> str | None:
    if value is None:
        return None
    if value.__class__ is not str:
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, Decimal | int | float):
            value = str(normalize_value(value))
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, bytes):
            raise ValueError("binary value")
        else:
            value = str(value)
    text = value.strip() if value.isascii() else normalize_string(value)
    return text or None


def to_decimal(value: Any, precision: int | None = None) -> Decimal | None:
    number = parse_decimal(value)
    if number is None:
        return None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    if precision is not None:
        number = number.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)
    return normalize_decimal(number)


def to_integer(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return normalize_decimal(Decimal(value))
    number = parse_decimal(value)
    if number is None:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"not an integer: {value!r}")
    return normalize_decimal(number)


def to_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().casefold()
        if text == "":
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_datetime(value: Any, fmt: str | None) -> dt.datetime | dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date):  # datetime is a date too
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    text = value.strip()
    if not text:
        return None
    if fmt is not None:
        return dt.datetime.strptime(text, fmt)
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return dt.date.fromisoformat(text)


def to_date(value: Any, fmt: str | None = None) -> str | None:
    parsed = _parse_datetime(value, fmt)
    if parsed is None:
        return None
    # Interned: dates repeat a lot (admission dates, expiries), one string per distinct day.
    if isinstance(parsed, dt.datetime):
        return sys.intern(parsed.date().isoformat())
    return sys.intern(parsed.isoformat())


def to_datetime(value: Any, fmt: str | None = None) -> str | None:
    parsed = _parse_datetime(value, fmt)
    if parsed is None:
        return None
    if not isinstance(parsed, dt.datetime):
        parsed = dt.datetime(parsed.year, parsed.month, parsed.day)
    result: str = normalize_value(parsed)
    return result


def coercer(type_: str, precision: int | None, date_format: str | None) -> Callable[[Any], Any]:
    """The coercion function for one declared value type."""
    if type_ == "string":
        return to_text
    if type_ == "integer":
        return to_integer
    if type_ == "decimal":
        if precision is None:
            return to_decimal
        return lambda v: to_decimal(v, precision)
    if type_ == "boolean":
        return to_bool
    if type_ == "date":
        return to_date if date_format is None else (lambda v: to_date(v, date_format))
    if type_ == "datetime":
        return to_datetime if date_format is None else (lambda v: to_datetime(v, date_format))
    raise ValueError(f"unknown type {type_!r}")


def has_control_chars(text: str) -> bool:
    return not text.isprintable() and _CONTROL.search(text) is not None


INVALID_TEXT = "contains a lone surrogate (e.g. \\udcff), which is not valid Unicode: fix the text in the ERP"


def has_surrogates(text: str) -> bool:
    """``text`` holds a lone surrogate (cannot be encoded as UTF-8)."""
    return not text.isprintable() and _SURROGATE.search(text) is not None


# --- extraction ------------------------------------------------------------------------


class _TemplateRow(dict[str, Any]):
    """``format_map`` view: missing columns and ``None`` render as empty text."""

    def __missing__(self, key: str) -> str:
        return ""


def template_fn(template: str, names: list[str], extra: Mapping[str, Any] | None = None) -> FieldFn:
    """Render ``template`` over the row; ``None`` when every placeholder is empty."""

    def render(row: Row) -> Any:
        values = _TemplateRow()
        if extra:
            values.update(extra)
        any_value = not names
        for name in names:
            value = row.get(name) if name not in values else values[name]
            text = to_text(value)
            if text is not None:
                any_value = True
                values[name] = text
            else:
                values[name] = ""
        return template.format_map(values) if any_value else None

    return render


def concat_fn(columns: list[str], sep: str) -> FieldFn:
    def join(row: Row) -> Any:
        parts = [t for t in (to_text(row.get(c)) for c in columns) if t is not None]
        return sep.join(parts) if parts else None

    return join


def column_fn(column: str) -> FieldFn:
    def get(row: Row) -> Any:
        return row.get(column)

    return get


# --- field compilation -----------------------------------------------------------------

_CASE: dict[str, Callable[[str], str]] = {"lower": str.lower, "upper": str.upper, "title": str.title}
_CACHE_MAX = 200_000
CACHE_MAX = _CACHE_MAX  # entries per memo before it is cleared (also the fast path's memos)


def _cached(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Memoize a coercion on text input: dates and codes repeat across millions of rows."""
    cache: dict[str, Any] = {}

    def call(value: Any) -> Any:
        if value.__class__ is not str:
            return fn(value)
        try:
            return cache[value]
        except KeyError:
            pass
        result = fn(value)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[value] = result
        return result

    return call


def compile_field(
    name: str,
    *,
    extract: FieldFn,
    column: str | None = None,
    spaces: str = "trim",
    case: str | None = None,
    lookup: Mapping[str, Any] | None = None,
    lookup_default: Any = None,
    has_lookup_default: bool = False,
    default: Any = None,
    has_default: bool = False,
    type_: str = "string",
    precision: int | None = None,
    date_format: str | None = None,
    required: bool = False,
    max_length: int | None = None,
    min_length: int | None = None,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    email: bool = False,
    pattern: str | None = None,
    constant: bool = False,
) -> FieldFn:
    """One closure: extract → trim/case → lookup → default → coerce → validate.

    ``spaces="collapse"`` also folds inner whitespace runs into one space (text is
    always trimmed: that is what normalization does anyway). ``column`` (a plain ``from``
    column) is read inline instead of through ``extract``. ``constant=True`` means
    ``extract`` always returns the same value: it is coerced and validated once here.
    """
    coerce = coercer(type_, precision, date_format)
    if type_ in ("date", "datetime", "decimal", "integer"):
        coerce = _cached(coerce)
    casefn = _CASE[case] if case else None
    collapse = spaces == "collapse"
    regex = re.compile(pattern) if pattern else None
    is_text = type_ == "string"
    text_rules = max_length is not None or min_length is not None or email or regex is not None
    number_rules = minimum is not None or maximum is not None

    def fn(row: Row) -> Any:
        raw = row.get(column) if column is not None else extract(row)
        if raw.__class__ is str:
            raw = " ".join(raw.split()) if collapse else raw.strip()
            if not raw:
                raw = None
            elif casefn is not None:
                raw = casefn(raw)
        if raw is not None and lookup is not None:
            found = lookup.get(canon_text(raw) or "", _MISS)
            if found is _MISS:
                if not has_lookup_default:
                    raise Invalid(name, "unknown_value", "value not in the lookup table", raw)
                found = lookup_default
            raw = found
        if raw is None:
            if not has_default:
                if required:
                    raise Invalid(name, "required", "a value is required", None)
                return None
            raw = default
        if is_text:
            value: Any
            if raw.__class__ is str and raw.isascii():
                value = raw.strip()  # already trimmed unless it came from a lookup or a default
                if not value.isprintable() and _CONTROL.search(value) is not None:
                    raise Invalid(name, "control_chars", "contains NUL or control characters", value)
            else:
                try:
                    value = to_text(raw)
                except ValueError as exc:
                    raise Invalid(name, "type", f"expected {type_}: {exc}", raw) from None
                if value is not None and not value.isprintable():
                    if _CONTROL.search(value) is not None:
                        raise Invalid(name, "control_chars", "contains NUL or control characters", value)
                    if _SURROGATE.search(value) is not None:
                        raise Invalid(name, "invalid_text", INVALID_TEXT, value)
            if not value:
                if required:
                    raise Invalid(name, "required", "a value is required", raw)
                return None
            if text_rules:
                if max_length is not None and len(value) > max_length:
                    raise Invalid(name, "max_length", f"longer than {max_length} characters", value)
                if min_length is not None and len(value) < min_length:
                    raise Invalid(name, "min_length", f"shorter than {min_length} characters", value)
                if email and _EMAIL.match(value) is None:
                    raise Invalid(name, "format", "not a valid e-mail address", value)
                if regex is not None and regex.fullmatch(value) is None:
                    raise Invalid(name, "pattern", f"does not match {pattern}", value)
            return value
        try:
            value = coerce(raw)
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise Invalid(name, "type", f"expected {type_}: {exc}", raw) from None
        if value is None:
            if required:
                raise Invalid(name, "required", "a value is required", raw)
            return None
        if number_rules:
            if minimum is not None and value < minimum:
                raise Invalid(name, "min", f"less than {minimum}", value)
            if maximum is not None and value > maximum:
                raise Invalid(name, "max", f"greater than {maximum}", value)
        return value

    if constant:
        cached = fn({})
        return lambda row: cached
    plain = (
        column is not None
        and is_text
        and not collapse
        and casefn is None
        and lookup is None
        and not has_default
        and not required
        and not text_rules
    )
    if not plain or column is None:
        return fn
    text_column: str = column

    def plain_text(row: Row) -> Any:
        """The commonest field (a text column or a reference, no rules): no calls on ASCII input."""
        raw = row.get(text_column)
        if raw is None:
            return None
        if raw.__class__ is str and raw.isascii():
            raw = raw.strip()
            if not raw:
                return None
            if not raw.isprintable() and _CONTROL.search(raw) is not None:
                raise Invalid(name, "control_chars", "contains NUL or control characters", raw)
            return raw
        return fn(row)

    return plain_text


_MISS = object()


# --- inverse (write-back of pulled fields) ---------------------------------------------


def inverse_fn(
    *,
    type_: str,
    date_format: str | None,
    lookup: Mapping[str, Any] | None,
    lookup_keys: Mapping[str, Any] | None = None,
) -> Callable[[Any], Any]:
    """Platform value → ERP column value for an invertible field.

    Strip and case are not undone (the platform value is the better one); a lookup is
    reversed (``lookup_keys`` maps canonical ERP text back to the key as written);
    decimals stay ``Decimal``; dates are rendered with ``date_format`` when one is set.
    """
    reverse: dict[str, Any] | None = None
    if lookup is not None:
        originals = lookup_keys or {}
        reverse = {canon_text(v) or "": originals.get(k, k) for k, v in lookup.items()}

    def invert(value: Any) -> Any:
        if value is None:
            return None
        if reverse is not None:
            key = canon_text(value) or ""
            if key not in reverse:
                raise Invalid("", "unknown_value", "value not in the lookup table", value)
            return reverse[key]
        if type_ == "decimal":
            return to_decimal(value)
        if type_ == "integer":
            number = to_integer(value)
            return None if number is None else int(number)
        if type_ == "boolean":
            return to_bool(value)
        if type_ in ("date", "datetime"):
            parsed = _parse_datetime(value, None)
            if parsed is None:
                return None
            if date_format is not None:
                return parsed.strftime(date_format)
            return to_date(parsed) if type_ == "date" else to_datetime(parsed)
        return to_text(value)

    return invert


def strip_controls(text: str) -> str:
    """Printable form of a value for quarantine messages (controls shown as ``\\xNN``,
    lone surrogates as ``\\udcff``: the state store must be able to encode it)."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if not text.isprintable():
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text
