"""Quarantine: rows that cannot be synced, held with the reason and the ERP content hash
that releases them when the ERP row changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import delete, func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from sync.core.records import QuarantineEntry
from sync.errors import utcnow
from sync.state.models import Quarantine
from sync.state.repos._base import StoreBase, iter_chunks


class QuarantineRepo(StoreBase):
    """Rows held back from syncing, one per record and stage, with the reason."""

    def quarantine(self, tenant: str, entries: Iterable[QuarantineEntry]) -> int:
        """Upsert quarantine rows (one per record and stage; the latest reason wins)."""
        n = 0
        with self.session() as s:
            for e in entries:
                row = s.exec(
                    select(Quarantine).where(
                        col(Quarantine.tenant) == tenant,
                        col(Quarantine.platform) == e.platform,
                        col(Quarantine.entity) == e.entity,
                        col(Quarantine.erp_key) == e.erp_key,
                        col(Quarantine.stage) == e.stage,
                    )
                ).one_or_none()
                if row is None:
                    row = Quarantine(
                        tenant=tenant,
                        platform=e.platform,
                        entity=e.entity,
                        erp_key=e.erp_key,
                        stage=e.stage,
                        field=e.field,
                        rule=e.rule,
                        message=e.message,
                        value=e.value,
                        erp_hash=e.erp_hash,
                        request_id=e.request_id,
                    )
                else:
                    row.field, row.rule, row.message, row.value = e.field, e.rule, e.message, e.value
                    row.erp_hash, row.request_id, row.updated_at = e.erp_hash, e.request_id, utcnow()
                s.add(row)
                n += 1
            s.commit()
        return n

    def replace_validation_quarantine(
        self, tenant: str, platform: str, entity: str, entries: Iterable[QuarantineEntry]
    ) -> tuple[int, int]:
        """Make the ``validate`` quarantine of one entity exactly ``entries``.

        Rows fixed in the ERP leave quarantine by themselves (they are simply not in the
        new list). Returns (quarantined, released).
        """
        entries = list(entries)
        keep = {e.erp_key for e in entries}
        with self.session() as s:
            current = {
                q.erp_key: q
                for q in s.exec(
                    select(Quarantine).where(
                        col(Quarantine.tenant) == tenant,
                        col(Quarantine.platform) == platform,
                        col(Quarantine.entity) == entity,
                        col(Quarantine.stage) == "validate",
                    )
                )
            }
            released = [q for k, q in current.items() if k not in keep]
            for q in released:
                s.delete(q)
            for e in entries:
                row = current.get(e.erp_key)
                if row is None:
                    row = Quarantine(
                        tenant=tenant,
                        platform=platform,
                        entity=entity,
                        erp_key=e.erp_key,
                        stage="validate",
                        field=e.field,
                        rule=e.rule,
                        message=e.message,
                        value=e.value,
                        erp_hash=e.erp_hash,
                    )
                elif (row.rule, row.field, row.message, row.erp_hash) != (
                    e.rule,
                    e.field,
                    e.message,
                    e.erp_hash,
                ):
                    row.field, row.rule, row.message, row.value = e.field, e.rule, e.message, e.value
                    row.erp_hash, row.updated_at = e.erp_hash, utcnow()
                else:
                    continue
                s.add(row)
            s.commit()
        return len(entries), len(released)

    def quarantined(
        self,
        tenant: str,
        platform: str | None = None,
        entity: str | None = None,
        stage: str | None = None,
        *,
        keys: Iterable[str] | None = None,
    ) -> list[Quarantine]:
        """Quarantined rows, optionally only those of ``keys`` (ERP keys: a change event
        needs its own few rows, not every row held for the tenant)."""
        stmt = select(Quarantine).where(col(Quarantine.tenant) == tenant)
        if platform:
            stmt = stmt.where(col(Quarantine.platform) == platform)
        if entity:
            stmt = stmt.where(col(Quarantine.entity) == entity)
        if stage:
            stmt = stmt.where(col(Quarantine.stage) == stage)
        order = (col(Quarantine.platform), col(Quarantine.entity), col(Quarantine.erp_key))
        with self.session() as s:
            if keys is None:
                return list(s.exec(stmt.order_by(*order)))
            out: list[Quarantine] = []
            for chunk in iter_chunks(sorted(set(keys)), 500):
                out.extend(s.exec(stmt.where(col(Quarantine.erp_key).in_(chunk))))
            out.sort(key=lambda q: (q.platform, q.entity, q.erp_key))
            return out

    def release(self, tenant: str, platform: str, entity: str, erp_key: str, stage: str | None = None) -> int:
        return self.release_many(tenant, platform, entity, [erp_key], stage=stage)

    def release_many(
        self, tenant: str, platform: str, entity: str, erp_keys: Iterable[str], *, stage: str | None = None
    ) -> int:
        """Take rows out of quarantine, in one transaction; returns how many were held."""
        n = 0
        with self.session() as s:
            for chunk in iter_chunks(sorted(set(erp_keys)), 500):
                stmt = delete(Quarantine).where(
                    col(Quarantine.tenant) == tenant,
                    col(Quarantine.platform) == platform,
                    col(Quarantine.entity) == entity,
                    col(Quarantine.erp_key).in_(chunk),
                )
                if stage:
                    stmt = stmt.where(col(Quarantine.stage) == stage)
                n += int(s.exec(stmt).rowcount or 0)
            s.commit()
        return n

    def quarantined_between(self, tenant: str, start: dt.datetime, end: dt.datetime) -> list[Quarantine]:
        """Quarantine rows of ``tenant`` created or changed between ``start`` and ``end``."""
        with self.session() as s:
            stmt = (
                select(Quarantine)
                .where(col(Quarantine.tenant) == tenant)
                .where(col(Quarantine.updated_at) >= start, col(Quarantine.updated_at) <= end)
                .order_by(col(Quarantine.platform), col(Quarantine.entity), col(Quarantine.erp_key))
            )
            return list(s.exec(stmt))

    def quarantine_by_rule(self, tenant: str) -> dict[tuple[str, str, str, str], int]:
        """Rows held per (platform, entity, stage, rule)."""
        stmt = (
            sa_select(  # five columns: more than sqlmodel.select is typed for
                col(Quarantine.platform),
                col(Quarantine.entity),
                col(Quarantine.stage),
                col(Quarantine.rule),
                func.count(),
            )
            .where(col(Quarantine.tenant) == tenant)
            .group_by(
                col(Quarantine.platform), col(Quarantine.entity), col(Quarantine.stage), col(Quarantine.rule)
            )
        )
        with self._connect() as conn:
            return {(str(p), str(e), str(st), str(r)): int(n) for p, e, st, r, n in conn.execute(stmt)}
