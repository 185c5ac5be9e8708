"""Maintenance: stale runs of dead workers, retention of history, forgetting a tenant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import col, select

from sync.errors import utcnow
from sync.state.models import (
    AdoptedEdit,
    AlertCounter,
    AlertState,
    BaseSnapshot,
    Binding,
    Cursor,
    InboundEvent,
    InboundRecord,
    Intent,
    Lease,
    PlatformToken,
    Quarantine,
    Run,
    RunItem,
)
from sync.state.repos._base import StoreBase


class MaintenanceRepo(StoreBase):
    """Stale runs, retention of history, and forgetting a tenant."""

    def fail_stale_runs(
        self, older_than: dt.datetime, reason: str, *, kinds: Iterable[str], tenant: str | None = None
    ) -> int:
        """Mark ``running`` runs of ``kinds`` started before ``older_than`` failed with ``reason``.

        The caller picks ``older_than`` so such a run cannot still be going (for worker tasks:
        the hard time limit kills any task older than that), so it is the run of a worker
        that died (kill -9, OOM) and would otherwise show ``running`` forever."""
        stmt = (
            update(Run)
            .where(
                col(Run.status) == "running", col(Run.kind).in_(list(kinds)), col(Run.started_at) < older_than
            )
            .values(status="failed", error=reason, finished_at=utcnow())
        )
        if tenant is not None:
            stmt = stmt.where(col(Run.tenant) == tenant)
        with self._begin() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    def purge_history(
        self,
        now: dt.datetime,
        *,
        events_days: int,
        inbound_records_days: int,
        run_items_days: int,
        runs_days: int,
        keep_runs: int,
        batch: int = 5000,
    ) -> dict[str, int]:
        """Retention: delete old history in short batches (see ``RetentionSettings``).

        Deleted: inbox rows applied (``done``) more than ``events_days`` ago; inbound record
        markers older than ``inbound_records_days``; run items of runs finished more than
        ``run_items_days`` ago; finished runs older than ``runs_days`` beyond each tenant's
        newest ``keep_runs``. Never: unapplied or failed inbox rows, running runs, bindings,
        bases, intents, cursors (the exactly-once memory)."""
        day = dt.timedelta(days=1)
        out = {"inbound_events": 0, "inbound_records": 0, "run_items": 0, "runs": 0}

        def drain(table: str, ids_query: Any, model: Any) -> None:
            while True:
                with self._begin() as conn:
                    ids = [r[0] for r in conn.execute(ids_query.limit(batch))]
                    if not ids:
                        return
                    conn.execute(delete(model).where(model.id.in_(ids)))
                out[table] += len(ids)
                if len(ids) < batch:
                    return

        drain(
            "inbound_events",
            select(col(InboundEvent.id)).where(
                col(InboundEvent.status) == "done",
                col(InboundEvent.processed_at) < now - events_days * day,
            ),
            InboundEvent,
        )
        drain(
            "inbound_records",
            select(col(InboundRecord.id)).where(
                col(InboundRecord.delivered_at) < now - inbound_records_days * day
            ),
            InboundRecord,
        )
        old_runs = select(col(Run.id)).where(
            col(Run.status) != "running",
            col(Run.finished_at) < now - run_items_days * day,
        )
        drain("run_items", select(col(RunItem.id)).where(col(RunItem.run_id).in_(old_runs)), RunItem)
        with self._connect() as conn:
            tenants = [r[0] for r in conn.execute(select(col(Run.tenant)).distinct())]
        for tenant in tenants:
            with self._connect() as conn:
                newest = [
                    i
                    for i in conn.execute(
                        select(col(Run.id))
                        .where(col(Run.tenant) == tenant)
                        .order_by(col(Run.id).desc())
                        .limit(keep_runs)
                    ).scalars()
                    if i is not None
                ]
            if len(newest) < keep_runs:
                continue
            doomed = select(col(Run.id)).where(
                col(Run.tenant) == tenant,
                col(Run.id) < min(newest),
                col(Run.status) != "running",
                col(Run.finished_at) < now - runs_days * day,
            )
            while True:
                with self._begin() as conn:
                    ids = [r[0] for r in conn.execute(doomed.limit(batch))]
                    if ids:
                        conn.execute(delete(RunItem).where(col(RunItem.run_id).in_(ids)))
                        conn.execute(delete(Run).where(col(Run.id).in_(ids)))
                out["runs"] += len(ids)
                if len(ids) < batch:
                    break
        return out

    def purge_tenant(self, tenant: str) -> None:
        """Forget everything about a tenant (tests, decommissioning)."""
        with self.session() as s:
            ids = select(col(Binding.id)).where(col(Binding.tenant) == tenant)
            s.exec(delete(BaseSnapshot).where(col(BaseSnapshot.binding_id).in_(ids)))
            for model in (
                Binding,
                Intent,
                Quarantine,
                InboundEvent,
                InboundRecord,
                AdoptedEdit,
                PlatformToken,
                AlertState,
                AlertCounter,
            ):
                s.exec(delete(model).where(col(model.tenant) == tenant))
            run_ids = select(col(Run.id)).where(col(Run.tenant) == tenant)
            s.exec(delete(RunItem).where(col(RunItem.run_id).in_(run_ids)))
            s.exec(delete(Run).where(col(Run.tenant) == tenant))
            s.exec(delete(Cursor).where(col(Cursor.tenant) == tenant))
            s.exec(
                delete(Lease).where(
                    or_(
                        col(Lease.name) == f"reconcile:{tenant}",
                        col(Lease.name).like(f"{tenant}:%"),
                    )
                )
            )
            s.commit()
