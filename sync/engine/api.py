"""The engine facade: collect → plan → apply, used by the CLI, the Celery tasks and the web app.

Every entry point is synchronous (it runs its own event loop for the async clients) and
takes ids and plain values, so a task that runs twice does the same thing twice: the
intent log, the bindings and the bases make the second run a no-op.
"""

from __future__ import annotations

import asyncio
import contextvars
import contextlib
import datetime as dt
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import httpx

from sync.core.mapping import MapContext
from sync.core.plan import Plan
from sync.core.planner import EntityInputs, make_plan
from sync.core.records import Desired, EntityPolicy, Platform, QuarantineEntry, Remote
from sync.core.remote_view import to_remote
from sync.engine.adapters.base import PlatformAdapter, RawRemote
from sync.engine.apply import (
    ABSENT,
    UNSEARCHABLE,
    ApplyContext,
    ApplyResult,
    Executor,
    Several,
    held_reason,
    match_lookup,
)
from sync.engine.runtime import TenantRuntime, build_runtime
from sync.errors import ClientError, ConfigError, ErpsyncError, SourceError, utcnow
from sync.observability.logging import bind_log_context, log_context
from sync.redact import scrub
from sync.settings import Settings
from sync.sources.base import key_str, try_timestamp
from sync.state.models import AdoptedEdit, Intent
from sync.state.store import StateStore

log = logging.getLogger("erpsync.engine")

Mode = Literal["fast", "full"]
Fence = Callable[[], None]
ProgressHook = Callable[[str, str, int], None]
PlanHook = Callable[[Plan], None]
T = TypeVar("T")


@dataclass
class RunSummary:
    run_id: int
    tenant: str
    kind: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)  # "platform/entity/action/outcome" -> n
    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # platform -> "METHOD path status" -> n
    duration: float = 0.0
    plan_hash: str | None = None
    resolved_intents: int = 0
    quarantined: int = 0

    @property
    def total_requests(self) -> int:
        return sum(sum(v.values()) for v in self.requests.values())

    def writes(self) -> int:
        return sum(
            n
            for reqs in self.requests.values()
            for k, n in reqs.items()
            if k.split(" ", 1)[0] in ("POST", "PUT", "PATCH", "DELETE") and "/auth/" not in k
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tenant": self.tenant,
            "kind": self.kind,
            "status": self.status,
            "counts": dict(self.counts),
            "requests": {p: dict(r) for p, r in self.requests.items()},
            "total_requests": self.total_requests,
            "duration": round(self.duration, 3),
            "plan_hash": self.plan_hash,
            "resolved_intents": self.resolved_intents,
            "quarantined": self.quarantined,
        }


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


async def _cancel_leftovers() -> None:
    """Cancel tasks a finished call left behind (as ``asyncio.run`` does), so none of them
    runs on into the next call on a kept loop."""
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        await asyncio.gather(*leftovers, return_exceptions=True)


class Engine:
    """See module docstring. One instance per process is enough (it caches runtimes)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: StateStore | None = None,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        keep_clients: bool = False,
    ) -> None:
        """``keep_clients``: run every call on one long-lived event loop and keep each
        tenant's platform clients (connection pools, Redis connections, SmartKasa session)
        between calls. A worker process that syncs a few keys per task saves a loop, a
        client, a TLS/TCP handshake and a Redis handshake per event this way. Such an engine
        belongs to one thread; ``close()`` releases what it keeps."""
        self.settings = settings
        self.store = store or StateStore(settings.state_url)
        self.transports = dict(transports or {})
        self.keep_clients = keep_clients
        self._runtimes: dict[str, TenantRuntime] = {}
        self._runner: asyncio.Runner | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one engine call to completion: on a fresh loop, or on the kept one."""
        if not self.keep_clients:
            return asyncio.run(coro)
        if self._runner is None:
            self._runner = asyncio.Runner()
        try:
            # In the caller's context, not the runner's first one: the log context (tenant, run
            # id) set by this call's caller reaches the engine's tasks.
            return self._runner.run(coro, context=contextvars.copy_context())
        finally:
            self._runner.run(_cancel_leftovers())

    def close(self) -> None:
        """Close the kept clients and the loop (a no-op for an engine that keeps nothing)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            for rt in self._runtimes.values():
                runner.run(rt.aclose())
        finally:
            runner.close()

    def runtime(self, tenant_id: str | None) -> TenantRuntime:
        tid, _ = self.settings.tenant(tenant_id)
        if tid not in self._runtimes:
            self._runtimes[tid] = build_runtime(
                self.settings,
                tid,
                store=self.store,
                transports=self.transports,
                keep_clients=self.keep_clients,
            )
        return self._runtimes[tid]

    def source_entities(self, tenant_id: str | None) -> list[str]:
        rt = self.runtime(tenant_id)
        out: dict[str, None] = {}
        for platform in rt.platforms():
            for name in rt.mappings.source_entities(platform):
                out[name] = None
        return list(out)

    # --- collect --------------------------------------------------------------------------

    async def _collect(
        self,
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
        for q in self.store.quarantined(rt.tenant_id, stage="apply", keys=wanted_any):
            held_apply.setdefault((q.platform, q.entity), {})[q.erp_key] = q.erp_hash
        for platform in rt.platforms():
            # Remote references are translated only when remote records are read (full mode).
            reverse = self.store.reverse_bindings(rt.tenant_id, platform) if mode == "full" else {}
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
                bases = self.store.load_bases(
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
                                self.store.release(rt.tenant_id, platform, entity, d.erp_key, stage="apply")
                    desired = keep
                if for_apply:  # only apply quarantines rows (a plan of 1M rows need not hold this)
                    hashes[(platform, entity)] = {d.erp_key: d.erp_hash for d in desired}
                if keys is not None:
                    wanted_keys = {d.erp_key for d in desired} | {q.erp_key for q in result.quarantine}
                    bases = {k: b for k, b in bases.items() if k in wanted_keys}
                remotes: dict[str, Remote] | None = None
                if mode == "full":
                    remotes = {}
                    async for raw in adapters[platform].list_remote(entity):
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

    def _save_quarantine(self, rt: TenantRuntime, col: Collected) -> int:
        n = 0
        for (platform, entity), entries in col.quarantine.items():
            if col.complete:
                self.store.replace_validation_quarantine(rt.tenant_id, platform, entity, entries)
            else:
                inp = col.inputs.get((platform, entity))
                if inp and inp.desired:
                    self.store.release_many(
                        rt.tenant_id, platform, entity, [d.erp_key for d in inp.desired], stage="validate"
                    )
                if entries:
                    self.store.quarantine(rt.tenant_id, entries)
            n += len(entries)
        return n

    def _make_plan(self, rt: TenantRuntime, col: Collected, mode: Mode, force: bool) -> Plan:
        return make_plan(
            rt.tenant_id,
            col.policies.values(),
            col.inputs,
            mode=mode,
            batch_size=rt.batch_size(),
            safety_share=rt.tenant.safety_share,
            force=force,
        )

    # --- plan -----------------------------------------------------------------------------

    def plan(self, tenant_id: str | None = None, *, mode: Mode = "full", force: bool = False) -> Plan:
        """A dry run: nothing is written to the platforms (validation quarantine is recorded)."""
        rt = self.runtime(tenant_id)

        async def go() -> Plan:
            adapters = rt.adapters()
            try:
                with relaxed_gc():
                    col = await self._collect(rt, adapters, mode, for_apply=False)
            finally:
                for a in adapters.values():
                    await a.aclose()
            self._save_quarantine(rt, col)
            with relaxed_gc():
                return self._make_plan(rt, col, mode, force)

        return self._run(go())

    # --- apply ----------------------------------------------------------------------------

    def apply(
        self,
        tenant_id: str | None = None,
        plan: Plan | None = None,
        *,
        mode: Mode = "full",
        force: bool = False,
        fence: Fence | None = None,
        progress: ProgressHook | None = None,
        on_plan: PlanHook | None = None,
        kind: str = "apply",
        keys: Mapping[str, set[str]] | None = None,
    ) -> RunSummary:
        """Resolve open intents, then apply ``plan`` (refused when stale) or a fresh plan."""
        # log_context: records logged during the run carry its tenant, kind and id (bound in _apply)
        with self.store.pinned(), log_context(kind=kind):  # one state-store connection for the run
            return self._apply(tenant_id, plan, mode, force, fence, progress, on_plan, kind, keys)

    def _apply(
        self,
        tenant_id: str | None,
        plan: Plan | None,
        mode: Mode,
        force: bool,
        fence: Fence | None,
        progress: ProgressHook | None,
        on_plan: PlanHook | None,
        kind: str,
        keys: Mapping[str, set[str]] | None,
    ) -> RunSummary:
        rt = self.runtime(tenant_id)
        run_id = self.store.start_run(
            rt.tenant_id, kind, mode if plan is None else plan.mode, plan.hash if plan else None
        )
        bind_log_context(tenant=rt.tenant_id, run_id=run_id)
        started = time.monotonic()

        only = None
        if keys is not None:  # a change event touches only the platforms mapping that ERP entity
            only = [p for p in rt.platforms() if set(keys) & set(rt.mappings.source_entities(p))]

        async def go() -> tuple[Plan, ApplyResult, int, dict[str, dict[str, int]]]:
            adapters = rt.adapters(only)
            try:
                resolved = await self._resolve_intents(rt, adapters, fence)
                the_mode: Mode = plan.mode if plan is not None else mode
                col = await self._collect(rt, adapters, the_mode, keys)
                self._save_quarantine(rt, col)
                fresh = self._make_plan(rt, col, the_mode, force)
                if plan is not None:
                    plan.check_fresh(fresh.fingerprints)
                todo = plan.unmasked(fresh) if plan is not None else fresh  # sensitive values
                if on_plan:
                    on_plan(todo)
                ctx = ApplyContext(
                    tenant=rt.tenant_id,
                    store=self.store,
                    adapters=adapters,
                    policies=col.policies,
                    concurrency=rt.concurrency(),
                    fence=fence,
                    progress=progress,
                    run_id=run_id,
                    to_remote=lambda p, raw, rev: remote_fields(rt, p, raw, rev).fields,
                    write_back=self._write_back(rt),
                    erp_hashes=col.erp_hashes,
                    lookup_before_create=frozenset({"smartkasa"})
                    if keys is not None or the_mode == "fast"
                    else frozenset(),
                    accepts_duplicates=frozenset({"smartkasa"}),
                )
                result = await Executor(ctx).run(todo)
                requests = {p: a.request_counts() for p, a in adapters.items()}
                return todo, result, resolved, requests
            finally:
                for a in adapters.values():
                    await a.aclose()

        try:
            done_plan, result, resolved, requests = self._run(go())
        except BaseException as exc:
            self.store.finish_run(
                run_id, status="failed", counts={}, requests={}, error=scrub(str(exc))[:2000]
            )
            raise
        for item in result.items:
            item.run_id = run_id
        self.store.add_run_items(result.items)
        counts = {"/".join(k): n for k, n in sorted(result.counts.items())}
        status = "ok" if result.failed == 0 else "partial"
        self.store.finish_run(run_id, status=status, counts=counts, requests=requests)
        return RunSummary(
            run_id,
            rt.tenant_id,
            kind,
            status,
            counts,
            requests,
            time.monotonic() - started,
            done_plan.hash,
            resolved,
            len(result.quarantined),
        )

    def reconcile(
        self, tenant_id: str | None = None, *, mode: Mode = "full", fence: Fence | None = None
    ) -> RunSummary:
        return self.apply(tenant_id, mode=mode, fence=fence, kind="reconcile")

    def sync_keys(
        self, tenant_id: str | None, entity: str, keys: Iterable[str], *, fence: Fence | None = None
    ) -> RunSummary:
        """Sync a few ERP rows now (change events): fast mode, no deletes inferred."""
        wanted = {str(k) for k in keys}
        # A child source (stock rows) names its parents' keys: those parents are synced.
        targets = _change_keys(self.runtime(tenant_id), entity)[1] or [entity]
        return self.apply(
            tenant_id, mode="fast", fence=fence, kind="sync_keys", keys={t: wanted for t in targets}
        )

    def resolve_intents(self, tenant_id: str | None = None, *, fence: Fence | None = None) -> int:
        rt = self.runtime(tenant_id)

        async def go() -> int:
            adapters = rt.adapters()
            try:
                return await self._resolve_intents(rt, adapters, fence)
            finally:
                for a in adapters.values():
                    await a.aclose()

        return self._run(go())

    async def _resolve_intents(
        self, rt: TenantRuntime, adapters: Mapping[str, PlatformAdapter], fence: Fence | None
    ) -> int:
        """Settle every pending/unknown intent by lookup before anything else.

        A create whose outcome is unknown is settled only by a lookup that could have found it
        (``match_lookup``): found → bound; absent → abandoned (the next plan creates it);
        unsearchable → held for a person (``erpsync resolve``); lookup failed → left open.
        """
        policies = rt.policies()
        resolved = 0
        groups: dict[tuple[str, str], list[Intent]] = {}
        for intent in self.store.open_intents(rt.tenant_id):
            assert intent.id is not None
            policy = policies.get((intent.platform, intent.entity))
            adapter = adapters.get(intent.platform)
            if adapter is None and policy is not None:
                continue  # that platform is not part of this run (a change event elsewhere)
            if policy is None or adapter is None:
                self.store.set_intent(intent.id, "failed", error="no mapping or platform configured any more")
                continue
            existing = self.store.binding(rt.tenant_id, intent.platform, intent.entity, intent.erp_key)
            if existing is not None:
                self.store.set_intent(intent.id, "done", remote_id=existing.remote_id)
                resolved += 1
                continue
            groups.setdefault((intent.platform, intent.entity), []).append(intent)
        for (platform, entity), intents in groups.items():
            policy = policies[(platform, entity)]
            try:
                found = await adapters[platform].find_many(
                    entity, [dict(i.natural_key) for i in intents], marker=policy.marker
                )
            except ErpsyncError as exc:
                if exc.kind == "terminal" and not isinstance(exc, ClientError):
                    raise
                log.warning(
                    "%s/%s: resolving %d open intents failed: %s", platform, entity, len(intents), exc
                )
                continue
            for intent, candidates in zip(intents, found, strict=True):
                assert intent.id is not None
                bound = self.store.reverse_bindings(rt.tenant_id, platform).get(entity, {})
                got = match_lookup(policy, intent.natural_key, candidates, bound, intent.erp_key, own=True)
                if got == UNSEARCHABLE:
                    self.store.set_intent(intent.id, "unknown", error=held_reason(policy, intent.erp_key))
                    continue
                if got == ABSENT:
                    self.store.set_intent(
                        intent.id, "abandoned", error="lookup found nothing: the create never landed"
                    )
                elif isinstance(got, RawRemote):
                    if fence:
                        fence()
                    reverse = self.store.reverse_bindings(rt.tenant_id, platform)
                    remote = remote_fields(rt, policy, got, reverse)
                    self.store.save_base(
                        rt.tenant_id,
                        platform,
                        entity,
                        intent.erp_key,
                        remote.remote_id,
                        remote.fields,
                        children=remote.children,
                        version=got.version,
                    )
                    self.store.set_intent(intent.id, "done", remote_id=remote.remote_id)
                else:
                    assert isinstance(got, Several)
                    self.store.set_intent(intent.id, "failed", error=f"{got.count} remote records match")
                    self.store.quarantine(
                        rt.tenant_id,
                        [
                            QuarantineEntry(
                                cast(Platform, platform),
                                entity,
                                intent.erp_key,
                                None,
                                "ambiguous_natural_key",
                                f"{got.count} remote records match the natural key of an unfinished "
                                "create; keep one and delete the others on the platform",
                                stage="apply",
                            )
                        ],
                    )
                resolved += 1
        return resolved

    def _write_back(self, rt: TenantRuntime) -> Callable[[EntityPolicy, str, dict[str, Any], str], bool]:
        """Remote edits of pull/both fields → the ERP table when writable, else adopted_edits."""

        def write(policy: EntityPolicy, erp_key: str, fields: dict[str, Any], why: str) -> bool:
            """True when the ERP row was written; False when the edit waits in adopted_edits."""
            em = rt.mappings.entity(policy.platform, policy.entity)
            erp_fields = em.to_erp(fields)
            if em.writable and erp_fields:
                try:
                    rt.source.write_back(em.source_entity, em.erp_key_field, erp_key, erp_fields)
                    return True
                except ConfigError as exc:
                    # The mapping allows write-back but the source table does not (a query, a
                    # file export): keep the edit for the ERP to consume instead of losing it.
                    log.info("%s: %s; recording the edit in adopted_edits", policy.entity, exc.message)
            pending = {
                (e.entity, e.erp_key, e.field, e.new_value) for e in self.store.adopted_edits(rt.tenant_id)
            }
            edits = []
            for name, value in (erp_fields or fields).items():
                text = None if value is None else str(value)
                if (policy.entity, erp_key, name, text) not in pending:  # recorded once until consumed
                    edits.append(
                        AdoptedEdit(
                            tenant=rt.tenant_id,
                            platform=policy.platform,
                            entity=policy.entity,
                            erp_key=erp_key,
                            field=name,
                            new_value=text,
                            resolution="pulled",
                        )
                    )
            self.store.add_adopted_edits(edits)
            return False

        return write

    # --- change detection for SQL sources ---------------------------------------------------------

    def erp_changes_since(
        self, tenant_id: str | None, entity: str, since: dt.datetime | None
    ) -> tuple[list[str], dt.datetime | None]:
        """ERP keys of ``entity`` rows changed after ``since``, and the newest change stamp.

        The stamp is the entity's change column (``erp.entities.<x>.updated_at``: any name;
        ISO text, SQL datetime or epoch seconds, see ``parse_timestamp``). An entity without
        one cannot be polled: ``([], since)``, said once in the log (and by ``config
        check``); only reconciles see its changes. Rows of a child source (a product's stock
        rows) give their parent's key (the ``parent_key`` column): ``sync_keys`` of that
        entity syncs those parents.

        The source reads inclusively (``>= since``: a row written in the watermark's own
        second is not missed), so rows stamped exactly ``since`` come back; they ride along
        only when some row is strictly newer, so a quiet ERP emits nothing. The first poll
        (``since`` None) only dates the newest row.
        """
        rt = self.runtime(tenant_id)
        key_column, _ = _change_keys(rt, entity)
        column = rt.source.change_column(entity)
        if key_column is None:
            return [], since
        if column is None:
            _warn_unpolled(rt.tenant_id, entity)
            return [], since
        if since is None:
            return [], rt.source.max_updated_at(entity)
        keys: dict[str, None] = {}
        newest, fresh, bad = since, False, 0
        for row in rt.source.read(entity, since=since):
            stamp = try_timestamp(row.get(column))
            key = key_str(row.get(key_column))
            if stamp is None or key is None:
                bad += 1  # no date or no key: only a reconcile can tell whether it changed
                continue
            if stamp < since:
                continue
            keys[key] = None
            if stamp > since:
                fresh = True
                newest = max(newest, stamp)
        if bad:
            log.warning(
                "%s/%s: %d row(s) have no readable %r or %r value; only reconciles sync them",
                rt.tenant_id,
                entity,
                bad,
                column,
                key_column,
            )
        return (list(keys), newest) if fresh else ([], since)


def _change_keys(rt: TenantRuntime, entity: str) -> tuple[str | None, list[str]]:
    """(the column of ``entity``'s rows that names ERP keys, the mapped ERP entities they
    belong to): the entity's own key when a mapping reads it as records, else the
    ``parent_key`` column of the child collections it feeds, naming their parents."""
    own: str | None = None
    parents: dict[str, str] = {}
    for platform in rt.platforms():
        for em in rt.mappings.entities(platform):
            if em.source_entity == entity:
                own = em.erp_key_field
            for source, parent_col in em.child_sources.values():
                if source == entity:
                    parents.setdefault(em.source_entity, parent_col)
    if own is not None:
        return own, [entity]
    if parents:
        return next(iter(parents.values())), list(parents)
    return None, []


_UNPOLLED: set[tuple[str, str]] = set()


def _warn_unpolled(tenant: str, entity: str) -> None:
    """Say once per process that an entity's changes wait for reconciles (no change column)."""
    if (tenant, entity) in _UNPOLLED:
        return
    _UNPOLLED.add((tenant, entity))
    log.warning(
        "%s: ERP entity %r has no change column, so polling cannot see its edits; only "
        "reconciles sync them. Set erp.entities.%s.updated_at to the column that dates a "
        "row's last change (ISO text, SQL datetime or epoch seconds)",
        tenant,
        entity,
        entity,
    )


def now() -> dt.datetime:
    return utcnow()
