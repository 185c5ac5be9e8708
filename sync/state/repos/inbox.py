"""The webhook inbox, pull cursors, inbound record markers (which inbound record versions the
ERP sink holds) and adopted remote edits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from sync.errors import utcnow
from sync.state.models import AdoptedEdit, Cursor, InboundEvent, InboundRecord
from sync.state.repos._base import StoreBase, iter_chunks


class InboxRepo(StoreBase):
    """The webhook inbox, pull cursors, inbound record markers and adopted remote edits."""

    def get_cursor(self, tenant: str, platform: str, stream: str) -> str | None:
        with self.session() as s:
            row = s.get(Cursor, (tenant, platform, stream))
            return row.value if row else None

    def set_cursor(
        self, tenant: str, platform: str, stream: str, value: str, *, session: Session | None = None
    ) -> None:
        own = session is None
        s = session or self.session()
        try:
            row = s.get(Cursor, (tenant, platform, stream))
            if row is None:
                row = Cursor(tenant=tenant, platform=platform, stream=stream, value=value)
            else:
                row.value, row.updated_at = value, utcnow()
            s.add(row)
            if own:
                s.commit()
        finally:
            if own:
                s.close()

    def inbox_add(
        self, tenant: str, platform: str, event_id: str, type_: str, payload: Mapping[str, Any]
    ) -> bool:
        """Insert one inbound event; False when it was already there (a duplicate delivery)."""
        with self.session() as s:
            s.add(
                InboundEvent(
                    tenant=tenant, platform=platform, event_id=event_id, type=type_, payload=dict(payload)
                )
            )
            try:
                s.commit()
                return True
            except IntegrityError:
                s.rollback()
                return False

    def inbox_pending(
        self, tenant: str | None = None, *, older_than: dt.datetime | None = None, limit: int = 500
    ) -> list[InboundEvent]:
        with self.session() as s:
            stmt = select(InboundEvent).where(col(InboundEvent.status).in_(("pending", "waiting")))
            if tenant:
                stmt = stmt.where(col(InboundEvent.tenant) == tenant)
            if older_than:
                stmt = stmt.where(col(InboundEvent.received_at) < older_than)
            return list(s.exec(stmt.order_by(col(InboundEvent.id)).limit(limit)))

    def inbox_due(
        self,
        tenant: str | None = None,
        *,
        now: dt.datetime,
        older_than: dt.datetime | None = None,
        limit: int = 500,
    ) -> list[InboundEvent]:
        """Rows to (re)process now: ``pending`` first, then ``waiting``, each only when its
        next attempt is due; ``older_than`` bounds the receipt time of pending rows (the
        relay leaves fresh rows to their own task). Pending first, so any number of rows
        waiting for a binding can never starve a pending row out of ``limit``."""
        due = or_(
            col(InboundEvent.next_attempt_at).is_(None),
            col(InboundEvent.next_attempt_at) <= now,
        )
        out: list[InboundEvent] = []
        with self.session() as s:
            for status in ("pending", "waiting"):
                if len(out) >= limit:
                    break
                stmt = select(InboundEvent).where(col(InboundEvent.status) == status, due)
                if tenant:
                    stmt = stmt.where(col(InboundEvent.tenant) == tenant)
                if older_than and status == "pending":
                    stmt = stmt.where(col(InboundEvent.received_at) < older_than)
                order: tuple[Any, ...] = (col(InboundEvent.next_attempt_at), col(InboundEvent.id))
                if status == "pending":
                    order = (col(InboundEvent.id),)
                out.extend(s.exec(stmt.order_by(*order).limit(limit - len(out))))
        return out

    def inbox_mark(
        self,
        event_ids: Iterable[int],
        status: str,
        error: str | None = None,
        *,
        next_attempt_at: dt.datetime | None = None,
    ) -> None:
        """Set the status of inbox rows (one more attempt each); ``next_attempt_at``: backoff."""
        ids = list(event_ids)
        if not ids:
            return
        with self.session() as s:
            for chunk in iter_chunks(ids, 500):
                s.exec(
                    update(InboundEvent)
                    .where(col(InboundEvent.id).in_(chunk))
                    .values(
                        status=status,
                        error=error,
                        processed_at=utcnow() if status == "done" else None,
                        attempts=col(InboundEvent.attempts) + 1,
                        next_attempt_at=next_attempt_at,
                    )
                )
            s.commit()

    def inbox_mark_each(
        self, updates: Iterable[tuple[int | None, str, str | None, dt.datetime | None]]
    ) -> None:
        """Per-row ``inbox_mark`` (id, status, error, next attempt) in one transaction."""
        rows = [u for u in updates if u[0] is not None]
        if not rows:
            return
        with self.session() as s:
            for event_id, status, error, next_at in rows:
                s.exec(
                    update(InboundEvent)
                    .where(col(InboundEvent.id) == event_id)
                    .values(
                        status=status,
                        error=error,
                        processed_at=utcnow() if status == "done" else None,
                        attempts=col(InboundEvent.attempts) + 1,
                        next_attempt_at=next_at,
                    )
                )
            s.commit()

    def inbox_retry(self, tenant: str, statuses: Iterable[str] = ("failed", "dead")) -> list[int]:
        """Give ``failed``/``dead`` rows of a tenant a fresh start (``retry-failed``); their ids."""
        wanted = list(statuses)
        with self.session() as s:
            ids = list(
                s.exec(
                    select(col(InboundEvent.id))
                    .where(col(InboundEvent.tenant) == tenant, col(InboundEvent.status).in_(wanted))
                    .order_by(col(InboundEvent.id))
                )
            )
            for chunk in iter_chunks(ids, 500):
                s.exec(
                    update(InboundEvent)
                    .where(col(InboundEvent.id).in_(chunk))
                    .values(status="pending", attempts=0, next_attempt_at=None)
                )
            s.commit()
        return [i for i in ids if i is not None]

    def inbox_held(self, tenant: str, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are held as ``failed``/``dead`` for the tenant."""
        out: set[str] = set()
        with self.session() as s:
            for chunk in iter_chunks(sorted(set(event_ids)), 500):
                stmt = select(col(InboundEvent.event_id)).where(
                    col(InboundEvent.tenant) == tenant,
                    col(InboundEvent.event_id).in_(chunk),
                    col(InboundEvent.status).in_(("failed", "dead")),
                )
                out.update(str(e) for e in s.exec(stmt))
        return out

    def inbox_counts(self, tenant: str) -> dict[str, int]:
        """Inbox rows of a tenant per status (``erpsync status``)."""
        with self.session() as s:
            rows = s.exec(
                select(col(InboundEvent.status), func.count())
                .where(col(InboundEvent.tenant) == tenant)
                .group_by(col(InboundEvent.status))
            )
            return {str(status): int(n) for status, n in rows}

    def inbox_problems(self, tenant: str, limit: int = 50) -> list[InboundEvent]:
        """The latest ``failed`` and ``dead`` rows of a tenant, with their reasons."""
        with self.session() as s:
            stmt = (
                select(InboundEvent)
                .where(col(InboundEvent.tenant) == tenant, col(InboundEvent.status).in_(("failed", "dead")))
                .order_by(col(InboundEvent.id).desc())
                .limit(limit)
            )
            return list(s.exec(stmt))

    def inbound_seen(self, tenant: str, platform: str, stream: str, remote_ids: Iterable[str]) -> set[str]:
        ids = list(remote_ids)
        if not ids:
            return set()
        out: set[str] = set()
        with self._connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                stmt = select(col(InboundRecord.remote_id)).where(
                    col(InboundRecord.tenant) == tenant,
                    col(InboundRecord.platform) == platform,
                    col(InboundRecord.stream) == stream,
                    col(InboundRecord.remote_id).in_(chunk),
                )
                out.update(r for (r,) in conn.execute(stmt))
        return out

    def mark_inbound(
        self, session: Session, tenant: str, platform: str, stream: str, records: Iterable[tuple[str, str]]
    ) -> None:
        """Record delivered inbound records (remote_id, content hash) inside the sink's transaction."""
        for remote_id, chash in records:
            session.add(
                InboundRecord(
                    tenant=tenant, platform=platform, stream=stream, remote_id=remote_id, content_hash=chash
                )
            )

    def add_adopted_edits(self, edits: Iterable[AdoptedEdit]) -> None:
        with self.session() as s:
            s.add_all(list(edits))
            s.commit()

    def adopted_edits(self, tenant: str, *, unconsumed: bool = True) -> list[AdoptedEdit]:
        with self.session() as s:
            stmt = select(AdoptedEdit).where(col(AdoptedEdit.tenant) == tenant)
            if unconsumed:
                stmt = stmt.where(col(AdoptedEdit.consumed_at).is_(None))
            return list(s.exec(stmt.order_by(col(AdoptedEdit.id))))

    def inbox_oldest_pending(self, tenant: str) -> dt.datetime | None:
        """Receipt time of the oldest inbox event not yet applied (``pending``/``waiting``)."""
        stmt = select(func.min(col(InboundEvent.received_at))).where(
            col(InboundEvent.tenant) == tenant,
            col(InboundEvent.status).in_(("pending", "waiting")),
        )
        with self._connect() as conn:
            value = conn.execute(stmt).scalar()
        if value is None:
            return None
        if isinstance(value, str):  # SQLite returns the aggregate untyped
            value = dt.datetime.fromisoformat(value)
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
