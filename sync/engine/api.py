"""The engine facade: collect → plan → apply, used by the CLI, the Celery tasks and the web app.

The steps live in their own modules: ``collect`` (read and map), ``sync.core.planner``
(the pure three-way diff), ``apply`` (the executor and its intent protocol), ``intents``
(settle open intents first), ``writeback`` (platform edits into the ERP) and ``changes``
(ERP change detection for polling). This module wires them per tenant and records runs.

Every entry point is synchronous (it runs its own event loop for the async clients) and
takes ids and plain values, so a task that runs twice does the same thing twice: the
intent log, the bindings and the bases make the second run a no-op.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from sync.core.plan import Plan
from sync.core.planner import make_plan
from sync.core.platforms import tables as platform_tables
from sync.engine.apply import ApplyContext, ApplyResult, Executor
from sync.engine.changes import change_keys, erp_changes_since
from sync.engine.collect import Collected, Mode, collect, relaxed_gc, remote_fields, save_quarantine
from sync.engine.intents import resolve_open_intents
from sync.engine.runtime import TenantRuntime, build_runtime
from sync.engine.writeback import make_write_back
from sync.errors import utcnow
from sync.observability import metrics
from sync.observability.logging import bind_log_context, log_context
from sync.redact import scrub
from sync.settings import Settings
from sync.state.store import StateStore

log = logging.getLogger("erpsync.engine")

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

    def _make_plan(self, rt: TenantRuntime, col: Collected, mode: Mode, force: bool) -> Plan:
        from sync.engine.adoption import warn_first_adoption

        plan = make_plan(
            rt.tenant_id,
            col.policies.values(),
            col.inputs,
            mode=mode,
            batch_size=rt.batch_size(),
            safety_share=rt.tenant.safety_share,
            force=force,
        )
        warn_first_adoption(self.store, rt.tenant_id, plan)  # a new state store says so first
        return plan

    # --- plan -----------------------------------------------------------------------------

    def plan(self, tenant_id: str | None = None, *, mode: Mode = "full", force: bool = False) -> Plan:
        """A dry run: nothing is written to the platforms (validation quarantine is recorded)."""
        rt = self.runtime(tenant_id)

        async def go() -> Plan:
            adapters = rt.adapters()
            try:
                with relaxed_gc():
                    col = await collect(self.store, rt, adapters, mode, for_apply=False)
            finally:
                for a in adapters.values():
                    await a.aclose()
            save_quarantine(self.store, rt, col)
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
                resolved = await resolve_open_intents(self.store, rt, adapters, fence)
                the_mode: Mode = plan.mode if plan is not None else mode
                col = await collect(self.store, rt, adapters, the_mode, keys)
                save_quarantine(self.store, rt, col)
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
                    write_back=make_write_back(self.store, rt),
                    erp_hashes=col.erp_hashes,
                    lookup_before_create=platform_tables.lookup_before_create()
                    if keys is not None or the_mode == "fast"
                    else frozenset(),
                    accepts_duplicates=platform_tables.accepts_duplicates(),
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
            metrics.run_finished(rt.tenant_id, kind, mode, "failed", time.monotonic() - started)
            raise
        for item in result.items:
            item.run_id = run_id
        self.store.add_run_items(result.items)
        counts = {"/".join(k): n for k, n in sorted(result.counts.items())}
        status = "ok" if result.failed == 0 else "partial"
        self.store.finish_run(run_id, status=status, counts=counts, requests=requests)
        metrics.run_finished(rt.tenant_id, kind, mode, status, time.monotonic() - started, result.counts)
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
        targets = change_keys(self.runtime(tenant_id), entity)[1] or [entity]
        return self.apply(
            tenant_id, mode="fast", fence=fence, kind="sync_keys", keys={t: wanted for t in targets}
        )

    def resolve_intents(self, tenant_id: str | None = None, *, fence: Fence | None = None) -> int:
        rt = self.runtime(tenant_id)

        async def go() -> int:
            adapters = rt.adapters()
            try:
                return await resolve_open_intents(self.store, rt, adapters, fence)
            finally:
                for a in adapters.values():
                    await a.aclose()

        return self._run(go())

    def erp_changes_since(
        self, tenant_id: str | None, entity: str, since: dt.datetime | None
    ) -> tuple[list[str], dt.datetime | None]:
        """ERP keys of ``entity`` rows changed after ``since``, and the newest change stamp
        (see ``sync.engine.changes.erp_changes_since``)."""
        return erp_changes_since(self.runtime(tenant_id), entity, since)


def now() -> dt.datetime:
    return utcnow()
