"""Turn a platform record into a ``Remote`` that compares with ``Desired`` in ERP-key space.

Reference fields arrive as remote ids; the planner compares ERP keys. Translating here,
once per remote record, lets every later comparison be a plain equality. An id with no
binding becomes ``UNBOUND_REF_PREFIX + id``: it never equals a real ERP key, so the
planner sees a difference (and pushes the ERP's reference) instead of a false match.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from sync.core.normalize import canonical_json, normalize_fields, normalize_value
from sync.core.records import UNBOUND_REF_PREFIX, EntityPolicy, Remote

# Server-assigned bookkeeping inside child items (sizes, certificates, cards) that the
# ERP never states; dropped unless ``child_keys`` names what to keep.
SERVER_CHILD_KEYS = frozenset({"id", "created_at", "updated_at", "createdAt", "updatedAt", "owner_id"})


def translate_ref(value: Any, targets: Mapping[str, str]) -> Any:
    """Remote id (or list of ids) → ERP key(s); unbound ids get ``UNBOUND_REF_PREFIX``."""
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple):
        return [translate_ref(v, targets) for v in value]
    rid = str(value)
    erp_key = targets.get(rid)
    return erp_key if erp_key is not None else UNBOUND_REF_PREFIX + rid


def normalize_children(
    items: list[Mapping[str, Any]] | None, keep: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Normalized child items in a canonical order, so collections compare as a whole."""
    if not items:
        return []
    out = []
    for item in items:
        if keep is not None:
            raw = {k: v for k, v in item.items() if k in keep}
        else:
            raw = {k: v for k, v in item.items() if k not in SERVER_CHILD_KEYS}
        out.append(normalize_fields(raw))
    out.sort(key=canonical_json)
    return out


def to_remote(
    policy: EntityPolicy,
    remote_id: str,
    raw_fields: Mapping[str, Any],
    reverse_bindings: Mapping[str, Mapping[str, str]],
    version: str | None = None,
    *,
    child_keys: Mapping[str, Collection[str]] | None = None,
    parsers: Mapping[str, Callable[[Any], Any]] | None = None,
) -> Remote:
    """Build the ``Remote`` for one platform record (only the policy's fields and children).

    ``reverse_bindings`` maps target entity → remote id → ERP key. ``parsers`` turn a
    platform's wire form into the mapped type first (SmartKasa sends prices as ``"100.0"``:
    pass ``sync.core.normalize.parse_decimal``); the mapping knows the field types.
    """
    parse = parsers or {}
    fields: dict[str, Any] = {}
    for name, fp in policy.fields.items():
        if name in policy.children:
            continue
        value = raw_fields.get(name)
        if name in parse and value is not None:
            value = parse[name](value)
        if fp.ref is not None:
            value = translate_ref(value, reverse_bindings.get(fp.ref, {}))
        value = normalize_value(value)
        if value is not None:
            fields[name] = value
    children = {
        name: normalize_children(raw_fields.get(name), (child_keys or {}).get(name))
        for name in policy.children
    }
    return Remote(
        platform=policy.platform,
        entity=policy.entity,
        remote_id=str(remote_id),
        fields=fields,
        children=children,
        version=version,
    )
