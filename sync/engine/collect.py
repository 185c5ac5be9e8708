"""Collect: read the ERP, the bases and (in full mode) the platforms, map and validate,
and hand the planner plain data (``EntityInputs`` per platform entity).

This is the first step of collect → plan → apply. Rows the platform rejected earlier and
unchanged since are held here (quarantined as ``held``) so they are neither planned nor
resent; a changed row is released and planned again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sync.core.mapping import MapContext
from sync.core.planner import EntityInputs
from sync.core.records import Desired, EntityPolicy, QuarantineEntry, Remote
from sync.core.remote_view import to_remote
from sync.engine.adapters.base import PlatformAdapter, RawRemote
from sync.engine.runtime import TenantRuntime
from sync.errors import ErpsyncError, SourceError
from sync.redact import scrub
from sync.state.store import StateStore

Mode = Literal["fast", "full"]


@dataclass
class Collected:
    policies: dict[tuple[str, str], EntityPolicy]
    inputs: dict[tuple[str, str], EntityInputs]
    quarantine: dict[tuple[str, str], list[QuarantineEntry]]
    complete: bool
    erp_hashes: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)


def _entity_keys(result: Any) -> list[str]:
    return [d.erp_key for d in result.desired] + [q.erp_key for q in result.quarantine]


def remote_fields(
    rt: TenantRuntime, policy: EntityPolicy, raw: RawRemote, reverse: Mapping[str, Mapping[str, str]]
) -> Remote:
    child_keys: Mapping[str, Any] | None = None
    try:
        em = rt.mappings.entity(policy.platform, policy.entity)
        child_keys = {name: None for name in em.child_keys}
    except ErpsyncError:
        child_keys = None
    data = {**raw.fields, **raw.children}
    return to_remote(
        policy,
        raw.remote_id,
        data,
        reverse,
        raw.version,
        child_keys={k: v for k, v in (child_keys or {}).items() if v is not None} or None,
    )


@contextlib.contextmanager
def relaxed_gc(threshold: int = 200_000) -> Iterator[None]:
    """Collect the young generation less often while planning: a plan allocates millions of
    small, long-lived records (no cycles), and the default threshold spends ~25% of the
    time scanning them. The previous thresholds are restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(max(threshold, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def collect(
    store: StateStore,
    rt: TenantRuntime,
    adapters: Mapping[str, PlatformAdapter],
    mode: Mode,
    keys: Mapping[str, set[str]] | None = None,
    *,
    for_apply: bool = True,
) -> Collected:
    """Read the ERP (all of it, or only ``keys`` per ERP entity), the bases and, in full
    mode, every remote record; map, validate and hand plain data to the planner."""
    policies = rt.policies()
    inputs: dict[tuple[str, str], EntityInputs] = {}
    quarantine: dict[tuple[str, str], list[QuarantineEntry]] = {}
    complete = keys is None
    hashes: dict[tuple[str, str], dict[str, str]] = {}
    held_apply: dict[tuple[str, str], dict[str, str]] = {}
    wanted_any = None if keys is None else set().union(*keys.values())
    for q in store.quarantined(rt.tenant_id, stage="apply", keys=wanted_any):
        held_apply.setdefault((q.platform, q.entity), {})[q.erp_key] = q.erp_hash
    for platform in rt.platforms():
        # Remote references are translated only when remote records are read (full mode).
        reverse = store.reverse_bindings(rt.tenant_id, platform) if mode == "full" else {}
        # Rows the platform rejected earlier, unchanged since: records referencing one
        # are quarantined (reference_quarantined) at mapping, never planned and deferred.
        held_here = {e: h for (p, e), h in held_apply.items() if p == platform}
        try:
            if keys is None:
                results = rt.mappings.map_all(platform, lambda ent: rt.source.read(ent), held=held_here)
            else:
                results = {}
                ctx = MapContext(held=held_here)
                for em in rt.mappings.entities(platform):
                    wanted = keys.get(em.source_entity)
                    if not wanted:
                        continue
                    for child, (source, _col) in em.child_sources.items():
                        ctx.child_rows[child] = em.group_child_rows(child, rt.source.read(source))
                    results[em.entity] = em.map_rows(
                        rt.source.read_keys(em.source_entity, sorted(wanted), key_field=em.erp_key_field),
                        ctx,
                    )
        except ErpsyncError:
            raise
        except Exception as exc:  # a driver error reading the ERP: transient, named
            raise SourceError(f"reading the ERP for {platform} failed: {scrub(str(exc))}") from exc
        for entity, result in results.items():
            policy = policies.get((platform, entity))
            if policy is None:
                continue
            bases = store.load_bases(
                rt.tenant_id, platform, entity, keys=None if keys is None else _entity_keys(result)
            )
            desired: list[Desired] = result.desired
            held = held_apply.get((platform, entity), {})
            held_entries = list(result.quarantine)
            if held:
                # A platform-rejected row waits until its ERP data changes (or retry-failed).
                keep = []
                for d in desired:
                    if held.get(d.erp_key) == d.erp_hash and d.erp_hash:
                        held_entries.append(
                            QuarantineEntry(
                                platform,
                                entity,
                                d.erp_key,
                                None,
                                "held",
                                "rejected by the platform earlier; unchanged since",
                                stage="apply",
                                erp_hash=d.erp_hash,
                            )
                        )
                    else:
                        keep.append(d)
                        if d.erp_key in held:
                            store.release(rt.tenant_id, platform, entity, d.erp_key, stage="apply")
                desired = keep
            if for_apply:  # only apply quarantines rows (a plan of 1M rows need not hold this)
                hashes[(platform, entity)] = {d.erp_key: d.erp_hash for d in desired}
            if keys is not None:
                wanted_keys = {d.erp_key for d in desired} | {q.erp_key for q in result.quarantine}
                bases = {k: b for k, b in bases.items() if k in wanted_keys}
            remotes: dict[str, Remote] | None = None
            if mode == "full":
                remotes = {}
                async for raw in adapters[platform].list_remote(entity, children=policy.children):
                    r = remote_fields(rt, policy, raw, reverse)
                    remotes[r.remote_id] = r
                if keys is not None:
                    bound = {b.remote_id for b in bases.values()}
                    remotes = {rid: r for rid, r in remotes.items() if rid in bound}
            inputs[(platform, entity)] = EntityInputs(
                desired, bases, remotes, source_complete=complete, quarantine=held_entries
            )
            quarantine[(platform, entity)] = list(result.quarantine)
    return Collected(policies, inputs, quarantine, complete, hashes)


def save_quarantine(store: StateStore, rt: TenantRuntime, col: Collected) -> int:
    """Record the validation quarantine of a collect (replaced whole after a full read)."""
    n = 0
    for (platform, entity), entries in col.quarantine.items():
        if col.complete:
            store.replace_validation_quarantine(rt.tenant_id, platform, entity, entries)
        else:
            inp = col.inputs.get((platform, entity))
            if inp and inp.desired:
                store.release_many(
                    rt.tenant_id, platform, entity, [d.erp_key for d in inp.desired], stage="validate"
                )
            if entries:
                store.quarantine(rt.tenant_id, entries)
        n += len(entries)
    return n
