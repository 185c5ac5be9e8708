"""The reference row mapper, the switch for the generated fast loop, and its source.

``EntityMapping.map_rows`` runs the loop ``codegen.build_loop`` generates for an entity (the
fast path) and hands every row it does not decide itself to the per-field path. The
per-field path alone is the reference: ``reference_map_rows`` runs it for every row, with no
generated code. The two give the same ``MapResult`` (same records, field order and value
types, same quarantine entries): tests/core/test_mapping_reference.py checks it on
Hypothesis-generated mappings and rows, tests/core/test_mapping_fastpath.py on the shipped
mappings. See docs/decisions/0002-generated-mapping-loop.md for why the fast path exists.

``set_generated_loop(mappings, False)`` (the tenant setting ``generated_mapping_loop: false``)
maps everything through the reference path: slower, same results; a way out should the
generated loop ever be suspected. ``generated_source`` shows the code the loop runs
(``erpsync config check FILE --show-generated ENTITY``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sync.core.mapping.compiled import EntityMapping, MapContext, MapResult
from sync.core.mapping.mapset import MappingSet
from sync.core.mapping.transforms import Row

__all__ = ["generated_source", "reference_map_rows", "set_generated_loop"]


def reference_map_rows(
    mapping: EntityMapping, rows: Iterable[Row], context: MapContext | None = None
) -> MapResult:
    """``mapping``'s rows through the per-field path only (the reference of the fast path)."""
    return mapping.map_rows(rows, context, fast=False)


def set_generated_loop(mappings: MappingSet, enabled: bool) -> None:
    """Turn the generated fast loop on or off for every entity of ``mappings``."""
    for platform in mappings.platforms:
        for em in mappings.entities(platform):
            em.fastpath = enabled


def generated_source(mapping: EntityMapping) -> str | None:
    """The Python source of ``mapping``'s generated loop; None for an entity that has none
    (an entity with children always maps through the per-field path)."""
    if mapping.children:
        return None
    enabled = mapping.fastpath
    mapping.fastpath = True  # the loop the entity would run (built once, then kept)
    try:
        built = mapping._fast_loop()
    finally:
        mapping.fastpath = enabled
    return None if built is None else built[1]
