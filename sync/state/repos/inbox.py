"""The webhook inbox, pull cursors, inbound record markers (which inbound record versions the
ERP sink holds) and adopted remote edits.

A marker is ``(tenant, platform, stream, remote_id) → content hash``. A row whose hash is
already marked is skipped (a duplicate webhook, a pull overlapping a webhook, a replay after
a crash); a row with a new hash is a new version (a stock count that changed) and is written
again. The module-level marker functions work inside a given session; sinks use them through
``StateStore`` (``inbound_unwritten``, ``inbound_mark_delivered``, and ``inbound_mark`` inside
``transaction()`` where a sink commits its own bookkeeping with the markers).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from sync.errors import utcnow
from sync.state.models import AdoptedEdit, Cursor, InboundEvent, InboundRecord
from sync.state.repos._base import StoreBase, iter_chunks, row_id

_CHUNK = 500
# The table, not the model: plain Core statements, no ORM bookkeeping on the hot path.
_MARKERS = SQLModel.metadata.tables[InboundRecord.__tablename__]


class MarkedRow(Protocol):
    """What a marker needs of an inbound row (``sync.sinks.base.InboundRow``)."""

    @property
    def platform(self) -> str: ...

    @property
    def remote_id(self) -> str: ...

    @property
    def chash(self) -> str: ...


R = TypeVar("R", bound=MarkedRow)


def marked(
    session: Session, tenant: str, platform: str, stream: str, ids: Sequence[str]
) -> dict[str, InboundRecord]:
    """The markers of ``ids`` (remote id → row)."""
    out: dict[str, InboundRecord] = {}
    unique = sorted(set(ids))
    for i in range(0, len(unique), _CHUNK):
        stmt = select(InboundRecord).where(
            col(InboundRecord.tenant) == tenant,
            col(InboundRecord.platform) == platform,
            col(InboundRecord.stream) == stream,
            col(InboundRecord.remote_id).in_(unique[i : i + _CHUNK]),
        )
        for row in session.exec(stmt):
            out[row.remote_id] = row
    return out


def unwritten(
    session: Session, tenant: str, stream: str, rows: Sequence[R]
) -> tuple[list[R], dict[str, InboundRecord]]:
    """Rows whose current version is not marked yet, plus the markers found (to update in place)."""
    by_platform: dict[str, list[R]] = {}
    for row in rows:
        by_platform.setdefault(row.platform, []).append(row)
    todo: list[R] = []
    found: dict[str, InboundRecord] = {}
    for platform, group in by_platform.items():
        existing = marked(session, tenant, platform, stream, [r.remote_id for r in group])
        for row in group:
            marker = existing.get(row.remote_id)
            if marker is None or marker.content_hash != row.chash:
                todo.append(row)
                if marker is not None:
                    found[f"{platform}\x00{row.remote_id}"] = marker
    return todo, found


def found_for(
    session: Session, tenant: str, stream: str, rows: Sequence[MarkedRow]
) -> dict[str, InboundRecord]:
    """The existing markers of ``rows``, keyed as ``mark`` expects."""
    out: dict[str, InboundRecord] = {}
    for platform in {r.platform for r in rows}:
        ids = [r.remote_id for r in rows if r.platform == platform]
        for remote_id, marker in marked(session, tenant, platform, stream, ids).items():
            out[f"{platform}\x00{remote_id}"] = marker
    return out


def mark(
    session: Session,
    tenant: str,
    stream: str,
    rows: Sequence[MarkedRow],
    found: Mapping[str, InboundRecord],
) -> None:
    """Insert or update the markers of written rows (the caller commits); Core statements: hot path."""
    now = utcnow()
    new = []
    for row in rows:
        marker = found.get(f"{row.platform}\x00{row.remote_id}")
        if marker is None:
            new.append(
                {
                    "tenant": tenant,
                    "platform": row.platform,
                    "stream": stream,
                    "remote_id": row.remote_id,
                    "content_hash": row.chash,
                    "delivered_at": now,
                }
            )
        else:
            session.exec(
                update(_MARKERS)
                .where(_MARKERS.c.id == marker.id)
                .values(content_hash=row.chash, delivered_at=now)
            )
    if new:
        session.exec(insert(_MARKERS), params=new)


class InboxRepo(StoreBase):
    """The webhook inbox, pull cursors, inbound record markers and adopted remote edits."""

    def get_cursor(
        self, tenant: str, platform: str, stream: str, *, session: Session | None = None
    ) -> str | None:
        if session is not None:  # inside the caller's transaction (see ``transaction``)
            found = session.get(Cursor, (tenant, platform, stream))
            return found.value if found else None
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

    def inbox_insert(
        self,
        tenant: str,
        platform: str,
        event_id: str,
        type_: str,
        payload: Mapping[str, Any],
        *,
        status: str = "pending",
        error: str | None = None,
    ) -> int | None:
        """Insert one inbound event in its own transaction; its row id, or None for a duplicate.

        A Core ``INSERT … RETURNING`` on a connection of its own (never the pinned one) rather
        than an ORM session: this is the webhook hot path. ``payload`` must be JSON-safe
        (``sync.engine.inbound_fields.json_safe``): PostgreSQL's JSON refuses non-finite numbers.
        """
        stmt = (
            insert(InboundEvent)
            .values(
                tenant=tenant,
                platform=platform,
                event_id=event_id,
                type=type_,
                payload=payload,
                status=status,
                attempts=0,
                error=error,
                received_at=utcnow(),
            )
            .returning(col(InboundEvent.id))
        )
        try:
            with self.engine.begin() as conn:
                return row_id(conn.execute(stmt).scalar_one())
        except IntegrityError:
            return None

    def inbox_load(self, tenant: str, event_ids: Sequence[int]) -> list[InboundEvent]:
        """The rows of ``event_ids`` of ``tenant`` that still wait to be applied (``pending``/``waiting``)."""
        out: list[InboundEvent] = []
        if not event_ids:
            return out
        with self.session() as s:
            for chunk in iter_chunks(event_ids, _CHUNK):
                stmt = (
                    select(InboundEvent)
                    .where(
                        col(InboundEvent.tenant) == tenant,
                        col(InboundEvent.id).in_(chunk),
                        col(InboundEvent.status).in_(("pending", "waiting")),
                    )
                    .order_by(col(InboundEvent.id))
                )
                out.extend(s.exec(stmt))
        return out

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

    # --- inbound record markers (see the module docstring) -----------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A state session whose writes commit together at the end of the block (rolled back
        on an error), for a sink whose own bookkeeping in the state store must commit
        atomically with its markers: the JSONL sink's file offset (a cursor) and the markers
        of the lines it appended, so a crash leaves neither or both. Only store methods that
        take ``session=`` write through it; nothing outside ``sync.state`` writes the tables."""
        with self.session() as s:
            yield s
            s.commit()

    def inbound_marked(
        self, tenant: str, platform: str, stream: str, ids: Sequence[str], *, session: Session | None = None
    ) -> dict[str, InboundRecord]:
        """The markers of ``ids`` (remote id → row)."""
        if session is not None:
            return marked(session, tenant, platform, stream, ids)
        with self.session() as s:
            return marked(s, tenant, platform, stream, ids)

    def inbound_unwritten(
        self, tenant: str, stream: str, rows: Sequence[R], *, session: Session | None = None
    ) -> tuple[list[R], dict[str, InboundRecord]]:
        """Rows whose current version is not marked yet, plus the markers found (for ``inbound_mark``)."""
        if session is not None:
            return unwritten(session, tenant, stream, rows)
        with self.session() as s:
            return unwritten(s, tenant, stream, rows)

    def inbound_mark(
        self,
        tenant: str,
        stream: str,
        rows: Sequence[MarkedRow],
        found: Mapping[str, InboundRecord],
        *,
        session: Session,
    ) -> None:
        """Mark written rows inside the caller's ``transaction()`` (it commits)."""
        mark(session, tenant, stream, rows, found)

    def inbound_mark_delivered(
        self, tenant: str, todo: Mapping[str, Sequence[MarkedRow]], *, attempts: int = 3
    ) -> bool:
        """Mark rows a sink delivered, per stream, in one transaction of their own; the markers
        are re-read first (a concurrent writer may have added some meanwhile). False when a
        concurrent insert still collided after ``attempts`` tries."""
        for _ in range(attempts):
            with self.session() as s:
                for stream, rows in todo.items():
                    mark(s, tenant, stream, rows, found_for(s, tenant, stream, rows))
                try:
                    s.commit()
                    return True
                except IntegrityError:
                    s.rollback()
        return False

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
