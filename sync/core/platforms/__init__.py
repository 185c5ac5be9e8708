"""The platform catalogue: what erpsync knows of each platform, as pure data.

Per platform: its entities, their fields (mapping name, wire name, type, required,
references, the directions a mapping may give them), nested collections, natural keys,
the marker field, page size, which entities go in batches, whether the platform accepts
duplicates and whether a create is looked up first. Mapping validation
(``sync.core.mapping.spec``), the planner's cost model, the adapters and the docs read it;
``tests/core/test_platform_catalogue.py`` checks it against the client models and the
sandboxes' schemas, so the three cannot drift apart.

Adding a field or an entity starts here (docs/extending.md).
"""

from __future__ import annotations

from sync.core.platforms.model import ChildDef, EntityDef, FieldDef, PlatformDef, ValueType
from sync.core.platforms.smartepi import SMARTEPI
from sync.core.platforms.smartkasa import SMARTKASA

CATALOGUE: dict[str, PlatformDef] = {p.name: p for p in (SMARTEPI, SMARTKASA)}


def platform(name: str) -> PlatformDef:
    """The catalogue entry of ``name`` (KeyError names the known platforms)."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown platform {name!r} (known: {', '.join(sorted(CATALOGUE))})") from None


__all__ = ["CATALOGUE", "ChildDef", "EntityDef", "FieldDef", "PlatformDef", "ValueType", "platform"]
