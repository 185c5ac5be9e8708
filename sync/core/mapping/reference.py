"""The reference row mapper: ERP rows → ``MapResult`` field by field, as plain functions.

``reference_map_rows(mapping, rows, context)`` is the whole of it: ``start_run`` sets up
what one batch accumulates, ``map_row`` maps one row (every field closure, the reference
checks, the natural-key fold, the row hash, and precise quarantine entries), and
``finish_run`` runs the checks that need the whole batch (duplicate ERP keys, natural-key
collisions, self-references). Rows may come from a lazy iterator.

``EntityMapping.map_rows`` runs the loop ``codegen.build_loop`` generates for an entity
(the fast path) inside the same run: the loop maps the valid rows itself and hands every
other row to ``map_row`` before recording anything for it, and ``finish_run`` ends both.
So the two give the same ``MapResult`` (same records, field order and value types, same
quarantine entries): tests/core/test_mapping_reference.py checks it on Hypothesis-generated
mappings and rows, tests/core/test_mapping_fastpath.py on the shipped mappings. Entities
with children always map here. See docs/decisions/0002-generated-mapping-loop.md for why
the fast path exists.

``set_generated_loop(mappings, False)`` (the tenant setting ``generated_mapping_loop: false``)
maps everything through this path: slower, same results; a way out should the generated
loop ever be suspected. ``generated_source`` shows the code the loop runs
(``erpsync config check FILE --show-generated ENTITY``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from sys import intern
from typing import TYPE_CHECKING, Any

from sync.core.keys import key_function
from sync.core.mapping.codegen import NO_CHILDREN
from sync.core.mapping.results import MapContext, MapResult
from sync.core.mapping.transforms import INVALID_TEXT, Invalid, Row, has_surrogates, key_text
from sync.core.records import MAX_KEY_LENGTH, Desired, QuarantineEntry, field_names

if TYPE_CHECKING:
    from sync.core.mapping.compiled import ChildMapping, ChildProblem, EntityMapping
    from sync.core.mapping.mapset import MappingSet

__all__ = [
    "MappingRun",
    "finish_run",
    "generated_source",
    "map_row",
    "reference_map_rows",
    "self_ref_depths",
    "set_generated_loop",
    "start_run",
]

# (field, target entity, ERP keys that mapped fine or None when unchecked, quarantined keys)
RefCheck = tuple[str, str, Collection[str] | None, Collection[str]]


@dataclass(slots=True)
class MappingRun:
    """What mapping one batch of an entity's rows accumulates (the generated loop shares it)."""

    mapping: EntityMapping
    context: MapContext
    refs: list[RefCheck]
    # (child, its rows grouped by parent key when read separately, the embedding column)
    children: list[tuple[ChildMapping, Mapping[str, Sequence[Row]] | None, str]]
    result: MapResult = field(default_factory=MapResult)
    seen: set[str] = field(default_factory=set)  # ERP keys met (mapped or quarantined)
    dup_rows: dict[str, int] = field(default_factory=dict)  # ERP key -> rows that carry it
    # Natural keys are not kept per row (a million tuples of folded strings): only their
    # hashes, and the hashes met twice; ``_drop_collisions`` re-derives the keys of the
    # few records that can collide.
    nat_seen: set[int] = field(default_factory=set)
    nat_twice: set[int] = field(default_factory=set)


def start_run(mapping: EntityMapping, context: MapContext | None = None) -> MappingRun:
    """An empty run of ``mapping`` against ``context`` (what other entities mapped to)."""
    ctx = context or MapContext()
    refs = [
        (name, target, ctx.valid_keys.get(target), ctx.quarantined.get(target) or ())
        for name, target in mapping.outer_refs
    ]
    children = [(c, ctx.child_rows.get(c.name), c.spec.column or c.name) for c in mapping.children]
    return MappingRun(mapping, ctx, refs, children)


def reference_map_rows(
    mapping: EntityMapping, rows: Iterable[Row], context: MapContext | None = None
) -> MapResult:
    """Map ``rows`` field by field (the reference of the generated loop)."""
    run = start_run(mapping, context)
    flt = mapping.filter
    total = filtered = 0
    for row in rows:
        total += 1
        if flt is not None and not flt(row):
            filtered += 1
            continue
        map_row(run, row, total)
    return finish_run(run, total, filtered)


def map_row(run: MappingRun, row: Row, total: int) -> None:
    """Map one (filtered-in) row, the ``total``-th read: a ``Desired`` record, a quarantine
    entry naming the row, field and rule, or both (a record whose child rows are set aside)."""
    em = run.mapping
    quarantine = run.result.quarantine
    key_col = em.erp_key_field
    key = key_text(row.get(key_col))
    if key is None:
        quarantine.append(em.entry("", key_col, "missing_key", f"row {total} has no ERP key", None, ""))
        return
    if key in run.seen:  # every row of the key is quarantined at the end
        run.dup_rows[key] = run.dup_rows.get(key, 1) + 1
        return
    kids: dict[str, list[Row]] = {}
    for child, grouped, column in run.children:
        if child.spec.source is None:
            embedded = row.get(column)
            kids[child.name] = list(embedded) if isinstance(embedded, list) else []
        else:
            kids[child.name] = list(grouped.get(key, ())) if grouped else []
    h = em.row_hash(row, kids)
    entry = _key_problem(em, key, h)
    if entry is None:
        entry = _map_fields(run, row, key, kids, h)
    if entry is not None:
        quarantine.append(entry)
    run.seen.add(key)


def _key_problem(em: EntityMapping, key: str, h: str) -> QuarantineEntry | None:
    """An ERP key erpsync cannot keep (control characters, broken text, too long)."""
    key_col = em.erp_key_field
    if "\x00" in key or not key.isprintable():
        if has_surrogates(key):
            return em.entry(key, key_col, "invalid_text", "ERP key " + INVALID_TEXT, key, h)
        return em.entry(key, key_col, "control_chars", "ERP key has control chars", key, h)
    if len(key) > MAX_KEY_LENGTH:
        msg = f"ERP key is {len(key)} characters long; erpsync keeps keys of up to {MAX_KEY_LENGTH}"
        return em.entry(key, key_col, "key_too_long", msg, key, h)
    return None


def _map_fields(
    run: MappingRun, row: Row, key: str, kids: Mapping[str, list[Row]], h: str
) -> QuarantineEntry | None:
    """Record the row's ``Desired``; a quarantine entry instead (or beside it, for child rows
    set aside) when a field, a reference or the natural key fails."""
    em = run.mapping
    fields: dict[str, Any] = {}
    try:
        for f in em.fields:
            value = f.fn(row)
            if value is not None:
                fields[f.name] = value
    except Invalid:  # every field's problem in one entry
        return em.problems_entry(key, em.field_problems(row), h)
    for name, _target, valid, quarantined in run.refs:
        value = fields.get(name)
        if value is None:
            continue
        if value.__class__ is str:
            # References repeat a few target keys across many rows: share one string.
            fields[name] = value = intern(value)
        if value in quarantined or (valid is not None and value not in valid):
            return _reference_problem(em, key, fields, run.refs, h)
    mapped_children: dict[str, list[dict[str, Any]]] = {}
    set_aside: list[tuple[ChildMapping, ChildProblem]] = []
    for child, _, _ in run.children:
        items, rejected = child.map(kids[child.name])
        mapped_children[child.name] = items
        set_aside.extend((child, p) for p in rejected)
    nk, keyfn = em.natural_key, em.natural_key_fn
    kv: tuple[tuple[str, str], ...] = ()
    if keyfn is not None:
        kv = keyfn(fields)
        if not kv and em.unkeyed_forbidden:
            derived = em.derived_key(row, key)
            if derived is None:
                rule = "unkeyed_employee" if em.entity == "employees" else "unkeyed"
                msg = f"no {' or '.join(nk)} and key derivation is off"
                return em.entry(key, nk[0], rule, msg, None, h)
            fields[derived[0]] = derived[1]
            kv = keyfn(fields)
    for nat in kv:
        nh = hash(nat)
        if nh in run.nat_seen:
            run.nat_twice.add(nh)
        else:
            run.nat_seen.add(nh)
    run.result.desired.append(
        Desired.packed(
            em.platform,
            em.entity,
            key,
            field_names(tuple(fields)),
            tuple(fields.values()),
            mapped_children or NO_CHILDREN,
            bytes.fromhex(h),
        )
    )
    return _child_entry(em, key, set_aside, h) if set_aside else None


def _reference_problem(
    em: EntityMapping, key: str, fields: Mapping[str, Any], refs: Sequence[RefCheck], h: str
) -> QuarantineEntry | None:
    """The first reference of the row whose target is quarantined or absent from the ERP."""
    for name, target, valid, quarantined in refs:
        value = fields.get(name)
        if value is None:
            continue
        if value in quarantined:
            msg = f"references {target} {value!r}, which is quarantined"
            return em.entry(key, name, "reference_quarantined", msg, value, h)
        if valid is not None and value not in valid:
            msg = f"references {target} {value!r}, which is not in the ERP data"
            return em.entry(key, name, "dangling_reference", msg, value, h)
    return None


def _child_entry(
    em: EntityMapping, key: str, set_aside: Sequence[tuple[ChildMapping, ChildProblem]], h: str
) -> QuarantineEntry:
    """One entry for the child rows of ``key`` set aside; the parent itself syncs."""
    first = set_aside[0][1]
    parts = [
        f"{c.name} row {p.row} ({p.field.split('.', 1)[1]}: {p.rule}: {p.message})" for c, p in set_aside[:5]
    ]
    more = f"; and {len(set_aside) - 5} more" if len(set_aside) > 5 else ""
    n = len(set_aside)
    msg = (
        f"{n} child row{'s' if n > 1 else ''} set aside, {em.entity} {key!r} syncs with the others "
        f"(the platform's own entries for those keys are left as they are): {'; '.join(parts)}{more}"
    )
    entry = em.entry(key, first.field, first.rule, msg, first.value, h)
    held = tuple(dict.fromkeys((c.name, c.key, p.key) for c, p in set_aside))
    return replace(entry, set_aside=held)


# --- whole-batch checks -------------------------------------------------------------


def finish_run(run: MappingRun, total: int, filtered: int) -> MapResult:
    """The run's result, once the checks that need the whole batch have run."""
    em, result = run.mapping, run.result
    result.rows, result.filtered = total, filtered
    run.seen.clear()
    run.nat_seen.clear()
    if run.dup_rows:
        _drop_duplicates(em, result, run.dup_rows)
    if em.natural_key and run.nat_twice:
        _drop_collisions(em, result, run.nat_twice)
    if em.self_ref is not None:
        _check_self_refs(em, result, run.context)
    if em.children:  # one entry per row: a parent quarantined later drops its child entry
        whole = {q.erp_key for q in result.quarantine if not q.child_only}
        if whole:
            result.quarantine = [q for q in result.quarantine if not (q.child_only and q.erp_key in whole)]
    return result


def _drop_duplicates(em: EntityMapping, result: MapResult, dup_rows: Mapping[str, int]) -> None:
    """Every row of a duplicated ERP key is quarantined: we cannot tell which one is right."""
    hashes = {d.erp_key: d.erp_hash for d in result.desired if d.erp_key in dup_rows}
    result.quarantine = [q for q in result.quarantine if q.erp_key not in dup_rows]
    for key, count in dup_rows.items():
        msg = f"{count} ERP rows share this key"
        result.quarantine.append(
            em.entry(key, em.erp_key_field, "duplicate_erp_key", msg, key, hashes.get(key, ""))
        )
    result.desired = [d for d in result.desired if d.erp_key not in dup_rows]


def _drop_collisions(em: EntityMapping, result: MapResult, twice: Collection[int]) -> None:
    """Two ERP rows on one platform natural key would both adopt one remote record.

    ``twice``: hashes of the natural keys met more than once while mapping; a key whose
    hash is not among them belongs to one row only.
    """
    keyfn = key_function(em.natural_key)
    owners: dict[tuple[str, str], str] = {}
    clashes: dict[str, tuple[str, str, str]] = {}  # erp key → (other key, field, value)
    for d in result.desired:
        for nat in keyfn(d.fields):
            if hash(nat) not in twice:
                continue
            other = owners.setdefault(nat, d.erp_key)
            if other != d.erp_key:
                clashes.setdefault(d.erp_key, (other, nat[0], nat[1]))
                clashes.setdefault(other, (d.erp_key, nat[0], nat[1]))
    if not clashes:
        return
    kept = []
    for d in result.desired:
        clash = clashes.get(d.erp_key)
        if clash is None:
            kept.append(d)
            continue
        other, key_field, _ = clash
        field_ = key_field.split("+", 1)[0]
        msg = f"same {key_field} as ERP row {other!r} (case and spaces are ignored)"
        result.quarantine.append(
            em.entry(d.erp_key, field_, "natural_key_collision", msg, d.get(field_), d.erp_hash)
        )
    result.desired = kept


def _check_self_refs(em: EntityMapping, result: MapResult, ctx: MapContext) -> None:
    """Parents inside the batch (or known to the context) must exist and not be quarantined."""
    ref, entity = em.self_ref, em.entity
    assert ref is not None
    by_key = {d.erp_key: d for d in result.desired}
    outside = ctx.valid_keys.get(entity, ())
    quarantined = {q.erp_key for q in result.quarantine if not q.child_only}
    quarantined |= set(ctx.quarantined.get(entity, ()))
    held = ctx.held.get(entity)
    if held:  # a parent the platform rejected earlier holds its subtree too
        quarantined |= {d.erp_key for d in result.desired if d.erp_hash and held.get(d.erp_key) == d.erp_hash}
    bad: dict[str, QuarantineEntry] = {}
    changed = True
    while changed:  # a quarantined parent quarantines its whole subtree
        changed = False
        for d in result.desired:
            parent = d.get(ref)
            if parent is None or d.erp_key in bad:
                continue
            entry = None
            if parent in quarantined or parent in bad:
                msg = f"parent {entity} {parent!r} is quarantined"
                entry = em.entry(d.erp_key, ref, "reference_quarantined", msg, parent, d.erp_hash)
            elif parent not in by_key and parent not in outside:
                msg = f"parent {entity} {parent!r} is not in the ERP data"
                entry = em.entry(d.erp_key, ref, "dangling_reference", msg, parent, d.erp_hash)
            if entry is not None:
                bad[d.erp_key] = entry
                changed = True
    for key in _cycle_members(result.desired, ref, bad):
        d = by_key[key]
        msg = f"{entity} parents form a cycle through {d.get(ref)!r}"
        bad[key] = em.entry(key, ref, "reference_cycle", msg, d.get(ref), d.erp_hash)
    if bad:
        result.desired = [d for d in result.desired if d.erp_key not in bad]
        result.quarantine.extend(bad.values())


def _cycle_members(desired: Sequence[Desired], ref: str, bad: Mapping[str, Any]) -> list[str]:
    """Keys whose parent chain never reaches a root (they sit on or below a cycle)."""
    depths = self_ref_depths([d for d in desired if d.erp_key not in bad], ref)
    return [d.erp_key for d in desired if d.erp_key not in bad and d.erp_key not in depths]


def self_ref_depths(desired: Sequence[Desired], ref: str) -> dict[str, int]:
    """Depth of each record in a self-referencing entity (roots 0); records on a cycle are absent.

    The executor creates categories by increasing depth (parents before children, one
    level per batch, smartkasa.md §5.2). A parent outside ``desired`` counts as a root.
    """
    parent_of = {d.erp_key: d.get(ref) for d in desired}
    depth: dict[str, int] = {}
    for start in parent_of:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        base = -1
        while node is not None and node in parent_of and node not in depth:
            if node in on_path:  # cycle
                path = []
                break
            path.append(node)
            on_path.add(node)
            node = parent_of[node]
        else:
            base = depth[node] if node is not None and node in depth else -1
        for i, key in enumerate(reversed(path)):
            depth[key] = base + 1 + i
    return depth


# --- the switch and the generated source ----------------------------------------------


def set_generated_loop(mappings: MappingSet, enabled: bool) -> None:
    """Turn the generated fast loop on or off for every entity of ``mappings``."""
    for platform in mappings.platforms:
        for em in mappings.entities(platform):
            em.fastpath = enabled


def generated_source(mapping: EntityMapping) -> str | None:
    """The Python source of ``mapping``'s generated loop; None for an entity that has none
    (an entity with children always maps through the reference path)."""
    built = mapping.generated_loop(force=True)
    return None if built is None else built[1]
