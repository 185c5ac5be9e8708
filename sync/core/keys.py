"""Natural keys: how a record that exists remotely without a binding is recognised.

Design §3: SmartEPI org entities and products match by ``name`` (case-insensitive,
trimmed, inner whitespace collapsed); employees by ``identification`` then ``email``;
SmartKasa products by ``number`` (barcode; the server does not enforce uniqueness, so
erpsync does); categories by ``(title, parent)``. A natural key is a tuple of
candidate key strings tried in order; ``None`` entries are skipped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

_WS = re.compile(r"\s+")


def fold(value: Any) -> str | None:
    """Case- and space-insensitive form of a key value; ``None`` when empty."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    if s.isascii():  # fast path, same result: NFKC is the identity and casefold is lower on ASCII
        s = " ".join(s.split()).lower()
    else:
        s = unicodedata.normalize("NFKC", s)
        s = _WS.sub(" ", s).strip().casefold()
    return s or None


def fold_email(value: Any) -> str | None:
    """Folded e-mail without any spaces.

    Removing a space can let a combining mark attach to the previous letter, which NFKC
    then composes differently, so fold again until stable (keeps the function idempotent).
    """
    s = fold(value)
    if s is None:
        return None
    if s.isascii():  # no combining marks: one pass is stable
        return s.replace(" ", "")
    for _ in range(8):
        nxt = fold(s.replace(" ", ""))
        if nxt is None or nxt == s:
            return nxt
        s = nxt
    return s


_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def fold_identification(value: Any) -> str | None:
    """CPF-like identifications compare on their alphanumerics ('123.456.789-00' ≡ '12345678900')."""
    if value.__class__ is str and value.isascii():  # same result: fold only lowers and drops spaces
        alnum = _NOT_ALNUM.sub("", value.lower())
        return alnum or None
    s = fold(value)
    if s is None:
        return None
    alnum = _NOT_ALNUM.sub("", s)
    return alnum or None


_FOLDERS = {"email": fold_email, "identification": fold_identification}

KeyFn = Callable[[Mapping[str, Any]], tuple[tuple[str, str], ...]]


def _candidate(key_field: str) -> Callable[[Mapping[str, Any]], tuple[str, str] | None]:
    if "+" in key_field:
        first_part, *rest_parts = key_field.split("+")

        def composite(fields: Mapping[str, Any]) -> tuple[str, str] | None:
            first = fold(fields.get(first_part))
            if first is None:
                return None
            rest = [fold(fields.get(p)) or "" for p in rest_parts]
            return (key_field, "\x1f".join([first, *rest]))

        return composite
    folder = _FOLDERS.get(key_field, fold)

    def single(fields: Mapping[str, Any]) -> tuple[str, str] | None:
        value = folder(fields.get(key_field))
        return None if value is None else (key_field, value)

    return single


@lru_cache(maxsize=256)
def key_function(key_fields: tuple[str, ...]) -> KeyFn:
    """``key_values`` specialised once for a tuple of key fields (for per-row loops)."""
    candidates = tuple(_candidate(k) for k in key_fields)
    if len(candidates) == 1:
        (only,) = candidates

        def one(fields: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
            found = only(fields)
            return () if found is None else (found,)

        return one

    def many(fields: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        out = []
        for candidate in candidates:
            found = candidate(fields)
            if found is not None:
                out.append(found)
        return tuple(out)

    return many


def key_values(fields: Mapping[str, Any], key_fields: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Candidate natural keys of one record: ``((field, folded value), ...)`` in priority order.

    A composite field written ``"title+parent_id"`` yields one candidate joining both parts
    (``None`` parts become empty, so a root category still has a key).
    """
    return key_function(tuple(key_fields))(fields)


def primary_key(fields: Mapping[str, Any], key_fields: Iterable[str]) -> tuple[str, str] | None:
    """The first candidate natural key, or ``None`` when the record has none (unkeyed)."""
    keys = key_values(fields, key_fields)
    return keys[0] if keys else None


class KeyIndex:
    """Index of records by every candidate natural key, for adopt and collision checks."""

    def __init__(self, key_fields: Iterable[str]) -> None:
        self.key_fields = tuple(key_fields)
        self._index: dict[tuple[str, str], list[str]] = {}

    def add(self, ident: str, fields: Mapping[str, Any]) -> None:
        for key in key_values(fields, self.key_fields):
            self._index.setdefault(key, []).append(ident)

    def find(self, fields: Mapping[str, Any]) -> list[str]:
        """Idents matching the first candidate key that matches anything (priority order)."""
        for key in key_values(fields, self.key_fields):
            found = self._index.get(key)
            if found:
                return list(found)
        return []

    def collisions(self) -> dict[tuple[str, str], list[str]]:
        """Keys shared by more than one record (e.g. names differing only in case)."""
        return {k: v for k, v in self._index.items() if len(v) > 1}
