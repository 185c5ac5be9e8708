"""Alert states and counters (``sync.alerts``): one row per firing condition, delivery claims."""

from __future__ import annotations

import contextlib
import datetime as dt

from sqlalchemy import and_, case, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from sync.errors import utcnow
from sync.state.models import AlertCounter, AlertState
from sync.state.repos._base import StoreBase


class AlertsRepo(StoreBase):
    """Alert states and counters (sync.alerts)."""

    def alert_states(self, tenant: str) -> list[AlertState]:
        with self.session() as s:
            stmt = select(AlertState).where(col(AlertState.tenant) == tenant).order_by(col(AlertState.id))
            return list(s.exec(stmt))

    def alert_open(self, tenant: str, condition: str, summary: str) -> bool:
        """Record that ``condition`` fired; False when it already has a row (another process)."""
        with self.session() as s:
            s.add(AlertState(tenant=tenant, condition=condition, summary=summary[:4000]))
            try:
                s.commit()
                return True
            except IntegrityError:
                s.rollback()
                return False

    def alert_transition(self, alert_id: int, frm: str, to: str, *, free_before: dt.datetime) -> bool:
        """``frm`` → ``to`` unless a delivery holds the row (claimed after ``free_before``)."""
        with self._begin() as conn:
            result = conn.execute(
                update(AlertState)
                .where(
                    col(AlertState.id) == alert_id,
                    col(AlertState.state) == frm,
                    or_(col(AlertState.claimed_at).is_(None), col(AlertState.claimed_at) < free_before),
                )
                .values(state=to, claimed_at=None, attempts=0, updated_at=utcnow())
            )
            return bool(result.rowcount)

    def alert_claim(self, alert_id: int, state: str, *, now: dt.datetime, free_before: dt.datetime) -> bool:
        """Claim the delivery of the message for ``state`` (one process sends it)."""
        with self._begin() as conn:
            result = conn.execute(
                update(AlertState)
                .where(
                    col(AlertState.id) == alert_id,
                    col(AlertState.state) == state,
                    or_(col(AlertState.claimed_at).is_(None), col(AlertState.claimed_at) < free_before),
                )
                .values(claimed_at=now, attempts=col(AlertState.attempts) + 1)
            )
            return bool(result.rowcount)

    def alert_announced(self, alert_id: int) -> None:
        """The firing message was delivered."""
        with self._begin() as conn:
            conn.execute(
                update(AlertState)
                .where(col(AlertState.id) == alert_id)
                .values(announced=True, claimed_at=None, updated_at=utcnow())
            )

    def alert_close(self, alert_id: int) -> bool:
        """Forget a resolved condition (its "resolved" message was delivered, or none was due)."""
        with self._begin() as conn:
            result = conn.execute(
                delete(AlertState).where(col(AlertState.id) == alert_id, col(AlertState.state) == "resolved")
            )
            return bool(result.rowcount)

    def alert_counter(self, tenant: str, name: str) -> AlertCounter | None:
        with self.session() as s:
            return s.get(AlertCounter, (tenant, name))

    def alert_count(self, tenant: str, name: str, *, reset: bool = False) -> None:
        """Add one to a counter, or (``reset``) set it back to 0: one cheap UPDATE when it is 0."""
        now = utcnow()
        where = and_(col(AlertCounter.tenant) == tenant, col(AlertCounter.name) == name)
        for _ in range(3):
            with self._begin() as conn:
                if reset:
                    conn.execute(
                        update(AlertCounter)
                        .where(where, col(AlertCounter.value) != 0)
                        .values(value=0, since=now, updated_at=now)
                    )
                    return
                result = conn.execute(
                    update(AlertCounter)
                    .where(where)
                    .values(
                        value=col(AlertCounter.value) + 1,
                        # a streak starts at its first failure
                        since=case((col(AlertCounter.value) == 0, now), else_=col(AlertCounter.since)),
                        updated_at=now,
                    )
                )
                if result.rowcount:
                    return
            try:
                with self._begin() as conn:
                    conn.execute(
                        insert(AlertCounter).values(
                            tenant=tenant, name=name, value=1, since=now, updated_at=now
                        )
                    )
                return
            except IntegrityError:
                continue  # another process inserted it first: update it

    def alert_watch_since(self, tenant: str, now: dt.datetime) -> dt.datetime:
        """When alerts first watched ``tenant`` (set now, on the first call)."""
        row = self.alert_counter(tenant, "watching")
        if row is not None:
            return row.since
        with contextlib.suppress(IntegrityError), self._begin() as conn:
            conn.execute(
                insert(AlertCounter).values(
                    tenant=tenant, name="watching", value=0, since=now, updated_at=now
                )
            )
        row = self.alert_counter(tenant, "watching")
        return row.since if row is not None else now
