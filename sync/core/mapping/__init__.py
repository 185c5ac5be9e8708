"""Mapping engine: YAML mapping files → compiled per-entity mappers (pure, except the loader).

Usage::

    mappings = load_mappings(["mappings/smartepi.yaml"])
    for em in mappings.entities("smartepi"):          # dependency order
        policy = em.policy()                          # EntityPolicy for the planner
        result = em.map_rows(rows, context)           # MapResult(desired, quarantine)
"""

from sync.core.mapping.compiled import EntityMapping
from sync.core.mapping.loader import MappingFileError, load_mapping_texts, load_mappings
from sync.core.mapping.mapset import MappingSet
from sync.core.mapping.reference import self_ref_depths
from sync.core.mapping.results import MapContext, MapResult
from sync.core.mapping.transforms import Invalid

__all__ = [
    "EntityMapping",
    "Invalid",
    "MapContext",
    "MapResult",
    "MappingFileError",
    "MappingSet",
    "load_mapping_texts",
    "load_mappings",
    "self_ref_depths",
]
