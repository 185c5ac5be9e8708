"""Request bodies: wrapping style, id types and exact decimals.

- **Body style** (contract §1): ``plain`` sends the OpenAPI form (``{"title": ...}``,
  ``{"products": [...]}``); ``wrapped`` sends the Blueprint form (``{"product": {...}}``,
  ``{"batch": {"products": [...]}}``). Login follows the same switch
  (``{"session": {...}}`` when wrapped).
- **Decimals** are sent as JSON *numbers* with their exact digits (``Decimal("71.89")``
  → ``71.89``): the Blueprint examples send numbers, the OpenAPI schema types
  ``price``/``count`` as ``number`` (strings would fail Prism's validation), and the
  sandbox accepts numbers. The shared request loop serializes with the standard ``json``
  module, so a decimal is handed over as the float whose shortest repr equals it; that is
  exact for up to 15 significant digits, and every value is round-trip checked
  (``exact_number`` refuses, rather than rounds, anything longer).
- **Integer ids**: callers hold every id as an opaque string, but shops, subgroups,
  cards, unit types… are integers on the wire (contract §1.1), so digit-only strings in
  the known integer-id fields are sent as JSON integers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

BodyStyle = Literal["plain", "wrapped"]

INT_ID_FIELDS = frozenset(
    {
        "shop_id",
        "subgroup_id",
        "unit_type_id",
        "color_id",
        "partner_id",
        "terminal_id",
        "tax_group_id",
        "classifier_type_id",
    }
)


def _int_ids(fields: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    for key in INT_ID_FIELDS & out.keys():
        value = out[key]
        if isinstance(value, str) and value.isdigit():
            out[key] = int(value)
    if isinstance(out.get("shop_ids"), list):
        out["shop_ids"] = [int(v) if isinstance(v, str) and v.isdigit() else v for v in out["shop_ids"]]
    return out


def record_body(resource: str, fields: Mapping[str, Any], style: BodyStyle) -> dict[str, Any]:
    """Body of a single-record write (``resource`` is the Blueprint wrapper key)."""
    body = to_wire(_int_ids(fields))
    return {resource: body} if style == "wrapped" else body


def batch_body(collection: str, items: Sequence[Mapping[str, Any]], style: BodyStyle) -> dict[str, Any]:
    """Body of a batch write: ``{"batch": {collection: items}}`` or ``{collection: items}``."""
    payload = {collection: [to_wire(_int_ids(item)) for item in items]}
    return {"batch": payload} if style == "wrapped" else payload


def exact_number(value: Decimal) -> int | float:
    """The JSON number whose text is exactly ``value``'s digits, or ``ValueError``.

    An integral decimal becomes an ``int``; any other becomes the float whose shortest
    repr has the same value (true for every decimal of at most 15 significant digits, which
    covers money and quantities). The round trip is checked, so no value is ever rounded.
    """
    if not value.is_finite():
        raise ValueError("NaN and infinite decimals cannot be sent")
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"decimal {value} has more digits than a JSON number can carry exactly")
    return number


def to_wire(value: Any) -> Any:
    """Deep copy of a request body with every ``Decimal`` turned into an exact JSON number."""
    if isinstance(value, Decimal):
        return exact_number(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinite numbers cannot be sent")
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value
