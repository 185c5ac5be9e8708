"""The executor: applies a plan so that every record ends up exactly once (design §3, §4).

Creates follow the intent protocol with no exception:

1. commit an intent (pending) before the POST; the open-intent unique index is also the
   per-record claim, so a concurrent ``sync_keys`` and reconcile never both create;
2. 2xx → bind (store the remote id and the agreed fields as the new base), intent done;
3. 409 duplicate → look the record up by natural key, adopt it, then update what differs;
4. 422 → quarantine with the platform's field, message and request id;
5. ambiguous outcome (timeout after sending, reset, 5xx, truncated body) → intent
   ``unknown``, look every item up by natural key; found → adopt; absent → resend. A POST
   is never repeated without a lookup that found nothing, and a batch that ended
   ambiguously is never resent whole;
6. a 422 batch is split in halves (each half looked up first) until the bad rows are
   isolated and quarantined.

Updates send only the owned, changed fields; a stale version (SmartEPI 409) re-reads,
recomputes the three-way diff of the payload fields on the fresh record, retries once,
and otherwise reports a conflict. Bases are saved after every successful write (echo
suppression). Actions run level by level; within a level every entity runs
concurrently, each bounded by the platform's in-flight cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from sync.core.keys import key_values
from sync.core.normalize import normalize_value
from sync.core.plan import Action, Plan
from sync.core.planner import MISSING, decide_field, same_children
from sync.core.records import UNBOUND_REF_PREFIX, EntityPolicy, FieldPolicy, QuarantineEntry
from sync.engine.adapters.base import CreateItem, PlatformAdapter, RawRemote, Written
from sync.errors import (
    AmbiguousWrite,
    ClientError,
    ContractViolation,
    Duplicate,
    ErpsyncError,
    NotFound,
    StaleVersion,
    StatusError,
    Unprocessable,
)
from sync.observability import metrics
from sync.redact import scrub
from sync.state.models import RunItem
from sync.state.store import BindRow, StateStore

log = logging.getLogger("erpsync.apply")

Progress = Callable[[str, str, int], None]  # (platform, entity, advance)
# (policy, erp_key, fields, why) -> True: the ERP row was written; False: kept in adopted_edits
WriteBack = Callable[[EntityPolicy, str, dict[str, Any], str], bool]


def _same_children(wanted: Sequence[Mapping[str, Any]], have: Sequence[Mapping[str, Any]]) -> bool:
    """The planner's child comparison, on values normalized as the planner sees them."""
    return same_children([normalize_value(dict(e)) for e in wanted], [normalize_value(dict(e)) for e in have])


@dataclass(frozen=True, slots=True)
class Several:
    """Several unbound remote records match one lookup (never guess)."""

    count: int


ABSENT = "absent"  # a lookup that could have found the record found nothing
UNSEARCHABLE = "unsearchable"  # no lookup can find it (no natural-key value, no marker)
Lookup = RawRemote | Several | str  # the one match, several, ABSENT or UNSEARCHABLE

HELD = "held for a person"  # an open intent's error prefix: never resent, shown by status/why


def match_lookup(
    policy: EntityPolicy,
    sent: Mapping[str, Any],
    candidates: Sequence[RawRemote] | None,
    bound: Mapping[str, str],
    erp_key: str,
    *,
    own: bool,
) -> Lookup:
    """Which of ``candidates`` is the record ``sent`` made (``own``) or may adopt.

    Hits are always confirmed here, whatever the platform's filter did: by the marker when
    confirming our own create (it holds this ERP key), otherwise by the natural key. A remote
    bound to another ERP row is never taken (that would steal it).
    """
    if candidates is None:
        return UNSEARCHABLE
    marker = policy.marker or ""
    tag = str(sent.get(marker) or "").strip() if marker else ""

    def tag_of(r: RawRemote) -> str:
        return str(r.fields.get(marker) or "").strip() if marker else ""

    matches = [r for r in candidates if tag_of(r) == tag] if tag else []
    if not matches:
        # By natural key; confirming our own create, a record stamped for another ERP row is
        # not ours (one without a stamp may be: a platform that drops the marker).
        wanted = set(key_values(sent, policy.natural_key))
        matches = [
            r
            for r in candidates
            if wanted & set(key_values(r.fields, policy.natural_key)) and not (own and tag and tag_of(r))
        ]
    free = [r for r in matches if bound.get(r.remote_id) in (None, erp_key)]
    if not free:
        return ABSENT
    if len(free) > 1:
        return Several(len(free))
    return free[0]


def held_reason(policy: EntityPolicy, erp_key: str) -> str:
    """Why an unknown create is not resent, and what a person does about it."""
    return (
        f"{HELD}: the create of {policy.entity} {erp_key!r} may have reached {policy.platform}, and "
        "no lookup can find it (no natural-key value"
        + (", and the platform does not keep the marker" if policy.marker else ", and no marker")
        + f"). Look for it on {policy.platform}, then run `erpsync resolve {policy.entity} {erp_key} "
        "--remote-id ID` if it is there, or `--not-created` if it is not."
    )


class Unresolved(Exception):
    """A reference whose target has no binding yet (not created, failed or quarantined)."""

    def __init__(self, field: str, target: str, key: str) -> None:
        super().__init__(f"reference {field} → {target} {key!r} is not bound on the platform yet")
        self.field, self.target, self.key = field, target, key


@dataclass
class ApplyResult:
    counts: Counter[tuple[str, str, str, str]] = field(
        default_factory=Counter
    )  # platform, entity, kind, outcome
    items: list[RunItem] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Rows not written as planned: rejected (quarantined here), deferred, failed or held
        (``sync.report.outcomes``: the classification every report uses)."""
        from sync.report.outcomes import outcome_counts

        return outcome_counts(self.counts).attention


@dataclass
class ApplyContext:
    tenant: str
    store: StateStore
    adapters: Mapping[str, PlatformAdapter]
    policies: Mapping[tuple[str, str], EntityPolicy]
    concurrency: Mapping[str, int]
    to_remote: Callable[[EntityPolicy, RawRemote, Mapping[str, Mapping[str, str]]], dict[str, Any]]
    write_back: WriteBack | None = None
    fence: Callable[[], None] | None = None
    progress: Progress | None = None
    run_id: int | None = None
    max_resends: int = 3
    # Platforms that do not reject duplicates (SmartKasa products): when the plan was made
    # without reading the remote side (fast mode, change events), look up before creating.
    lookup_before_create: frozenset[str] = frozenset()
    # Platforms that accept duplicates: an entity whose natural key holds a reference
    # (SmartKasa categories: title + parent) is looked up before creating even in full mode,
    # since the planner could not match a record whose parent was unbound at plan time.
    accepts_duplicates: frozenset[str] = frozenset()
    # ERP content hash per (platform, entity) and key: a record error stays quarantined
    # until this hash changes (the ERP row was fixed).
    erp_hashes: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


class Executor:
    """Runs one plan (see module docstring)."""

    def __init__(self, ctx: ApplyContext) -> None:
        self.ctx = ctx
        self.result = ApplyResult()
        self._bindings: dict[tuple[str, str], dict[str, str]] = {}
        self._reverse: dict[str, dict[str, dict[str, str]]] = {}
        self._sems = {p: asyncio.Semaphore(max(1, n)) for p, n in ctx.concurrency.items()}
        self._creating: dict[tuple[str, str], set[str]] = {}
        # Batch creates sent but not verified yet (``verify_later``): bound after one read-back
        # of the whole wave, so verifying costs one listing per entity, not one per batch.
        self._unverified: dict[tuple[str, str], list[tuple[Action, CreateItem, int, Written]]] = {}

    # --- bookkeeping --------------------------------------------------------------------

    def bindings(self, platform: str, entity: str) -> dict[str, str]:
        key = (platform, entity)
        if key not in self._bindings:
            self._bindings[key] = self.ctx.store.bindings(self.ctx.tenant, platform, entity)
        return self._bindings[key]

    def reverse(self, platform: str) -> dict[str, dict[str, str]]:
        if platform not in self._reverse:
            self._reverse[platform] = self.ctx.store.reverse_bindings(self.ctx.tenant, platform)
        return self._reverse[platform]

    def _note_binding(self, platform: str, entity: str, erp_key: str, remote_id: str) -> None:
        self.bindings(platform, entity)[erp_key] = remote_id
        self.reverse(platform).setdefault(entity, {})[remote_id] = erp_key

    def _record(
        self,
        a: Action,
        outcome: str,
        detail: str = "",
        *,
        remote_id: str | None = None,
        request_id: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.result.counts[(a.platform, a.entity, kind or a.kind, outcome)] += 1
        self.result.items.append(
            RunItem(
                run_id=self.ctx.run_id or 0,
                platform=a.platform,
                entity=a.entity,
                erp_key=a.erp_key,
                action=kind or a.kind,
                outcome=outcome,
                remote_id=remote_id or a.remote_id,
                request_id=request_id,
                detail=scrub(detail)[:2000] if detail else None,
            )
        )
        if self.ctx.progress:
            self.ctx.progress(a.platform, a.entity, 1)
        if outcome in ("failed", "deferred", "held"):
            log.warning(
                "%s/%s %s %s: %s",
                a.platform,
                a.entity,
                a.erp_key,
                outcome,
                scrub(detail),
                extra={
                    "platform": a.platform,
                    "entity": a.entity,
                    "key": a.erp_key,
                    "request_id": request_id,
                },
            )

    def _quarantine(
        self,
        a: Action,
        exc: StatusError | Unresolved | str,
        rule: str = "platform_rejected",
        field: str | None = None,
    ) -> None:
        erp_hash = self.ctx.erp_hashes.get((a.platform, a.entity), {}).get(a.erp_key, "")
        if isinstance(exc, StatusError):
            entry = QuarantineEntry(
                a.platform,
                a.entity,
                a.erp_key,
                exc.field,
                rule,
                scrub(exc.message),
                None,
                erp_hash,
                "apply",
                exc.request_id,
            )
        else:
            entry = QuarantineEntry(
                a.platform, a.entity, a.erp_key, field, rule, scrub(str(exc)), None, erp_hash, "apply", None
            )
        self.ctx.store.quarantine(self.ctx.tenant, [entry])
        self.result.quarantined.append(entry)
        self._record(
            a,
            "quarantined",
            entry.reason(),
            request_id=exc.request_id if isinstance(exc, StatusError) else None,
        )

    def _unresolved(self, a: Action, exc: Unresolved) -> None:
        """A reference with no binding: deferred (its target may be created later), unless the
        target is quarantined, in this run or before; then the record is quarantined too
        (``reference_quarantined``, as at validation) instead of being deferred on every run.

        Stage ``validate``: the next collect derives the same entry from the target's
        quarantine (``MapContext.held``) and drops it once the target is fixed; an
        ``apply`` entry would hold the record until its own ERP row changed.
        """
        rule = next(
            (
                q.rule
                for q in self.result.quarantined
                if (q.platform, q.entity, q.erp_key) == (a.platform, exc.target, exc.key)
            ),
            None,
        )
        if rule is None:
            found = self.ctx.store.quarantined(self.ctx.tenant, a.platform, exc.target, keys=[exc.key])
            rule = found[0].rule if found else None
        if rule is None:
            self._record(a, "deferred", str(exc))
            return
        erp_hash = self.ctx.erp_hashes.get((a.platform, a.entity), {}).get(a.erp_key, "")
        msg = f"references {exc.target} {exc.key!r}, which is quarantined ({rule})"
        entry = QuarantineEntry(
            a.platform, a.entity, a.erp_key, exc.field, "reference_quarantined", msg, exc.key, erp_hash
        )
        self.ctx.store.quarantine(self.ctx.tenant, [entry])
        self.result.quarantined.append(entry)
        self._record(a, "quarantined", entry.reason())

    def _fence(self) -> None:
        if self.ctx.fence:
            self.ctx.fence()

    # --- references -----------------------------------------------------------------------

    def resolve(self, policy: EntityPolicy, values: Mapping[str, Any]) -> dict[str, Any]:
        """ERP-key references → remote ids through the bindings (raises Unresolved)."""
        out = dict(values)
        for name, value in values.items():
            fp = policy.fields.get(name)
            if fp is None or fp.ref is None or value is None:
                continue
            if isinstance(value, list):
                out[name] = [self._resolve_one(policy, name, fp.ref, v) for v in value]
            else:
                out[name] = self._resolve_one(policy, name, fp.ref, value)
        return out

    def _resolve_one(self, policy: EntityPolicy, name: str, target: str, value: Any) -> str:
        text = str(value)
        if text.startswith(UNBOUND_REF_PREFIX):
            return text[len(UNBOUND_REF_PREFIX) :]
        remote = self.bindings(policy.platform, target).get(text)
        if remote is None:
            raise Unresolved(name, target, text)
        return remote

    def natural_key(self, policy: EntityPolicy, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """What finds the record again: its natural-key values and its marker (the intent keeps it)."""
        names: list[str] = []
        for key in policy.natural_key:
            names.extend(key.split("+"))
        if policy.marker:
            names.append(policy.marker)
        return {n: normalize_value(resolved.get(n)) for n in names if resolved.get(n) is not None}

    @staticmethod
    def stamp(policy: EntityPolicy, a: Action, resolved: dict[str, Any]) -> dict[str, Any]:
        """The create payload carries the ERP key in the marker field (unless the mapping fills it)."""
        if policy.marker and resolved.get(policy.marker) in (None, ""):
            resolved[policy.marker] = a.erp_key
        return resolved

    # --- entry point ----------------------------------------------------------------------

    async def run(self, plan: Plan) -> ApplyResult:
        actions = sorted(plan.actions, key=lambda a: a.sort_key())
        for _, level_actions in groupby(actions, key=lambda a: a.sort_key()[:2]):
            batch = list(level_actions)
            groups: dict[tuple[str, str], list[Action]] = {}
            for a in batch:
                groups.setdefault((a.platform, a.entity), []).append(a)
            await asyncio.gather(*(self._run_entity(p, e, acts) for (p, e), acts in groups.items()))
        return self.result

    async def _run_entity(self, platform: str, entity: str, actions: list[Action]) -> None:
        policy = self.ctx.policies.get((platform, entity))
        if policy is None or platform not in self.ctx.adapters:
            for a in actions:
                self._record(a, "failed", f"no mapping or platform configured for {platform}/{entity}")
            return
        creates = [a for a in actions if a.kind == "create"]
        adopts = [a for a in actions if a.kind == "adopt"]
        others = [a for a in actions if a.kind not in ("create", "adopt")]
        # Adopted records first: a create in the same entity may reference one (a category
        # under a parent category that already existed on the platform).
        if adopts:
            await asyncio.gather(*(self._guarded(policy, a) for a in adopts))
        if creates:
            await self._create_all(policy, creates)
        if others:
            await asyncio.gather(*(self._guarded(policy, a) for a in others))

    async def _guarded(self, policy: EntityPolicy, a: Action) -> None:
        sem = self._sems.setdefault(a.platform, asyncio.Semaphore(8))
        async with sem:
            try:
                await self._one(policy, a)
            except Unresolved as exc:
                self._unresolved(a, exc)
            except Unprocessable as exc:
                self._quarantine(a, exc)
            except ErpsyncError as exc:
                if exc.kind == "terminal" and not isinstance(exc, ClientError):
                    raise
                self._record(
                    a,
                    "failed" if exc.kind != "transient" else "deferred",
                    str(exc),
                    request_id=getattr(exc, "request_id", None),
                )

    async def _one(self, policy: EntityPolicy, a: Action) -> None:
        if a.kind == "skip":
            self._record(a, "skipped", a.reason)
        elif a.kind in ("update", "conflict", "pull"):
            await self._update(policy, a)
        elif a.kind == "adopt":
            await self._adopt(policy, a)
        elif a.kind == "deactivate":
            await self._deactivate(policy, a)
        elif a.kind == "delete":
            await self._delete(policy, a)
        else:  # pragma: no cover - the plan model rejects unknown kinds
            self._record(a, "failed", f"unknown action {a.kind}")

    # --- creates --------------------------------------------------------------------------

    async def _create_all(self, policy: EntityPolicy, creates: list[Action]) -> None:
        """Creates in waves: records whose references point at records created in the same
        entity (category parents) wait for the wave that creates their target."""
        pending = creates
        creating = self._creating.setdefault((policy.platform, policy.entity), set())
        creating.update(a.erp_key for a in creates)
        size = max(1, self.ctx.adapters[policy.platform].batch_size(policy.entity))
        cap = max(1, self.ctx.concurrency.get(policy.platform, 8))
        # Singles go in groups (one state-store transaction per group, requests in parallel);
        # at most two groups are open at once so a crash leaves few intents to resolve.
        group = size if size > 1 else 4 * cap
        gate = asyncio.Semaphore(cap if size > 1 else 2)
        while pending:
            ready: list[tuple[Action, CreateItem]] = []
            blocked: list[Action] = []
            for a in pending:
                try:
                    item = CreateItem(
                        a.erp_key, self.stamp(policy, a, self.resolve(policy, a.payload)), a.children
                    )
                except Unresolved as exc:
                    if exc.target == policy.entity and exc.key in creating:
                        blocked.append(a)
                    else:
                        self._unresolved(a, exc)
                    continue
                ready.append((a, item))
            if not ready:
                for a in blocked:
                    self._record(a, "deferred", "its parent in the same entity could not be created")
                return
            chunks = [ready[i : i + group] for i in range(0, len(ready), group)]

            async def run_chunk(chunk: list[tuple[Action, CreateItem]]) -> None:
                async with gate:
                    await self._create_chunk(policy, chunk, attempt=0)

            await asyncio.gather(*(run_chunk(c) for c in chunks))
            await self._verify_wave(policy)
            for a, _ in ready:
                creating.discard(a.erp_key)
            pending = blocked

    def _verify_later(self, policy: EntityPolicy) -> bool:
        adapter = self.ctx.adapters[policy.platform]
        verify_later = getattr(adapter, "verify_later", None)
        return bool(verify_later and verify_later(policy.entity))

    async def _verify_wave(self, policy: EntityPolicy) -> None:
        """Match the wave's created records to its items (the batch answers' order is not
        trusted), write their children, and bind them; an item no record matches was created all
        the same (its batch answered), so it is held for a person, never resent."""
        key = (policy.platform, policy.entity)
        adapter = self.ctx.adapters[policy.platform]
        while self._unverified.get(key):
            wave = self._unverified.pop(key)
            try:
                async with self._sems.setdefault(policy.platform, asyncio.Semaphore(8)):
                    self._fence()
                    outcomes = await adapter.finish_creates(  # type: ignore[attr-defined]
                        policy.entity,
                        [(item, w.remote_id) for _, item, _, w in wave],
                        marker=policy.marker,
                    )
            except ErpsyncError as exc:
                if exc.kind == "terminal" and not isinstance(exc, ClientError):
                    raise
                self.ctx.store.set_intents([i for _, _, i, _ in wave], "unknown", error=f"verifying: {exc}")
                for a, _item, _i, _w in wave:
                    self._record(
                        a, "deferred", f"created; verifying it failed ({exc}): resolved on the next run"
                    )
                continue
            done: list[tuple[Action, Written, int]] = []
            lost: list[tuple[Action, CreateItem, int]] = []
            for (a, item, intent, _w), (remote_id, error) in zip(wave, outcomes, strict=True):
                if remote_id is None:
                    lost.append((a, item, intent))
                elif error is None:
                    done.append((a, Written(remote_id), intent))
                else:  # the record exists; its children did not all land: the next plan pushes them
                    self.ctx.store.save_base(
                        self.ctx.tenant, a.platform, a.entity, a.erp_key, remote_id, a.agreed or a.payload
                    )
                    self.ctx.store.set_intent(intent, "done", remote_id=remote_id)
                    self._note_binding(a.platform, a.entity, a.erp_key, remote_id)
                    self._record(
                        a, "deferred", f"created; writing its children failed: {error}", remote_id=remote_id
                    )
            self._bind_many(policy, done)
            if lost:
                # The batch answered 2xx with one id per item, so these records exist; the
                # read-back just cannot tell which is whose (a marker the platform altered,
                # identical items). Resending would duplicate them: hold them for a person.
                unmatched = sorted({w.remote_id for _, _, _, w in wave} - {w.remote_id for _, w, _ in done})
                for a, _item, intent in lost:
                    why = (
                        f"{HELD}: {policy.platform} created {policy.entity} {a.erp_key!r} (the batch "
                        f"answered), but no record read back matches it; it is one of "
                        f"{', '.join(unmatched[:10])}. Run `erpsync resolve {policy.entity} {a.erp_key} "
                        "--remote-id ID` with its id."
                    )
                    self.ctx.store.set_intent(intent, "unknown", error=why)
                    self._record(a, "held", why)

    async def _create_chunk(
        self, policy: EntityPolicy, chunk: Sequence[tuple[Action, CreateItem]], *, attempt: int
    ) -> None:
        """Claim (intent) every item, then send: one batch request, or one POST per item."""
        store, tenant = self.ctx.store, self.ctx.tenant
        if attempt == 0 and self._look_first(policy):
            chunk = await self._adopt_existing(policy, chunk)
        if not chunk:
            return
        intents = store.open_intents_many(
            tenant,
            policy.platform,
            policy.entity,
            [(a.erp_key, self.natural_key(policy, item.payload), item.payload) for a, item in chunk],
            run_id=self.ctx.run_id,
        )
        # The claims are ours; a concurrent writer may have finished some records just before.
        already = store.bound_keys(tenant, policy.platform, policy.entity, list(intents))
        for a, _item in chunk:
            if a.remote_id is not None and already.get(a.erp_key) == a.remote_id:
                # The plan saw this remote record gone (deleted in the platform's console):
                # its binding is stale, not a concurrent write. Drop it and create again.
                store.unbind(tenant, a.platform, a.entity, a.erp_key)
                self.bindings(a.platform, a.entity).pop(a.erp_key, None)
                del already[a.erp_key]
        if already:
            store.set_intents(
                [intents[k] for k in already], "abandoned", error="bound by a concurrent writer"
            )
        held = self._held(policy, [a.erp_key for a, _ in chunk if a.erp_key not in intents])
        live: list[tuple[Action, CreateItem, int]] = []
        for a, item in chunk:
            if a.erp_key in held:
                self._record(a, "held", held[a.erp_key])
            elif a.erp_key not in intents:
                self._record(a, "skipped", "another worker holds an open intent for this record")
            elif a.erp_key in already:
                self._note_binding(a.platform, a.entity, a.erp_key, already[a.erp_key])
                self._record(
                    a, "skipped", "already created by a concurrent writer", remote_id=already[a.erp_key]
                )
            else:
                live.append((a, item, intents[a.erp_key]))
        if not live:
            return
        if self.ctx.adapters[policy.platform].batch_size(policy.entity) > 1:
            await self._send_batch(policy, live, attempt=attempt)
            return
        sent = await asyncio.gather(*(self._send_single(policy, a, item, i, attempt) for a, item, i in live))
        self._bind_many(policy, [(a, w, i) for a, w, i in (x for x in sent if x is not None)])

    def _held(self, policy: EntityPolicy, keys: list[str]) -> dict[str, str]:
        """Of ``keys`` (records with an open intent not ours), those held for a person, with why."""
        if not keys:
            return {}
        wanted = set(keys)
        return {
            i.erp_key: i.error or HELD
            for i in self.ctx.store.open_intents(self.ctx.tenant, policy.platform)
            if i.entity == policy.entity and i.erp_key in wanted and (i.error or "").startswith(HELD)
        }

    def _look_first(self, policy: EntityPolicy) -> bool:
        if policy.platform in self.ctx.lookup_before_create:
            return True
        if policy.platform not in self.ctx.accepts_duplicates:
            return False
        names = {n for key in policy.natural_key for n in key.split("+")}
        return any(policy.fields[n].ref for n in names if n in policy.fields)

    async def _post(self, policy: EntityPolicy, items: list[CreateItem]) -> list[Written]:
        sem = self._sems.setdefault(policy.platform, asyncio.Semaphore(8))
        async with sem:
            self._fence()
            return await self.ctx.adapters[policy.platform].create(policy.entity, items, marker=policy.marker)

    async def _send_single(
        self, policy: EntityPolicy, a: Action, item: CreateItem, intent: int, attempt: int
    ) -> tuple[Action, Written, int] | None:
        store = self.ctx.store
        try:
            (written,) = await self._post(policy, [item])
            return a, written, intent
        except Duplicate as exc:
            store.set_intent(intent, "unknown", error=f"409 duplicate: {exc.message}")
            await self._adopt_by_lookup(policy, a, item, intent, why=f"409 duplicate ({exc.request_id})")
        except Unprocessable as exc:
            store.set_intent(intent, "failed", error=str(exc))
            self._quarantine(a, exc)
        except (AmbiguousWrite, ContractViolation) as exc:  # an answer we cannot read: it may have landed
            store.set_intent(intent, "unknown", error=str(exc))
            left = await self._lookup_all(policy, [(a, item, intent)])
            if left and attempt >= self.ctx.max_resends:
                self._record(a, "deferred", f"ambiguous create, not resent after {attempt} attempts: {exc}")
            elif left:
                await self._create_chunk(policy, left, attempt=attempt + 1)
        except ErpsyncError as exc:
            # Not sent (connect failure, 429 after retries, a contract check): safe to abandon.
            store.set_intent(intent, "failed", error=str(exc))
            outcome = "deferred" if exc.kind in ("transient", "ambiguous") else "failed"
            self._record(a, outcome, str(exc), request_id=getattr(exc, "request_id", None))
            if exc.kind == "terminal" and not isinstance(exc, ClientError):
                raise
        return None

    async def _send_batch(
        self, policy: EntityPolicy, live: list[tuple[Action, CreateItem, int]], *, attempt: int
    ) -> None:
        store = self.ctx.store
        ids = [i for _, _, i in live]
        try:
            written = await self._post(policy, [item for _, item, _ in live])
        except Unprocessable as exc:
            if len(live) == 1:
                a, _item, intent = live[0]
                store.set_intent(intent, "failed", error=str(exc))
                self._quarantine(a, exc)
                return
            # A rejected batch names no row: never resend it whole. Look each item up (the
            # contract does not say batches are atomic), then split what is left in halves.
            store.set_intents(ids, "unknown", error="batch rejected (422)")
            left = await self._lookup_all(policy, live)
            half = (len(left) + 1) // 2
            for part in (left[:half], left[half:]):
                if part:
                    await self._create_chunk(policy, part, attempt=attempt)
            return
        except (AmbiguousWrite, ContractViolation) as exc:  # an answer we cannot read: it may have landed
            store.set_intents(ids, "unknown", error=str(exc))
            left = await self._lookup_all(policy, live)
            if not left:
                return
            if attempt >= self.ctx.max_resends:
                for a, _item in left:
                    self._record(
                        a, "deferred", f"ambiguous create, not resent after {attempt} attempts: {exc}"
                    )
                return
            await self._create_chunk(policy, left, attempt=attempt + 1)
            return
        except ErpsyncError as exc:
            store.set_intents(ids, "failed", error=str(exc))
            for a, _item, _intent in live:
                outcome = "deferred" if exc.kind in ("transient", "ambiguous") else "failed"
                self._record(a, outcome, str(exc), request_id=getattr(exc, "request_id", None))
            if exc.kind == "terminal" and not isinstance(exc, ClientError):
                raise
            return
        if len(written) != len(live):
            # The adapter could not map the answer: treat every item as ambiguous.
            store.set_intents(ids, "unknown", error="batch answer did not match the request")
            await self._create_chunk(policy, await self._lookup_all(policy, live), attempt=attempt + 1)
            return
        if self._verify_later(policy):
            self._unverified.setdefault((policy.platform, policy.entity), []).extend(
                (a, item, i, w) for (a, item, i), w in zip(live, written, strict=True)
            )
            return
        self._bind_many(policy, [(a, w, i) for (a, _item, i), w in zip(live, written, strict=True)])

    def _bind_many(self, policy: EntityPolicy, done: list[tuple[Action, Written, int]]) -> None:
        if not done:
            return
        hashes = self.ctx.erp_hashes.get((policy.platform, policy.entity), {})
        self.ctx.store.bind_many(
            self.ctx.tenant,
            policy.platform,
            policy.entity,
            [
                BindRow(
                    a.erp_key,
                    w.remote_id,
                    a.agreed or a.payload,
                    a.agreed_children or a.children,
                    w.version,
                    hashes.get(a.erp_key, ""),
                    intent,
                )
                for a, w, intent in done
            ],
        )
        for a, w, _ in done:
            self._note_binding(a.platform, a.entity, a.erp_key, w.remote_id)
            self._record(a, "ok", remote_id=w.remote_id)

    async def _find_many(
        self, policy: EntityPolicy, items: Sequence[CreateItem], *, own: bool
    ) -> list[Lookup]:
        """One lookup outcome per item (see ``match_lookup``); raises what the lookup raised."""
        adapter = self.ctx.adapters[policy.platform]
        queries = [self.natural_key(policy, item.payload) for item in items]
        sem = self._sems.setdefault(policy.platform, asyncio.Semaphore(8))
        async with sem:
            found = await adapter.find_many(policy.entity, queries, marker=policy.marker)
        bound = self.reverse(policy.platform).get(policy.entity, {})
        return [
            match_lookup(policy, item.payload, cands, bound, item.erp_key, own=own)
            for item, cands in zip(items, found, strict=True)
        ]

    async def _adopt_existing(
        self, policy: EntityPolicy, chunk: Sequence[tuple[Action, CreateItem]]
    ) -> list[tuple[Action, CreateItem]]:
        """Adopt items that already exist remotely (natural-key lookup); return the rest.

        A lookup that fails defers its items: creating blind is what the lookup was for."""
        try:
            outcomes = await self._find_many(policy, [item for _, item in chunk], own=False)
        except ErpsyncError as exc:
            if exc.kind == "terminal" and not isinstance(exc, ClientError):
                raise
            for a, _item in chunk:
                self._record(a, "deferred", f"lookup before create failed: {exc}")
            return []
        rest: list[tuple[Action, CreateItem]] = []
        for (a, item), got in zip(chunk, outcomes, strict=True):
            if isinstance(got, Several):
                self._quarantine(
                    a, f"{got.count} remote records match its natural key", rule="ambiguous_natural_key"
                )
            elif isinstance(got, RawRemote):
                await self._adopt_found(policy, a, item, got, None)
            else:
                rest.append((a, item))
        return rest

    async def _lookup_all(
        self, policy: EntityPolicy, live: Sequence[tuple[Action, CreateItem, int]]
    ) -> list[tuple[Action, CreateItem]]:
        """Resolve ambiguous creates by lookup; returns the ones safe to resend.

        Only an item that a lookup able to find it did not find is resent. An item no lookup
        can find is held (its intent stays ``unknown``) for a person; an item whose lookup
        failed stays ``unknown`` for the next run to resolve first.
        """
        try:
            outcomes = await self._find_many(policy, [item for _, item, _ in live], own=True)
        except ErpsyncError as exc:
            if exc.kind == "terminal" and not isinstance(exc, ClientError):
                raise
            for a, _item, _intent in live:
                self._record(
                    a,
                    "deferred",
                    f"create outcome unknown and its lookup failed ({exc}); resolved first on the next run",
                )
            return []
        left: list[tuple[Action, CreateItem]] = []
        for (a, item, intent), got in zip(live, outcomes, strict=True):
            metrics.ambiguous_resolved(self.ctx.tenant, a.platform, a.entity, got)
            if isinstance(got, Several):
                self.ctx.store.set_intent(intent, "failed", error=f"{got.count} remote records match")
                self._quarantine(
                    a,
                    f"{got.count} remote records match its natural key; keep one, delete the others "
                    "on the platform",
                    rule="ambiguous_natural_key",
                )
            elif isinstance(got, RawRemote):
                await self._adopt_found(policy, a, item, got, intent)
            elif got == UNSEARCHABLE:
                why = held_reason(policy, a.erp_key)
                self.ctx.store.set_intent(intent, "unknown", error=why)
                self._record(a, "held", why)
            else:
                self.ctx.store.set_intent(intent, "abandoned", error="lookup found nothing; resending")
                left.append((a, item))
        return left

    async def _adopt_by_lookup(
        self, policy: EntityPolicy, a: Action, item: CreateItem, intent: int, *, why: str
    ) -> None:
        try:
            (got,) = await self._find_many(policy, [item], own=False)
        except ErpsyncError as exc:
            if exc.kind == "terminal" and not isinstance(exc, ClientError):
                raise
            self.ctx.store.set_intent(intent, "failed", error=f"{why}; lookup failed: {exc}")
            self._record(a, "deferred", f"{why}; looking the duplicate up failed: {exc}")
            return
        if isinstance(got, Several):
            self.ctx.store.set_intent(intent, "failed", error="several remote records match")
            self._quarantine(a, "several remote records match its natural key", rule="ambiguous_natural_key")
        elif isinstance(got, RawRemote):
            await self._adopt_found(policy, a, item, got, intent)
        else:
            self.ctx.store.set_intent(intent, "failed", error=f"{why}, but no record matches the natural key")
            self._quarantine(
                a,
                f"{why}: the platform reports a duplicate that no natural-key lookup finds "
                "(another key, e.g. the e-mail, collides)",
                rule="duplicate",
            )

    async def _adopt_found(
        self, policy: EntityPolicy, a: Action, item: CreateItem, found: RawRemote, intent: int | None
    ) -> None:
        """Bind an existing remote record, then update the fields that differ."""
        remote = self.ctx.to_remote(policy, found, self.reverse(policy.platform))
        diff = {
            k: v
            for k, v in a.payload.items()
            if k in policy.fields
            and policy.fields[k].direction != "pull"
            and normalize_value(v) != normalize_value(remote.get(k))
        }

        # Children the lookup did not return (SmartKasa cards) or that differ are written too:
        # a create whose answer was lost may have stopped before its children were written.
        def mapped(name: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            keep = policy.child_fields.get(name)  # unmapped child fields are never drift
            return entries if keep is None else [{k: v for k, v in e.items() if k in keep} for e in entries]

        children = {
            name: entries
            for name, entries in a.children.items()
            if name not in found.children or not _same_children(entries, mapped(name, found.children[name]))
        }
        version = found.version
        if diff or children:
            try:
                self._fence()
                written = await self.ctx.adapters[policy.platform].update(
                    policy.entity, found.remote_id, self.resolve(policy, diff), children, version=version
                )
            except ErpsyncError as exc:
                if exc.kind == "terminal" and not isinstance(exc, ClientError):
                    raise
                # The record exists: bind it with the base as found, so the next plan pushes
                # what is still missing instead of believing it was written.
                self.ctx.store.save_base(
                    self.ctx.tenant,
                    a.platform,
                    a.entity,
                    a.erp_key,
                    found.remote_id,
                    remote,
                    children={k: v for k, v in found.children.items() if k not in children},
                    version=found.version,
                )
                if intent is not None:
                    self.ctx.store.set_intent(intent, "done", remote_id=found.remote_id)
                self._note_binding(a.platform, a.entity, a.erp_key, found.remote_id)
                self._record(
                    a,
                    "deferred",
                    f"adopted by natural key; updating {sorted(diff) + sorted(children)} failed: {exc}",
                    remote_id=found.remote_id,
                    kind="adopt",
                )
                return
            version = written.version
        self._bind(a, Written(found.remote_id, version), intent)
        changed = sorted(diff) + sorted(children)
        self._record(
            a,
            "ok",
            "adopted by natural key" + (f"; updated {changed}" if changed else ""),
            remote_id=found.remote_id,
            kind="adopt",
        )

    def _bind(self, a: Action, w: Written, intent: int | None) -> None:
        self.ctx.store.save_base(
            self.ctx.tenant,
            a.platform,
            a.entity,
            a.erp_key,
            w.remote_id,
            a.agreed or a.payload,
            children=a.agreed_children or a.children,
            version=w.version,
        )
        if intent is not None:
            self.ctx.store.set_intent(intent, "done", remote_id=w.remote_id)
        self._note_binding(a.platform, a.entity, a.erp_key, w.remote_id)

    # --- updates ----------------------------------------------------------------------------

    async def _adopt(self, policy: EntityPolicy, a: Action) -> None:
        assert a.remote_id is not None
        if a.payload or a.children:
            self._fence()
            written = await self.ctx.adapters[a.platform].update(
                a.entity, a.remote_id, self.resolve(policy, a.payload), a.children, version=a.base_version
            )
        else:
            written = Written(a.remote_id, a.base_version)
        self._bind(a, written, None)
        self._record(a, "ok", a.reason or "adopted by natural key", remote_id=a.remote_id)

    async def _update(self, policy: EntityPolicy, a: Action) -> None:
        assert a.remote_id is not None
        adapter = self.ctx.adapters[a.platform]
        payload, children, agreed = dict(a.payload), dict(a.children), dict(a.agreed)
        version = a.base_version
        pulled = a.pulled()
        kept: dict[str, Any] = {}
        if payload or children:
            for attempt in (0, 1):
                try:
                    self._fence()
                    written = await adapter.update(
                        a.entity, a.remote_id, self.resolve(policy, payload), children, version=version
                    )
                    version, kept = written.version, written.kept
                    break
                except StaleVersion as exc:
                    fresh = await adapter.get(a.entity, a.remote_id)
                    if fresh is None or attempt == 1:
                        self._record(a, "conflict", f"stale version twice; remote changed meanwhile ({exc})")
                        return
                    payload, extra_pulled, agreed = self._rediff(policy, a, fresh, payload, agreed)
                    pulled.update(extra_pulled)
                    version = fresh.version
                    if not payload and not children:
                        break
                except NotFound:
                    self.ctx.store.unbind(self.ctx.tenant, a.platform, a.entity, a.erp_key)
                    self._record(a, "failed", "the remote record is gone; the next plan creates it again")
                    return
        waiting: list[str] = []
        if pulled and self.ctx.write_back is not None:
            try:
                written_back = self.ctx.write_back(policy, a.erp_key, pulled, a.reason or a.kind)
            except ErpsyncError as exc:
                if exc.kind == "record":
                    # The ERP refused this row's value (a Tryton UserError: a CPF check digit):
                    # quarantined with the ERP's message, not offered again every run.
                    self._quarantine(
                        a,
                        f"the ERP refused {', '.join(sorted(pulled))} from the platform: "
                        f"{getattr(exc, 'message', str(exc))}. Correct the value on the platform "
                        "(or in the ERP), then run `erpsync retry-failed`",
                        rule="erp_rejected",
                    )
                    return
                # The base stays as it was, so the next plan offers the same pull again.
                self._record(a, "failed", f"writing {sorted(pulled)} back to the ERP failed: {exc}")
                return
            if not written_back:
                # Kept in adopted_edits for the ERP to consume: the ERP still holds the old value,
                # so the base keeps it too (a new base would push the old value back).
                bases = {c.field: c.base for c in a.changes}
                for name in pulled:
                    if name in bases:
                        agreed[name] = bases[name]
                waiting = sorted(pulled)
        reported = [c for c in a.changes if c.kind == "conflict" and c.resolution == "report"]
        resolved = [c for c in a.changes if c.kind == "conflict" and c.resolution != "report"]
        self.ctx.store.save_base(
            self.ctx.tenant,
            a.platform,
            a.entity,
            a.erp_key,
            a.remote_id,
            agreed,
            children=a.agreed_children or children,
            version=version,
        )
        outcome = "conflict" if reported else "ok"
        notes = [
            f"{c.field}: ERP {c.erp!r} vs platform {c.remote!r}, reported, not written" for c in reported
        ]
        notes += [
            f"{c.field}: conflict resolved {c.resolution} (ERP {c.erp!r}, platform {c.remote!r})"
            for c in resolved
        ]
        if waiting:
            notes.append(f"{', '.join(waiting)}: platform edit kept in adopted_edits for the ERP")
        if kept:
            # The other fields are written and the base is the ERP's; the row is held (until
            # its ERP row changes) so the same null is not sent again on every run.
            # The kept value is not shown: it may be personal data (a CPF, an e-mail).
            field_name = next(iter(kept))
            self._quarantine(
                a,
                f"{a.platform} kept its value of {field_name} although erpsync sent null to clear "
                "it (the contract does not say how to clear a field); clear it on the platform, "
                "or give it a value in the ERP",
                rule="not_cleared",
                field=field_name,
            )
            return
        self._record(a, outcome, "; ".join(notes))

    def _rediff(
        self,
        policy: EntityPolicy,
        a: Action,
        fresh: RawRemote,
        payload: dict[str, Any],
        agreed: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Three-way diff of the payload fields against a freshly read record.

        The planner's rule (``decide_field``), not a copy of it: what a stale write re-plans is
        what the next plan would have said."""
        remote = self.ctx.to_remote(policy, fresh, self.reverse(a.platform))
        bases = {c.field: c.base for c in a.changes}
        keep: dict[str, Any] = {}
        pulled: dict[str, Any] = {}
        agreed = dict(agreed)
        for name, value in payload.items():
            fp = policy.fields.get(name) or FieldPolicy(name)
            now = normalize_value(remote.get(name))
            base = normalize_value(bases[name]) if name in bases else MISSING
            change = decide_field(fp, normalize_value(value), base, now, writable=policy.writable)
            if change is None:
                continue  # already there
            if change.kind == "pull" or (change.kind == "conflict" and change.resolution == "remote_wins"):
                pulled[name] = remote.get(name)
                agreed[name] = remote.get(name)
            elif change.kind == "conflict" and change.resolution == "report":
                agreed[name] = remote.get(name)
            else:  # push, drift, erp_wins
                keep[name] = value
        return keep, pulled, agreed

    async def _deactivate(self, policy: EntityPolicy, a: Action) -> None:
        assert a.remote_id is not None
        field_name = policy.deactivate_field or "active"
        if a.local_only:  # already inactive remotely: only the base moves
            written = Written(a.remote_id, a.base_version)
        else:
            self._fence()
            written = await self.ctx.adapters[a.platform].update(
                a.entity, a.remote_id, {field_name: False}, {}, version=a.base_version
            )
        agreed = dict(a.agreed) or {field_name: False}
        self.ctx.store.save_base(
            self.ctx.tenant, a.platform, a.entity, a.erp_key, a.remote_id, agreed, version=written.version
        )
        self._record(a, "ok")

    async def _delete(self, policy: EntityPolicy, a: Action) -> None:
        assert a.remote_id is not None
        if not a.local_only:  # local_only: gone on both sides, only the binding is left
            self._fence()
            with contextlib.suppress(NotFound):  # already gone: the goal is reached
                await self.ctx.adapters[a.platform].delete(a.entity, a.remote_id, version=a.base_version)
        self.ctx.store.unbind(self.ctx.tenant, a.platform, a.entity, a.erp_key)
        self._record(a, "ok")
