"""The lookup tables mapping validation and the planner read, derived from the catalogue."""

from __future__ import annotations

from collections.abc import Mapping

from sync.core.platforms import CATALOGUE
from sync.core.platforms.model import ValueType


def known_fields() -> dict[str, dict[str, frozenset[str]]]:
    """Per platform, per writable entity: the field names a mapping may map."""
    return {p.name: {e.name: e.field_names() for e in p.writable()} for p in CATALOGUE.values()}


def known_children() -> dict[tuple[str, str], dict[str, frozenset[str]]]:
    return {
        (p.name, e.name): {c.name: c.field_names() for c in e.children}
        for p in CATALOGUE.values()
        for e in p.writable()
        if e.children
    }


def field_types() -> dict[tuple[str, str], dict[str, ValueType]]:
    """Non-text field types per ``(platform, entity)`` and ``(platform, "entity.child")``."""
    out: dict[tuple[str, str], dict[str, ValueType]] = {}
    for p in CATALOGUE.values():
        for e in p.writable():
            own: dict[str, ValueType] = {f.name: f.type for f in e.fields if f.type != "string"}
            if own:
                out[(p.name, e.name)] = own
            for c in e.children:
                kids: dict[str, ValueType] = {f.name: f.type for f in c.fields if f.type != "string"}
                if kids:
                    out[(p.name, f"{e.name}.{c.name}")] = kids
    return out


def known_refs() -> dict[tuple[str, str], dict[str, str]]:
    out: dict[tuple[str, str], dict[str, str]] = {}
    for p in CATALOGUE.values():
        for e in p.writable():
            refs = {f.name: f.ref for f in e.fields if f.ref is not None}
            if refs:
                out[(p.name, e.name)] = refs
    return out


def natural_keys() -> dict[tuple[str, str], tuple[str, ...]]:
    return {
        (p.name, e.name): e.natural_key
        for p in CATALOGUE.values()
        for e in p.writable()
        if e.natural_key is not None
    }


def markers() -> dict[tuple[str, str], str]:
    return {(p.name, e.name): e.marker for p in CATALOGUE.values() for e in p.writable() if e.marker}


def page_sizes() -> dict[str, int]:
    return {p.name: p.page_size for p in CATALOGUE.values()}


def batch_entities() -> Mapping[str, frozenset[str]]:
    return {p.name: p.batch_entities() for p in CATALOGUE.values() if p.batch_entities()}


def accepts_duplicates() -> frozenset[str]:
    return frozenset(p.name for p in CATALOGUE.values() if p.accepts_duplicates)


def lookup_before_create() -> frozenset[str]:
    return frozenset(p.name for p in CATALOGUE.values() if p.lookup_before_create)
