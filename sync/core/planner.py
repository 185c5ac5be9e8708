"""The planner: desired × base × remote → typed actions (design §3). Pure: no I/O.

Per bound record the diff is three-way and per field: only the ERP changed → push; only
the remote changed → pull (field flows back) or drift (overwrite, reported); both changed
→ conflict resolved by the field's policy. Fast mode (no remote read) trusts the base and
pushes ERP changes only. Unbound ERP rows adopt an unbound remote with the same natural
key, or are created; ambiguous matches are skipped, never guessed. ERP rows that are gone
are ignored/deactivated/deleted per policy, only after a complete read of the source, and
behind a safety valve.

The hot path is "nothing changed": whole normalized dicts are compared before any
per-field work, and nothing is allocated for an unchanged record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from sync.core.keys import KeyIndex, fold, key_values, primary_key
from sync.core.normalize import canonical_json
from sync.core.plan import Action, ActionKind, FieldChange, Plan, PlanMode, count_actions
from sync.core.platforms import tables as _tables
from sync.core.records import Base, Desired, EntityPolicy, FieldPolicy, QuarantineEntry, Remote, SetAside
from sync.errors import PlanError, SafetyValveTripped, utcnow

DEFAULT_PAGE_SIZE: Mapping[str, int] = MappingProxyType(_tables.page_sizes())  # the platform catalogue
# SmartKasa entities with batch create/delete endpoints (contract §5.2, §5.4); the rest go one by one.
DEFAULT_BATCH_ENTITIES: Mapping[str, frozenset[str]] = MappingProxyType(dict(_tables.batch_entities()))

_MISSING: Any = object()


@dataclass(slots=True)
class EntityInputs:
    """What the engine collected for one entity (plain data)."""

    desired: Iterable[Desired]
    bases: Mapping[str, Base]  # by erp_key
    remotes: Mapping[str, Remote] | None = None  # by remote_id; None in fast mode
    source_complete: bool = True
    quarantine: Sequence[QuarantineEntry] = ()  # rows the mapping held back: never inferred as gone


@dataclass(slots=True)
class EntityPlan:
    policy: EntityPolicy
    actions: list[Action]
    fingerprints: dict[str, str]
    desired_count: int = 0
    bound_count: int = 0
    remote_count: int | None = None
    removals: int = 0  # delete + deactivate actions (safety valve)


@dataclass(slots=True)
class _Ctx:
    """Per-entity constants computed once, so the per-record path stays allocation-free."""

    policy: EntityPolicy
    names: tuple[str, ...]
    name_set: frozenset[str]
    default_fp: dict[str, FieldPolicy] = field(default_factory=dict)

    def fp(self, name: str) -> FieldPolicy:
        found = self.policy.fields.get(name)
        if found is None:
            found = self.default_fp.get(name)
            if found is None:
                found = self.default_fp[name] = FieldPolicy(name)
        return found


# --- diff --------------------------------------------------------------------------


def _canon(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Child items in canonical order: collections compare as a whole, order-insensitive."""
    return sorted(items, key=canonical_json) if items else []


def _only(items: list[dict[str, Any]] | None, keep: AbstractSet[str] | None) -> list[dict[str, Any]] | None:
    """Child items reduced to the fields the mapping sets (``keep``; None: whole items).

    A platform returns fields the mapping leaves out (a card's ``counting_enabled``); they
    are not the ERP's to set, so they are never a difference."""
    if not items or not keep:
        return items
    if all(item.keys() <= keep for item in items):
        return items
    return [{k: v for k, v in item.items() if k in keep} for item in items]


def _same_children(
    a: list[dict[str, Any]] | None, b: list[dict[str, Any]] | None, keep: AbstractSet[str] | None = None
) -> bool:
    """Two child collections (normalized values) hold the same entries, in any order,
    compared on the ``keep`` fields when given."""
    if a == b:
        return True
    a, b = _only(a, keep), _only(b, keep)
    return a == b or _canon(a) == _canon(b)


same_children = _same_children  # the executor compares found children with the same rule


def _decide(fp: FieldPolicy, e: Any, bv: Any, rv: Any, writable: bool, same: bool) -> FieldChange | None:
    """Decide one field. ``bv``/``rv`` may be ``_MISSING`` (adopt: no base; fast: no remote).

    The one three-way rule: the executor calls it too (``decide_field``) when a stale write
    re-reads the record, so plan and apply never disagree."""
    name = fp.name
    base = None if bv is _MISSING else bv
    remote = None if rv is _MISSING else rv
    if rv is _MISSING:  # fast mode: ERP against base only
        if same or fp.direction == "pull":
            return None
        return FieldChange(name, base, e, None, e, "push")
    if same:
        return None
    if fp.direction == "pull":  # remote-owned: never pushed
        return FieldChange(name, base, e, remote, remote, "pull") if writable else None
    flows_back = fp.direction == "both" and writable
    if bv is _MISSING:  # adopt: the ERP is the source of truth for what it pushes
        return FieldChange(name, None, e, remote, e, "push")
    erp_changed = e != bv
    remote_changed = rv != bv
    if erp_changed and not remote_changed:
        return FieldChange(name, base, e, remote, e, "push")
    if remote_changed and not erp_changed:
        if flows_back:
            return FieldChange(name, base, e, remote, remote, "pull")
        return FieldChange(name, base, e, remote, e, "drift")
    if fp.conflict == "erp_wins":
        return FieldChange(name, base, e, remote, e, "conflict", "erp_wins")
    if fp.conflict == "remote_wins" and flows_back:
        return FieldChange(name, base, e, remote, remote, "conflict", "remote_wins")
    # "report", or remote_wins on a field the ERP cannot take back: nothing is written.
    return FieldChange(name, base, e, remote, remote, "conflict", "report")


MISSING = _MISSING  # "no base" / "no remote" for ``decide_field``


def decide_field(fp: FieldPolicy, erp: Any, base: Any, remote: Any, *, writable: bool) -> FieldChange | None:
    """One field's three-way decision on normalized values (``MISSING`` for an absent side)."""
    same = erp == (base if remote is _MISSING else remote)
    return _decide(fp, erp, base, remote, writable, same)


def _diff(
    ctx: _Ctx,
    d: Desired,
    b: Base | None,
    r: Remote | None,
) -> tuple[
    list[FieldChange], dict[str, Any], dict[str, list[dict[str, Any]]], dict[str, Any], dict[str, Any]
]:
    """Field and child diff of one record → (changes, payload, children, agreed, agreed_children)."""
    policy = ctx.policy
    writable = policy.writable
    df, bf = d.fields, (b.fields if b is not None else None)
    rf = r.fields if r is not None else None
    changes: list[FieldChange] = []
    payload: dict[str, Any] = {}
    agreed: dict[str, Any] = {}
    names: Iterable[str] = ctx.names
    if not df.keys() <= ctx.name_set:
        names = (*ctx.names, *sorted(df.keys() - ctx.name_set))
    for name in names:
        fp = ctx.fp(name)
        e = df.get(name)
        bv = _MISSING if bf is None else bf.get(name)
        rv = _MISSING if rf is None else rf.get(name)
        same = e == (bv if rf is None else rv)
        change = _decide(fp, e, bv, rv, writable, same)
        if change is None:
            kept = e if same else _kept(bv, rv)
        else:
            changes.append(change)
            if change.kind != "pull" and change.resolution not in ("report", "remote_wins"):
                payload[name] = change.new
            kept = change.new if change.resolution != "report" else (None if bv is _MISSING else bv)
        if kept is not None:
            agreed[name] = kept
    children: dict[str, list[dict[str, Any]]] = {}
    agreed_children: dict[str, list[dict[str, Any]]] = {}
    for name in policy.children:
        fp = ctx.fp(name)
        keep = policy.child_fields.get(name)  # unmapped child fields are never drift
        e = _canon(_only(d.children.get(name), keep))
        bv = _MISSING if b is None else _canon(_only(b.children.get(name), keep))
        rv = _MISSING if r is None else _canon(_only(r.children.get(name), keep))
        same = e == (bv if r is None else rv)
        change = _decide(fp, e, bv, rv, writable, same)
        if change is None:
            kept = e if same else _kept(bv, rv)
        else:
            changes.append(change)
            if change.kind != "pull" and change.resolution not in ("report", "remote_wins"):
                children[name] = change.new
            kept = change.new if change.resolution != "report" else (None if bv is _MISSING else bv)
        agreed_children[name] = kept or []
    return changes, payload, children, agreed, agreed_children


def keep_set_aside(d: Desired, have: Mapping[str, list[dict[str, Any]]], held: Sequence[SetAside]) -> Desired:
    """``d`` with the platform's entries for child rows the mapping set aside (``have``: the
    remote's children, or the base's in fast mode).

    A child row set aside is not gone from the ERP, so the platform's entry with its key
    stays as it is: never a delete, never drift. When the rejected row's key could not be
    read (a size without a name), no entry of that collection missing from the ERP is
    removed until the row is fixed: erpsync cannot tell which one the row meant.
    """
    children = dict(d.children)
    for name, key, ident in held:
        mine = children.get(name) or []
        present = {tuple(fold(item.get(k)) for k in key) for item in mine}
        extra = []
        for item in have.get(name) or ():
            found = tuple(fold(item.get(k)) for k in key)
            if found not in present and (ident is None or found == ident):
                extra.append(item)
                present.add(found)
        if extra:
            children[name] = [*mine, *extra]
    if children == d.children:
        return d
    return Desired(d.platform, d.entity, d.erp_key, d.fields, children, d.erp_hash)


def _kept(bv: Any, rv: Any) -> Any:
    """Value kept as base when a difference is deliberately left alone."""
    if rv is not _MISSING:
        return rv  # remote-owned field the ERP cannot take: the remote value stands
    return None if bv is _MISSING else bv


def _push_fields(ctx: _Ctx, d: Desired) -> dict[str, Any]:
    """Everything a create sends: all desired fields except remote-owned (pull) ones."""
    fields = ctx.policy.fields
    return {k: v for k, v in d.fields.items() if (k not in fields or fields[k].direction != "pull")}


def _push_children(ctx: _Ctx, d: Desired) -> dict[str, list[dict[str, Any]]]:
    fields = ctx.policy.fields
    return {
        name: d.children.get(name) or []
        for name in ctx.policy.children
        if name not in fields or fields[name].direction != "pull"
    }


def _action_from_diff(ctx: _Ctx, d: Desired, b: Base | None, r: Remote | None) -> Action | None:
    changes, payload, children, agreed, agreed_children = _diff(ctx, d, b, r)
    if not changes:
        return None
    policy = ctx.policy
    blocked = [c.field for c in changes if c.kind == "conflict" and c.resolution == "report"]
    kind: ActionKind
    if blocked:
        kind = "conflict"
        reason = "conflict left for review: " + ", ".join(blocked)
    elif payload or children:
        kind = "update"
        reason = "changed: " + ", ".join(c.field for c in changes)
    else:
        kind = "pull"
        reason = "changed on the platform, flows back: " + ", ".join(c.field for c in changes)
    return Action(
        kind=kind,
        platform=policy.platform,
        entity=policy.entity,
        erp_key=d.erp_key,
        remote_id=b.remote_id if b is not None else None,
        level=policy.level,
        changes=changes,
        payload=payload,
        children=children,
        reason=reason,
        base_version=(r.version if r is not None else None) or (b.version if b is not None else None),
        agreed=agreed,
        agreed_children=agreed_children,
    )


def _create(ctx: _Ctx, d: Desired, reason: str) -> Action:
    policy = ctx.policy
    payload = _push_fields(ctx, d)
    children = _push_children(ctx, d)
    return Action(
        kind="create",
        platform=policy.platform,
        entity=policy.entity,
        erp_key=d.erp_key,
        remote_id=None,
        level=policy.level,
        payload=payload,
        children=children,
        reason=reason,
        natural_key=primary_key(d.fields, policy.natural_key),
        agreed=dict(payload),
        agreed_children=dict(children),
    )


def _skip(ctx: _Ctx, d: Desired, reason: str) -> Action:
    policy = ctx.policy
    return Action(
        kind="skip",
        platform=policy.platform,
        entity=policy.entity,
        erp_key=d.erp_key,
        remote_id=None,
        level=policy.level,
        reason=reason,
        natural_key=primary_key(d.fields, policy.natural_key),
    )


# --- fingerprints ------------------------------------------------------------------


_CHUNK = 2048


def _digest(ids: list[str], content: Sequence[Any]) -> str:
    """Hash of identity strings plus the ``repr`` of content parts (chunked: fewer calls).

    ``repr`` is stable across processes for the normalized values records hold (str,
    Decimal, bool, lists, dicts in mapping order), unlike ``hash()``.
    """
    digest = _Digest()
    digest.feed(ids)
    return digest.finish(content)


class _Digest:
    """``_digest`` fed as the planner goes: the identity strings are hashed (and dropped)
    in chunks instead of being held for the whole entity (3 strings per bound record, some
    of them made on lookup). Same bytes as ``"\\x1f".join(ids)``, then the content."""

    __slots__ = ("_h", "_started")

    def __init__(self) -> None:
        self._h = hashlib.blake2b(digest_size=16)
        self._started = False

    def feed(self, ids: list[str]) -> None:
        """Hash ``ids`` (in chunks) and empty the list."""
        h = self._h
        for i in range(0, len(ids), _CHUNK):
            if self._started:
                h.update(b"\x1f")
            h.update("\x1f".join(ids[i : i + _CHUNK]).encode())
            self._started = True
        ids.clear()

    def finish(self, content: Sequence[Any]) -> str:
        h = self._h
        for i in range(0, len(content), _CHUNK):
            h.update(repr(content[i : i + _CHUNK]).encode())
        return h.hexdigest()


# --- plan one entity ---------------------------------------------------------------

_FLUSH = 3 * _CHUNK  # identity strings held before they are hashed (see _Digest)


def _finish(digest: _Digest, ids: list[str], content: Sequence[Any]) -> str:
    digest.feed(ids)
    return digest.finish(content)


def plan_entity(
    policy: EntityPolicy,
    desired: Iterable[Desired],
    bases: Mapping[str, Base],
    remotes: Mapping[str, Remote] | None,
    *,
    source_complete: bool,
    held: Collection[str] = (),
    set_aside: Mapping[str, Sequence[SetAside]] | None = None,
) -> EntityPlan:
    """Plan one entity. ``remotes`` None = fast mode (trust bindings and bases).

    ``held`` are ERP keys the mapping quarantined: they are present in the ERP, so their
    bases are never treated as gone. ``set_aside``: per ERP key, the child rows the mapping
    set aside while the record itself syncs (``keep_set_aside``).
    """
    if policy.delete == "deactivate" and not policy.deactivate_field:
        raise PlanError(
            f"{policy.platform}/{policy.entity}: delete policy 'deactivate' needs deactivate_field"
        )
    names = tuple(n for n in policy.fields if n not in policy.children)
    ctx = _Ctx(policy=policy, names=names, name_set=frozenset(names))
    has_children = bool(policy.children)
    rows = sorted(desired, key=attrgetter("erp_key"))
    # Fingerprints (see _digest) cover what the plan depends on: identities always, content
    # only where a pair differs. An unchanged record thus costs no content hashing, and a
    # change to either side of an equal pair flips that pair into content (stale plan).
    d_ids: list[str] = []
    d_content: list[tuple[Any, ...]] = []
    b_ids: list[str] = []
    b_content: list[tuple[Any, ...]] = []
    r_ids: list[str] = []
    r_content: list[tuple[Any, ...]] = []
    d_dig, b_dig, r_dig = _Digest(), _Digest(), _Digest()
    actions: list[Action] = []
    unbound: list[Desired] = []
    prev_key: str | None = None
    r_seen = 0
    b_add, r_add = b_ids.append, r_ids.append
    for d in rows:
        key = d.erp_key
        if key == prev_key:
            raise PlanError(f"{policy.platform}/{policy.entity}: duplicate ERP key {key!r} in the source")
        prev_key = key
        b = bases.get(key)
        if b is None:
            d_content.append((key, d.fields, d.children))
            unbound.append(d)
            continue
        if set_aside and key in set_aside:
            have = b if remotes is None else remotes.get(b.remote_id)
            if have is not None:
                d = keep_set_aside(d, have.children, set_aside[key])
        same_base = d.fields == b.fields and (not has_children or _same_children_all(policy, d, b))
        b_add(key)
        b_add(b.remote_id)
        b_add(b.version or "")
        if len(b_ids) >= _FLUSH:
            d_dig.feed(d_ids)
            b_dig.feed(b_ids)
            r_dig.feed(r_ids)
        if same_base:
            d_ids.append(key)
        else:
            d_content.append((key, d.fields, d.children))
            b_content.append((key, b.fields, b.children))
        if remotes is None:
            if not same_base:
                action = _action_from_diff(ctx, d, b, None)
                if action is not None:
                    actions.append(action)
            continue
        r = remotes.get(b.remote_id)
        if r is None:
            b_content.append((key, "remote gone"))
            reason = f"remote record {b.remote_id} was deleted on the platform: create again"
            recreate = _create(ctx, d, reason)
            recreate.remote_id = b.remote_id  # the gone record: apply drops this binding first
            actions.append(recreate)
            continue
        r_seen += 1
        same_remote = r.fields == b.fields and (not has_children or _same_children_all(policy, r, b))
        r_add(r.remote_id)
        r_add(r.version or "")
        if not same_remote:
            r_content.append((r.remote_id, r.fields, r.children))
        if same_base and same_remote:
            continue
        action = _action_from_diff(ctx, d, b, r)
        if action is not None:
            actions.append(action)

    actions.extend(_plan_unbound(ctx, unbound, bases, remotes, set_aside or {}))

    removals = 0
    matched = len(rows) - len(unbound)
    gone: list[str] = []
    if matched < len(bases):
        seen = {d.erp_key for d in rows}
        gone = sorted(k for k in bases if k not in seen)
    for key in gone:
        b = bases[key]
        b_content.append((key, b.remote_id, b.version, b.fields, b.children))
        r = None
        if remotes is not None:
            r = remotes.get(b.remote_id)
            if r is not None:
                r_seen += 1
                r_content.append((r.remote_id, r.version, r.fields, r.children))
        if not source_complete or key in held:
            continue  # deletes are inferred from a complete read only; held rows still exist
        action = _plan_gone(ctx, b, r, full=remotes is not None)
        if action is not None:
            actions.append(action)
            removals += not action.local_only

    fingerprints = {
        f"{policy.platform}/{policy.entity}/desired": _finish(d_dig, d_ids, d_content),
        f"{policy.platform}/{policy.entity}/base": _finish(b_dig, b_ids, b_content),
    }
    if remotes is not None:
        if r_seen < len(remotes):  # some remotes are unbound: they matter for adopt
            bound_ids = {b.remote_id for b in bases.values()}
            for rid in sorted(rid for rid in remotes if rid not in bound_ids):
                r = remotes[rid]
                r_content.append((rid, r.version, r.fields, r.children, "unbound"))
        fingerprints[f"{policy.platform}/{policy.entity}/remote"] = _finish(r_dig, r_ids, r_content)
    actions.sort(key=Action.sort_key)
    return EntityPlan(
        policy=policy,
        actions=actions,
        fingerprints=fingerprints,
        desired_count=len(rows),
        bound_count=len(bases),
        remote_count=None if remotes is None else len(remotes),
        removals=removals,
    )


def _same_children_all(policy: EntityPolicy, a: Desired | Remote, b: Base) -> bool:
    if a.children == b.children:
        return True
    keep = policy.child_fields
    return all(_same_children(a.children.get(n), b.children.get(n), keep.get(n)) for n in policy.children)


def _plan_unbound(
    ctx: _Ctx,
    unbound: list[Desired],
    bases: Mapping[str, Base],
    remotes: Mapping[str, Remote] | None,
    set_aside: Mapping[str, Sequence[SetAside]],
) -> list[Action]:
    """Adopt, create or skip the ERP rows without a binding (already in ERP-key order)."""
    if not unbound:
        return []
    policy = ctx.policy
    # ERP rows sharing a natural key with another new row: creating both would duplicate.
    by_key: dict[tuple[str, str], list[str]] = {}
    for d in unbound:
        for k in key_values(d.fields, policy.natural_key):
            by_key.setdefault(k, []).append(d.erp_key)
    matches: dict[str, list[str]] = {}
    claims: dict[str, list[str]] = {}
    if remotes is not None:
        bound_ids = {b.remote_id for b in bases.values()}
        index = KeyIndex(policy.natural_key)
        for rid, r in remotes.items():
            if rid not in bound_ids:
                index.add(rid, r.fields)
        for d in unbound:
            found = sorted(set(index.find(d.fields)))
            matches[d.erp_key] = found
            if len(found) == 1:
                claims.setdefault(found[0], []).append(d.erp_key)
    actions: list[Action] = []
    for d in unbound:
        found = matches.get(d.erp_key, [])
        if len(found) > 1:
            actions.append(
                _skip(ctx, d, f"ambiguous natural key: remote records {', '.join(found)} all match")
            )
            continue
        if len(found) == 1:
            rid = found[0]
            rivals = claims[rid]
            if len(rivals) > 1:
                actions.append(
                    _skip(ctx, d, f"ambiguous natural key: remote {rid} matches ERP keys {', '.join(rivals)}")
                )
                continue
            assert remotes is not None
            r = remotes[rid]
            if d.erp_key in set_aside:
                d = keep_set_aside(d, r.children, set_aside[d.erp_key])
            actions.append(_adopt(ctx, d, r))
            continue
        twins = sorted(
            {k for nk in key_values(d.fields, policy.natural_key) for k in by_key[nk]} - {d.erp_key}
        )
        if twins:
            actions.append(
                _skip(
                    ctx,
                    d,
                    f"ambiguous natural key: shared with ERP keys {', '.join(twins)}; would duplicate",
                )
            )
            continue
        actions.append(_create(ctx, d, "new in the ERP"))
    return actions


def _adopt(ctx: _Ctx, d: Desired, r: Remote) -> Action:
    changes, payload, children, agreed, agreed_children = _diff(ctx, d, None, r)
    policy = ctx.policy
    diff = f"; then update {', '.join(c.field for c in changes)}" if changes else ""
    return Action(
        kind="adopt",
        platform=policy.platform,
        entity=policy.entity,
        erp_key=d.erp_key,
        remote_id=r.remote_id,
        level=policy.level,
        changes=changes,
        payload=payload,
        children=children,
        reason=f"unbound remote {r.remote_id} has the same natural key{diff}",
        natural_key=primary_key(d.fields, policy.natural_key),
        base_version=r.version,
        agreed=agreed,
        agreed_children=agreed_children,
    )


def _plan_gone(ctx: _Ctx, b: Base, r: Remote | None, *, full: bool) -> Action | None:
    """ERP row gone from a complete read: apply the entity's delete policy.

    When the platform already matches (record gone, or already inactive) the action is
    ``local_only``: apply just records it in the state store, so no binding dangles and a
    later fast plan does not write to a record that no longer needs it.
    """
    policy = ctx.policy
    if policy.delete == "ignore":
        return None
    action = Action(
        kind="delete",
        platform=policy.platform,
        entity=policy.entity,
        erp_key=b.erp_key,
        remote_id=b.remote_id,
        level=policy.level,
        reason="gone from the ERP: delete",
        base_version=(r.version if r is not None else None) or b.version,
    )
    if full and r is None:
        action.reason = "gone from the ERP and from the platform: drop the binding"
        action.local_only = True
        return action
    if policy.delete == "delete":
        return action
    flag = policy.deactivate_field
    assert flag is not None
    current = r.fields if r is not None else b.fields
    if current.get(flag) is False:
        if b.fields.get(flag) is False:
            return None
        action.local_only = True
        action.reason = "gone from the ERP: already inactive on the platform"
    else:
        action.payload = {flag: False}
        action.reason = "gone from the ERP: deactivate"
    action.kind = "deactivate"
    action.changes = [
        FieldChange(flag, b.fields.get(flag), None, r.fields.get(flag) if r else None, False, "push")
    ]
    action.agreed = {**current, flag: False}
    action.agreed_children = dict(r.children if r is not None else b.children)
    return action


# --- whole plan --------------------------------------------------------------------


def check_safety(ep: EntityPlan, *, safety_share: float, source_complete: bool) -> None:
    """Refuse mass removals and plans computed from an empty complete source."""
    policy = ep.policy
    name = f"{policy.platform}/{policy.entity}"
    if source_complete and ep.desired_count == 0 and ep.bound_count > 0:
        raise SafetyValveTripped(
            f"{name}: the ERP source returned 0 rows while {ep.bound_count} records are bound"
        )
    if ep.bound_count and ep.removals > safety_share * ep.bound_count:
        raise SafetyValveTripped(
            f"{name}: {ep.removals} of {ep.bound_count} bound records would be deleted or deactivated "
            f"({ep.removals / ep.bound_count:.0%} > {safety_share:.0%})"
        )


def estimate_requests(
    entity_plans: Iterable[EntityPlan],
    *,
    batch_size: int,
    page_size: Mapping[str, int] | None = None,
    batch_entities: Mapping[str, Collection[str]] | None = None,
) -> dict[str, int]:
    """Design §4 cost model: list pages read + one write per record, batched where possible."""
    pages = {**DEFAULT_PAGE_SIZE, **(page_size or {})}
    batched = DEFAULT_BATCH_ENTITIES if batch_entities is None else batch_entities
    out: dict[str, int] = {}
    for ep in entity_plans:
        p = ep.policy.platform
        total = out.get(p, 0)
        if ep.remote_count is not None:
            total += max(1, math.ceil(ep.remote_count / pages.get(p, 100)))
        batch = ep.policy.entity in batched.get(p, ())
        creates = deletes = 0
        for a in ep.actions:
            if a.local_only:
                continue
            if a.kind == "create":
                creates += 1
            elif a.kind == "delete":
                deletes += 1
            elif a.kind in ("adopt", "update", "conflict", "deactivate") and (a.payload or a.children):
                total += 1
            if p == "smartkasa" and a.children:
                total += _child_requests(a)
        if batch:
            total += math.ceil(creates / batch_size) + math.ceil(deletes / batch_size)
        else:
            total += creates + deletes
        out[p] = total
    return out


def _child_requests(a: Action) -> int:
    """SmartKasa children (stock cards) are separate resources: one request per changed item."""
    if a.kind == "create":
        return sum(len(items) for items in a.children.values())
    n = 0
    for c in a.changes:
        if c.field in a.children:
            old = {canonical_json(i) for i in (c.remote if c.remote is not None else c.base) or []}
            new = {canonical_json(i) for i in c.new or []}
            n += max(len(new - old), len(old - new))
    return n


def make_plan(
    tenant: str,
    policies: Iterable[EntityPolicy],
    inputs_by_entity: Mapping[tuple[str, str], EntityInputs],
    *,
    mode: PlanMode,
    batch_size: int = 100,
    safety_share: float = 0.2,
    force: bool = False,
    page_size: Mapping[str, int] | None = None,
    batch_entities: Mapping[str, Collection[str]] | None = None,
    now: dt.datetime | None = None,
) -> Plan:
    """Plan every entity that has inputs (keyed by ``(platform, entity)``), in dependency order."""
    if batch_size < 1:
        raise PlanError(f"batch_size must be at least 1, got {batch_size}")
    entity_plans: list[EntityPlan] = []
    quarantine: list[QuarantineEntry] = []
    sensitive: dict[str, list[str]] = {}
    for policy in sorted(policies, key=lambda p: (p.level, p.platform, p.entity)):
        name = f"{policy.platform}/{policy.entity}"
        secret = sorted(f.name for f in policy.fields.values() if f.sensitive)
        if secret:
            sensitive[name] = secret
        inputs = inputs_by_entity.get((policy.platform, policy.entity))
        if inputs is None:
            continue
        if mode == "full" and inputs.remotes is None:
            raise PlanError(f"{name}: a full plan needs the remote records (or use fast mode)")
        held = {q.erp_key for q in inputs.quarantine if not q.child_only}
        set_aside = {q.erp_key: q.set_aside for q in inputs.quarantine if q.child_only}
        ep = plan_entity(
            policy,
            inputs.desired,
            inputs.bases,
            inputs.remotes if mode == "full" else None,
            source_complete=inputs.source_complete,
            held=held,
            set_aside=set_aside,
        )
        if not force:
            check_safety(ep, safety_share=safety_share, source_complete=inputs.source_complete)
        entity_plans.append(ep)
        quarantine.extend(inputs.quarantine)
    actions = [a for ep in entity_plans for a in ep.actions]
    actions.sort(key=Action.sort_key)
    return Plan(
        tenant=tenant,
        mode=mode,
        created_at=now or utcnow(),
        actions=actions,
        counts=count_actions(actions),
        request_estimate=estimate_requests(
            entity_plans, batch_size=batch_size, page_size=page_size, batch_entities=batch_entities
        ),
        fingerprints={k: v for ep in entity_plans for k, v in ep.fingerprints.items()},
        quarantine=quarantine,
        sensitive=sensitive,
    )
