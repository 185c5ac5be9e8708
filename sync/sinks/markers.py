"""``InboundRecord`` markers: which inbound record versions the ERP sink already holds.

A marker is ``(tenant, platform, stream, remote_id) → content hash``. A row whose hash is
already marked is skipped (a duplicate webhook, a pull overlapping a webhook, a replay after
a crash); a row with a new hash is a new version (a stock count that changed) and is written
again. Markers are read and written inside a caller's state-store session so a sink can commit
them in the same transaction as its own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlmodel import Session

from sync.errors import utcnow
from sync.sinks.base import InboundRow
from sync.state.models import InboundRecord

_CHUNK = 500


def marked(
    session: Session, tenant: str, platform: str, stream: str, ids: Sequence[str]
) -> dict[str, InboundRecord]:
    """The markers of ``ids`` (remote id → row)."""
    out: dict[str, InboundRecord] = {}
    unique = sorted(set(ids))
    for i in range(0, len(unique), _CHUNK):
        stmt = select(
            InboundRecord
        ).where(
            InboundRecord.tenant == tenant,  # type: ignore[arg-type]
            InboundRecord.platform == platform,  # type: ignore[arg-type]
            InboundRecord.stream == stream,  # type: ignore[arg-type]
            InboundRecord.remote_id.in_(unique[i : i + _CHUNK]),  # type: ignore[attr-defined]
        )
        for row in session.execute(stmt).scalars():
            out[row.remote_id] = row
    return out


def unwritten(
    session: Session, tenant: str, stream: str, rows: Sequence[InboundRow]
) -> tuple[list[InboundRow], dict[str, InboundRecord]]:
    """Rows whose current version is not marked yet, plus the markers found (to update in place)."""
    by_platform: dict[str, list[InboundRow]] = {}
    for row in rows:
        by_platform.setdefault(row.platform, []).append(row)
    todo: list[InboundRow] = []
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
    session: Session, tenant: str, stream: str, rows: Sequence[InboundRow]
) -> dict[str, InboundRecord]:
    """The existing markers of ``rows``, keyed as ``mark`` expects."""
    out: dict[str, InboundRecord] = {}
    platforms = {r.platform for r in rows}
    for platform in platforms:
        ids = [r.remote_id for r in rows if r.platform == platform]
        for remote_id, marker in marked(session, tenant, platform, stream, ids).items():
            out[f"{platform}\x00{remote_id}"] = marker
    return out


def mark(
    session: Session, tenant: str, stream: str, rows: Sequence[InboundRow], found: dict[str, InboundRecord]
) -> None:
    """Insert or update the markers of written rows (the caller commits); Core statements: hot path."""
    now = utcnow()
    table = InboundRecord.__table__  # type: ignore[attr-defined]
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
            session.execute(
                update(table).where(table.c.id == marker.id).values(content_hash=row.chash, delivered_at=now)
            )
    if new:
        session.execute(insert(table), new)
