"""The set of compiled mappings of a tenant, in dependency order per platform."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sync.core.mapping.compiled import EntityMapping
from sync.core.mapping.results import MapContext, MapResult
from sync.core.mapping.transforms import Row
from sync.core.records import EntityPolicy, Platform
from sync.errors import MappingError


def dependency_levels(refs: Mapping[str, Iterable[str]]) -> tuple[dict[str, int], list[str] | None]:
    """Level per entity (0: references nothing) and the first cycle found, if any.

    Self-references are ignored here: they order records *within* an entity
    (``compiled.self_ref_depths``), not entities.
    """
    levels: dict[str, int] = {}
    visiting: list[str] = []

    def visit(name: str) -> int | list[str]:
        if name in levels:
            return levels[name]
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        visiting.append(name)
        level = 0
        for target in refs.get(name, ()):
            if target == name or target not in refs:
                continue
            sub = visit(target)
            if isinstance(sub, list):
                return sub
            level = max(level, sub + 1)
        visiting.pop()
        levels[name] = level
        return level

    for name in refs:
        found = visit(name)
        if isinstance(found, list):
            return levels, found
    return levels, None


class MappingSet:
    """Compiled mappings for one or both platforms (built by ``loader.load_mappings``)."""

    def __init__(self, entities: Iterable[EntityMapping]) -> None:
        self._by_platform: dict[str, list[EntityMapping]] = {}
        for em in entities:
            self._by_platform.setdefault(em.platform, []).append(em)
        for ems in self._by_platform.values():
            ems.sort(key=lambda em: em.level)  # stable: file order within a level

    def __repr__(self) -> str:
        inner = ", ".join(f"{p}: {[e.entity for e in ems]}" for p, ems in self._by_platform.items())
        return f"MappingSet({inner})"

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(em[0].platform for em in self._by_platform.values() if em)

    def entities(self, platform: Platform) -> list[EntityMapping]:
        """Mapped entities of one platform, parents before the entities that reference them."""
        return list(self._by_platform.get(platform, ()))

    def entity(self, platform: Platform, entity: str) -> EntityMapping:
        for em in self._by_platform.get(platform, ()):
            if em.entity == entity:
                return em
        raise MappingError(f"{platform} entity {entity!r} is not mapped")

    def policies(self, platform: Platform) -> dict[str, EntityPolicy]:
        return {em.entity: em.policy() for em in self.entities(platform)}

    def source_entities(self, platform: Platform) -> list[str]:
        """ERP entities to read for one platform (parents and child sources), in order."""
        out: dict[str, None] = {}
        for em in self.entities(platform):
            out[em.source_entity] = None
            for source, _ in em.child_sources.values():
                out[source] = None
        return list(out)

    def map_rows(
        self, platform: Platform, entity: str, rows: Iterable[Row], context: MapContext | None = None
    ) -> MapResult:
        """Map one entity's ERP rows (see ``EntityMapping.map_rows``)."""
        return self.entity(platform, entity).map_rows(rows, context)

    def map_all(
        self,
        platform: Platform,
        read: Callable[[str], Iterable[Row]],
        context: MapContext | None = None,
        *,
        held: Mapping[str, Mapping[str, str]] | None = None,
    ) -> dict[str, MapResult]:
        """Map every entity of a platform in dependency order from complete ERP reads.

        ``read(source_entity)`` returns that ERP entity's rows. Each result is recorded in
        the context, so later entities see dangling and quarantined references (a caller's
        context gets every entity; our own skips the last one, which nothing reads, and
        drops each entity's grouped child rows once it is mapped). ``held``: rows rejected
        by the platform earlier, per entity (``MapContext.held``).
        """
        ctx = context or MapContext(held=held or {})
        results: dict[str, MapResult] = {}
        ems = self.entities(platform)
        for i, em in enumerate(ems):
            for child, (source, _) in em.child_sources.items():
                ctx.child_rows[child] = em.group_child_rows(child, read(source))
            result = em.map_rows(read(em.source_entity), ctx)
            if context is None:  # our own context: nothing reads it after the last entity
                ctx.child_rows.clear()  # each entity groups its own child rows
                if i < len(ems) - 1:
                    ctx.record(em.entity, result)
            else:
                ctx.record(em.entity, result)
            results[em.entity] = result
        return results
