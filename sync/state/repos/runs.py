"""Runs and run items: what each plan, apply, reconcile and pull did (status, reports)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, insert, update
from sqlmodel import col, select

from sync.errors import utcnow
from sync.state.models import Intent, Run, RunItem
from sync.state.repos._base import StoreBase, iter_chunks, row_id


class RunsRepo(StoreBase):
    """Runs (plan, apply, reconcile, pull…) and their items."""

    def start_run(self, tenant: str, kind: str, mode: str = "full", plan_hash: str | None = None) -> int:
        row = Run(tenant=tenant, kind=kind, mode=mode, plan_hash=plan_hash).model_dump(exclude={"id"})
        with self._begin() as conn:  # Core, not the ORM: a change event starts one run each
            return row_id(conn.execute(insert(Run).returning(col(Run.id)), row).scalar_one())

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        counts: Mapping[str, Any],
        requests: Mapping[str, Any],
        error: str | None = None,
    ) -> None:
        with self.session() as s:
            s.exec(
                update(Run)
                .where(col(Run.id) == run_id)
                .values(
                    status=status,
                    counts=dict(counts),
                    requests=dict(requests),
                    error=error,
                    finished_at=utcnow(),
                )
            )
            s.commit()

    def add_run_items(self, items: Iterable[RunItem]) -> None:
        rows = [
            {
                c: getattr(i, c)
                for c in (
                    "run_id",
                    "platform",
                    "entity",
                    "erp_key",
                    "action",
                    "outcome",
                    "remote_id",
                    "request_id",
                    "detail",
                )
            }
            for i in items
        ]
        if not rows:
            return
        with self._begin() as conn:
            for chunk in iter_chunks(rows, 2000):
                conn.execute(insert(RunItem), chunk)

    def runs(self, tenant: str | None = None, limit: int = 10) -> list[Run]:
        with self.session() as s:
            stmt = select(Run)
            if tenant:
                stmt = stmt.where(col(Run.tenant) == tenant)
            return list(s.exec(stmt.order_by(col(Run.id).desc()).limit(limit)))

    def get_run(self, run_id: int) -> Run | None:
        """One run, without its items."""
        with self.session() as s:
            return s.get(Run, run_id)

    def run(self, run_id: int) -> tuple[Run | None, list[RunItem]]:
        with self.session() as s:
            run = s.get(Run, run_id)
            items = list(s.exec(select(RunItem).where(col(RunItem.run_id) == run_id)))
            return run, items

    def run_problems(self, run_id: int, limit: int = 10000) -> list[RunItem]:
        """The items of a run that were not ok (failed, quarantined, deferred, held…), in order."""
        with self.session() as s:
            stmt = (
                select(RunItem)
                .where(col(RunItem.run_id) == run_id, col(RunItem.outcome) != "ok")
                .order_by(col(RunItem.id))
                .limit(limit)
            )
            return list(s.exec(stmt))

    def run_intents(self, run_id: int) -> list[Intent]:
        """The creates a run logged that did not end ``done`` (pending, unknown, failed, abandoned)."""
        with self.session() as s:
            stmt = (
                select(Intent)
                .where(col(Intent.run_id) == run_id, col(Intent.state) != "done")
                .order_by(col(Intent.id))
            )
            return list(s.exec(stmt))

    def last_item(self, tenant: str, platform: str, entity: str, erp_key: str) -> RunItem | None:
        with self.session() as s:
            stmt = (
                select(RunItem)
                .join(Run, col(Run.id) == col(RunItem.run_id))
                .where(
                    col(Run.tenant) == tenant,
                    col(RunItem.platform) == platform,
                    col(RunItem.entity) == entity,
                    col(RunItem.erp_key) == erp_key,
                )
                .order_by(col(RunItem.id).desc())
                .limit(1)
            )
            return s.exec(stmt).first()

    def last_runs_by_kind(self, tenant: str) -> dict[str, Run]:
        """The latest finished run of each kind of ``tenant``."""
        latest = (
            select(func.max(col(Run.id)))
            .where(col(Run.tenant) == tenant, col(Run.finished_at).is_not(None))
            .group_by(col(Run.kind))
        )
        with self.session() as s:
            return {r.kind: r for r in s.exec(select(Run).where(col(Run.id).in_(latest)))}

    def last_run_with(self, tenant: str, kind: str, statuses: Iterable[str]) -> Run | None:
        """The latest run of ``kind`` that ended in one of ``statuses``."""
        stmt = (
            select(Run)
            .where(col(Run.tenant) == tenant, col(Run.kind) == kind, col(Run.status).in_(list(statuses)))
            .order_by(col(Run.id).desc())
            .limit(1)
        )
        with self.session() as s:
            return s.exec(stmt).first()
