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
from collections.abc import Iterable, Mapping
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
    for _ in range(8):
        if s is None:
            return None
        nxt = fold(s.replace(" ", ""))
        if nxt == s:
            return s
        s = nxt
    return s


def fold_identification(value: Any) -> str | None:
    """CPF-like identifications compare on their alphanumerics ('123.456.789-00' ≡ '12345678900')."""
    s = fold(value)
    if s is None:
        return None
    alnum = re.sub(r"[^0-9a-z]", "", s)
    return alnum or None


_FOLDERS = {"email": fold_email, "identification": fold_identification}


def key_values(fields: Mapping[str, Any], key_fields: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Candidate natural keys of one record: ``((field, folded value), ...)`` in priority order.

    A composite field written ``"title+parent_id"`` yields one candidate joining both parts
    (``None`` parts become empty, so a root category still has a key).
    """
    out: list[tuple[str, str]] = []
    for key_field in key_fields:
        if "+" in key_field:
            parts = key_field.split("+")
            first = fold(fields.get(parts[0]))
            if first is None:
                continue
            rest = [fold(fields.get(p)) or "" for p in parts[1:]]
            out.append((key_field, "\x1f".join([first, *rest])))
            continue
        folder = _FOLDERS.get(key_field, fold)
        value = folder(fields.get(key_field))
        if value is not None:
            out.append((key_field, value))
    return tuple(out)


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
