"""Which ERP entities a tenant's mappings read, and what the service can do with each.

The answers come from the mapping files and the ``erp:`` block only (no database
connection), so ``config check``, ``erpsync notify`` and ``POST /erp/events`` can use
them: an event names an ERP entity a mapping reads, and the watermark poll can see the
edits of an entity only through its change column.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.core.mapping import MappingSet
    from sync.settings import TenantSettings


@dataclass(frozen=True)
class ErpEntity:
    """One ERP entity a mapping reads: as records (``feeds``) or as child rows of ``parents``."""

    name: str
    feeds: tuple[str, ...]  # "platform/entity" fed by its rows
    parents: tuple[str, ...]  # "platform/entity" whose child collections it fills


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


@functools.lru_cache(maxsize=32)
def _load(
    paths: tuple[str, ...], stamps: tuple[float, ...], shops: tuple[tuple[str, int], ...] = ()
) -> MappingSet:
    from sync.core.mapping import load_mappings

    if not shops:
        return load_mappings(paths)
    from sync.engine.shops import shop_fields

    names = {"shops"} | {f.lookup for f in shop_fields(paths) if f.lookup}
    return load_mappings(paths, lookups={name: dict(shops) for name in names})


def _mappings(paths: Sequence[Path], shops: Mapping[str, int] | None = None) -> MappingSet:
    """The mapping set, reloaded when a file changes (the web app lives long); ``shops``: the
    tenant's SmartKasa shop table (``sync.engine.shops.tenant_lookups``)."""
    return _load(
        tuple(str(p) for p in paths), tuple(_stamp(p) for p in paths), tuple(sorted((shops or {}).items()))
    )


def erp_entities(tenant: TenantSettings) -> list[ErpEntity]:
    """ERP entities the tenant's mappings read for its configured platforms, in order.

    Raises the mapping's ``MappingError`` when the files do not load."""
    mappings = _mappings(tenant.mappings, tenant.smartkasa.shops if tenant.smartkasa else None)
    configured = {"smartepi": tenant.smartepi, "smartkasa": tenant.smartkasa}
    feeds: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for platform in mappings.platforms:
        if configured.get(platform) is None:
            continue
        for em in mappings.entities(platform):
            feeds.setdefault(em.source_entity, []).append(f"{platform}/{em.entity}")
            for source, _ in em.child_sources.values():
                parents.setdefault(source, []).append(f"{platform}/{em.entity}")
    names = dict.fromkeys([*feeds, *parents])
    return [ErpEntity(n, tuple(feeds.get(n, ())), tuple(parents.get(n, ()))) for n in names]


def entity_names(tenant: TenantSettings) -> list[str]:
    """Names of the ERP entities a change event may announce (see ``erp_entities``)."""
    return [e.name for e in erp_entities(tenant)]


def unpolled(tenant: TenantSettings) -> list[str]:
    """Mapped ERP entities of a SQL source with no change column (``updated_at``): the
    watermark poll cannot see their edits, only reconciles (and change events) can.

    File sources are not polled at all (the beat polls SQL sources only): none listed."""
    from sync.sources.config import SqlSourceConfig

    erp = tenant.erp
    if not isinstance(erp, SqlSourceConfig):
        return []
    out = []
    for entity in erp_entities(tenant):
        conf = erp.entities.get(entity.name)
        if conf is None or conf.updated_at is None:
            out.append(entity.name)
    return out


@dataclass(frozen=True)
class FlowBack:
    """A mapped entity whose platform edits flow back to the ERP (pull/both fields)."""

    platform: str
    entity: str
    source: str
    fields: tuple[str, ...]


def flows_back(tenant: TenantSettings) -> list[FlowBack]:
    """Mapped entities that take platform edits (``writable``, implied by pull/both fields)."""
    mappings = _mappings(tenant.mappings, tenant.smartkasa.shops if tenant.smartkasa else None)
    configured = {"smartepi": tenant.smartepi, "smartkasa": tenant.smartkasa}
    out = []
    for platform in mappings.platforms:
        if configured.get(platform) is None:
            continue
        for em in mappings.entities(platform):
            back = tuple(n for n, fp in em.policy().fields.items() if fp.direction != "push")
            if em.writable and back:
                out.append(FlowBack(platform, em.entity, em.source_entity, back))
    return out


def writes_back(tenant: TenantSettings, source: str) -> bool:
    """Whether the ERP source lets erpsync write pulled values into ``source``'s rows: a SQL
    table marked ``writable: true`` (queries and file exports cannot be written)."""
    from sync.sources.config import SqlSourceConfig, TrytonSourceConfig

    erp = tenant.erp
    if isinstance(erp, TrytonSourceConfig):
        from sync.sources.tryton import entity_configs

        tconf = entity_configs(erp).get(source)
        return tconf is not None and tconf.writable
    if not isinstance(erp, SqlSourceConfig):
        return False
    conf = erp.entities.get(source)
    return conf is not None and conf.writable and conf.query is None


def refuse_event(tenant: TenantSettings, entity: str) -> tuple[str, list[str]] | None:
    """(why, the known entities) when a change event names an ERP entity no mapping reads,
    else None.

    A child source (stock rows) is known: its keys are the parents' keys (the
    ``parent_key`` column), as the poll sends them. When the mapping files cannot be read
    the event is not refused: the sync it triggers reports the mapping error itself."""
    import difflib

    from sync.errors import ErpsyncError

    try:
        known = entity_names(tenant)
    except ErpsyncError:
        return None
    if entity in known:
        return None
    close = difflib.get_close_matches(entity, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    names = ", ".join(known) or "none"
    return f"unknown ERP entity {entity!r}{hint}; the mappings read: {names}", known
