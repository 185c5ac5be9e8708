"""Pure helpers for batch creates: chunking and mapping returned ids back to inputs.

The contract does not promise that a batch answer lists ids in input order (§5.4, §8),
nor that it has one entry per input. When the order or count is in doubt the client
reads the created records back and matches them to inputs by natural key: products by
``(number, title)`` then ``number`` alone; categories by ``(title, parent_id)`` then
``title``. Matching is positional first (the probable order), then by key in input order,
so identical inputs (same number and title) map deterministically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from sync.core.keys import fold

T = TypeVar("T")
KeyFn = Callable[[Mapping[str, Any]], Hashable | None]


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _ref(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def product_number_title(rec: Mapping[str, Any]) -> Hashable | None:
    number = fold(rec.get("number"))
    return None if number is None else (number, fold(rec.get("title")))


def product_number(rec: Mapping[str, Any]) -> Hashable | None:
    return fold(rec.get("number"))


def category_title_parent(rec: Mapping[str, Any]) -> Hashable | None:
    title = fold(rec.get("title"))
    return None if title is None else (title, _ref(rec.get("parent_id")))


def category_title(rec: Mapping[str, Any]) -> Hashable | None:
    return fold(rec.get("title"))


def field_key(name: str) -> KeyFn:
    """Match on one field as sent, exactly (trimmed): the marker erpsync stamps on creates."""

    def key(rec: Mapping[str, Any]) -> Hashable | None:
        value = rec.get(name)
        text = None if value is None else str(value).strip()
        return text or None

    return key


def product_title(rec: Mapping[str, Any]) -> Hashable | None:
    """Last resort for products without a barcode or marker: unique titles still tell them apart."""
    return fold(rec.get("title"))


product_title.unique_only = True  # type: ignore[attr-defined]


PRODUCT_KEYS: tuple[KeyFn, ...] = (product_number_title, product_number, product_title)
CATEGORY_KEYS: tuple[KeyFn, ...] = (category_title_parent, category_title)


def match_ids(
    inputs: Sequence[Mapping[str, Any]],
    created: Sequence[tuple[str, Mapping[str, Any]]],
    keys: Sequence[KeyFn],
) -> tuple[list[str | None], list[str]]:
    """Map created ``(id, record)`` pairs to inputs.

    Returns ``(ids, leftovers)``: ``ids[i]`` is the id created for ``inputs[i]`` (``None``
    when no created record matches it) and ``leftovers`` the created ids that match no input.
    """
    ids: list[str | None] = [None] * len(inputs)
    used = [False] * len(created)
    for key in keys:
        shared: set[Hashable] = set()
        if getattr(key, "unique_only", False):  # a weak key: only a value unique on both sides maps
            seen_in = Counter(key(inputs[i]) for i in range(len(inputs)) if ids[i] is None)
            seen_out = Counter(key(created[j][1]) for j in range(len(created)) if not used[j])
            shared = {k for k, n in seen_in.items() if n > 1} | {k for k, n in seen_out.items() if n > 1}
        for i in range(min(len(inputs), len(created))):  # positional first
            if ids[i] is None and not used[i]:
                k = key(inputs[i])
                if k is not None and k not in shared and k == key(created[i][1]):
                    ids[i], used[i] = created[i][0], True
        buckets: dict[Hashable, list[int]] = {}
        for j, (_, rec) in enumerate(created):
            if not used[j]:
                k = key(rec)
                if k is not None:
                    buckets.setdefault(k, []).append(j)
        for i, item in enumerate(inputs):
            if ids[i] is None:
                k = key(item)
                bucket = buckets.get(k) if k is not None and k not in shared else None
                while bucket:
                    j = bucket.pop(0)
                    if not used[j]:
                        ids[i], used[j] = created[j][0], True
                        break
    free_in = [i for i in range(len(inputs)) if ids[i] is None]
    free_out = [j for j in range(len(created)) if not used[j]]
    if len(free_in) == 1 and len(free_out) == 1:  # one of each left: they can only be each other
        ids[free_in[0]], used[free_out[0]] = created[free_out[0]][0], True
    leftovers = [created[j][0] for j in range(len(created)) if not used[j]]
    return ids, leftovers
