"""Repository functions over the state tables: the only module that writes them.

Everything the engine, tasks and web app need from the state store goes through
``StateStore``; each method is one short transaction, so a crash between two calls
leaves the store consistent (the intent log makes the rest recoverable).

Field values are stored as JSON. Decimals are tagged (``"\\x1fd:1.5"``) so that a
loaded base compares equal to freshly normalized ERP data; the tag uses a control
character that the mapping layer never lets through from the ERP.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from sync.errors import StateError, utcnow
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
from sync.state.repos._base import StoreBase, decode_text, decode_value, encode_value, iter_chunks
from sync.state.repos.bindings import BindingsRepo, BindRow, StoredBases
from sync.state.repos.intents import OPEN_INTENT_STATES, IntentClaimed, IntentsRepo
from sync.state.repos.quarantine import QuarantineRepo
from sync.state.repos.runs import RunsRepo
from sync.state.tokens import TokenCipher

log = logging.getLogger(__name__)

# Names other modules import from here (the repositories live in sync.state.repos).
__all__ = [
    "OPEN_INTENT_STATES",
    "BindRow",
    "IntentClaimed",
    "StateStore",
    "StoredBases",
    "TokenRow",
    "decode_text",
    "decode_value",
    "encode_value",
    "iter_chunks",
]


@dataclass(frozen=True, slots=True)
class TokenRow:
    access_token: str
    refresh_token: str
    access_expires_at: dt.datetime
    refresh_expires_at: dt.datetime

    def __repr__(self) -> str:  # never print tokens
        return f"TokenRow(access_expires_at={self.access_expires_at!r})"


class StateStore(BindingsRepo, IntentsRepo, QuarantineRepo, RunsRepo, StoreBase):
    """State store of one deployment (all tenants), on SQLite or PostgreSQL."""

    # --- cursors -----------------------------------------------------------------

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

    # --- inbound -----------------------------------------------------------------

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
            stmt = select(InboundEvent).where(InboundEvent.status.in_(("pending", "waiting")))
            if tenant:
                stmt = stmt.where(InboundEvent.tenant == tenant)
            if older_than:
                stmt = stmt.where(InboundEvent.received_at < older_than)
            return list(s.exec(stmt.order_by(InboundEvent.id).limit(limit)).scalars())

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
            InboundEvent.next_attempt_at.is_(None),  # type: ignore[union-attr]
            InboundEvent.next_attempt_at <= now,  # type: ignore[operator]
        )
        out: list[InboundEvent] = []
        with self.session() as s:
            for status in ("pending", "waiting"):
                if len(out) >= limit:
                    break
                stmt = select(InboundEvent).where(InboundEvent.status == status, due)
                if tenant:
                    stmt = stmt.where(InboundEvent.tenant == tenant)
                if older_than and status == "pending":
                    stmt = stmt.where(InboundEvent.received_at < older_than)
                order: tuple[Any, ...] = (InboundEvent.next_attempt_at, InboundEvent.id)
                if status == "pending":
                    order = (InboundEvent.id,)
                out.extend(s.exec(stmt.order_by(*order).limit(limit - len(out))).scalars())
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
                s.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id.in_(chunk))
                    .values(
                        status=status,
                        error=error,
                        processed_at=utcnow() if status == "done" else None,
                        attempts=InboundEvent.attempts + 1,
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
                s.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id == event_id)
                    .values(
                        status=status,
                        error=error,
                        processed_at=utcnow() if status == "done" else None,
                        attempts=InboundEvent.attempts + 1,
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
                    select(InboundEvent.id)
                    .where(InboundEvent.tenant == tenant, InboundEvent.status.in_(wanted))
                    .order_by(InboundEvent.id)
                ).scalars()
            )
            for chunk in iter_chunks(ids, 500):
                s.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id.in_(chunk))
                    .values(status="pending", attempts=0, next_attempt_at=None)
                )
            s.commit()
        return [int(i) for i in ids]

    def inbox_held(self, tenant: str, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are held as ``failed``/``dead`` for the tenant."""
        out: set[str] = set()
        with self.session() as s:
            for chunk in iter_chunks(sorted(set(event_ids)), 500):
                stmt = select(InboundEvent.event_id).where(
                    InboundEvent.tenant == tenant,
                    InboundEvent.event_id.in_(chunk),
                    InboundEvent.status.in_(("failed", "dead")),
                )
                out.update(str(e) for e in s.exec(stmt).scalars())
        return out

    def inbox_counts(self, tenant: str) -> dict[str, int]:
        """Inbox rows of a tenant per status (``erpsync status``)."""
        with self.session() as s:
            rows = s.execute(
                select(InboundEvent.status, func.count())
                .where(InboundEvent.tenant == tenant)
                .group_by(InboundEvent.status)
            )
            return {str(status): int(n) for status, n in rows}

    def inbox_problems(self, tenant: str, limit: int = 50) -> list[InboundEvent]:
        """The latest ``failed`` and ``dead`` rows of a tenant, with their reasons."""
        with self.session() as s:
            stmt = (
                select(InboundEvent)
                .where(InboundEvent.tenant == tenant, InboundEvent.status.in_(("failed", "dead")))
                .order_by(InboundEvent.id.desc())
                .limit(limit)
            )
            return list(s.exec(stmt).scalars())

    def inbound_seen(self, tenant: str, platform: str, stream: str, remote_ids: Iterable[str]) -> set[str]:
        ids = list(remote_ids)
        if not ids:
            return set()
        out: set[str] = set()
        with self._connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                stmt = select(InboundRecord.remote_id).where(
                    InboundRecord.tenant == tenant,
                    InboundRecord.platform == platform,
                    InboundRecord.stream == stream,
                    InboundRecord.remote_id.in_(chunk),
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

    # --- adopted edits -----------------------------------------------------------

    def add_adopted_edits(self, edits: Iterable[AdoptedEdit]) -> None:
        with self.session() as s:
            s.add_all(list(edits))
            s.commit()

    def adopted_edits(self, tenant: str, *, unconsumed: bool = True) -> list[AdoptedEdit]:
        with self.session() as s:
            stmt = select(AdoptedEdit).where(AdoptedEdit.tenant == tenant)
            if unconsumed:
                stmt = stmt.where(AdoptedEdit.consumed_at.is_(None))
            return list(s.exec(stmt.order_by(AdoptedEdit.id)).scalars())

    # --- platform tokens -----------------------------------------------------------
    # Tokens are stored encrypted only (sync/state/tokens.py says why and with which key).

    def load_token(self, tenant: str, platform: str, *, cipher: TokenCipher | None) -> TokenRow | None:
        """The stored session, decrypted; None when absent or unreadable with ``cipher``.

        A plaintext row (written before encryption) is returned once and then rewritten
        encrypted, or deleted when no cipher is configured."""
        with self.session() as s:
            row = s.get(PlatformToken, (tenant, platform))
            if row is None:
                return None
            found = (row.access_token, row.refresh_token)
            expiry = (row.access_expires_at, row.refresh_expires_at)
            if all(TokenCipher.is_encrypted(t) for t in found):
                if cipher is None:
                    log.info("the stored %s session is encrypted and no secrets_key is set", platform)
                    return None
                try:
                    opened = [cipher.decrypt(t) for t in found]
                except InvalidToken:
                    log.warning(
                        "the stored %s session of tenant %r cannot be decrypted with secrets_key "
                        "(was the key changed?): logging in again",
                        platform,
                        tenant,
                    )
                    return None
                token = TokenRow(opened[0][0], opened[1][0], *expiry)
                if not any(stale for _, stale in opened):
                    return token
                log.info("re-encrypting the stored %s session with the current secrets_key", platform)
            else:
                token = TokenRow(*found, *expiry)
                if cipher is None:
                    s.delete(row)
                    s.commit()
                    log.info("deleted the plaintext %s session of an old erpsync (no secrets_key)", platform)
                    return token
                log.info("encrypting the plaintext %s session left by an older erpsync", platform)
        self.save_token(tenant, platform, token, cipher=cipher)
        return token

    def save_token(self, tenant: str, platform: str, token: TokenRow, *, cipher: TokenCipher) -> None:
        """Persist a platform session, encrypted. A database error is re-raised without its
        text: the server's own message can quote the failing row."""
        sealed = TokenRow(
            cipher.encrypt(token.access_token),
            cipher.encrypt(token.refresh_token),
            token.access_expires_at,
            token.refresh_expires_at,
        )
        try:
            self._save_token(tenant, platform, sealed)
        except DBAPIError as exc:
            raise StateError(
                f"saving the {platform} session of tenant {tenant!r} failed ({type(exc.orig).__name__})"
            ) from None

    def _save_token(self, tenant: str, platform: str, token: TokenRow) -> None:
        with self.session() as s:
            row = s.get(PlatformToken, (tenant, platform))
            if row is None:
                row = PlatformToken(
                    tenant=tenant,
                    platform=platform,
                    access_token=token.access_token,
                    refresh_token=token.refresh_token,
                    access_expires_at=token.access_expires_at,
                    refresh_expires_at=token.refresh_expires_at,
                )
            else:
                row.access_token, row.refresh_token = token.access_token, token.refresh_token
                row.access_expires_at, row.refresh_expires_at = (
                    token.access_expires_at,
                    token.refresh_expires_at,
                )
                row.updated_at = utcnow()
            s.add(row)
            s.commit()

    # --- leases (one reconcile per tenant) -------------------------------------------

    @contextlib.contextmanager
    def _lease_tx(self) -> Iterator[Connection]:
        """A short write transaction of its own for lease changes (never the pinned connection).

        On SQLite it starts with ``BEGIN IMMEDIATE``: the write lock is taken before the
        lease row is read, so two processes cannot both see it free (pysqlite would
        otherwise run a read outside any transaction; ``SELECT … FOR UPDATE`` does
        nothing there). PostgreSQL's row lock on the ``UPDATE`` does the same."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> int | None:
        """Take or renew the lease; returns the fencing token, or None when held by another.

        A compare-and-set, correct on both stores: one ``UPDATE … WHERE holder = me OR
        expired`` checked by its row count, else an ``INSERT`` that the primary key makes
        fail when another process created the row first. The fencing token increases on
        every change of holder, so a holder that lost the lease (paused past its TTL) is
        detected by ``check_fence`` before it writes.
        """
        now = utcnow()
        expires = now + dt.timedelta(seconds=ttl_seconds)
        try:
            with self._lease_tx() as conn:
                taken = conn.execute(
                    update(Lease)
                    .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at <= now))
                    .values(
                        # SET expressions read the row as it was: the token moves on a change of holder
                        fencing_token=case(
                            (Lease.holder == holder, Lease.fencing_token), else_=Lease.fencing_token + 1
                        ),
                        holder=holder,
                        expires_at=expires,
                    )
                )
                if taken.rowcount == 1:
                    token = conn.execute(select(Lease.fencing_token).where(Lease.name == name)).scalar_one()
                    return int(token)
                exists = conn.execute(select(Lease.name).where(Lease.name == name)).first()
                if exists is not None:
                    return None  # held by another, not expired
                conn.execute(
                    insert(Lease).values(name=name, holder=holder, fencing_token=1, expires_at=expires)
                )
                return 1
        except IntegrityError:  # another process inserted the row between our UPDATE and INSERT
            return None

    def check_fence(self, name: str, holder: str, token: int) -> bool:
        with self.session() as s:
            row = s.get(Lease, name)
            return bool(
                row and row.holder == holder and row.fencing_token == token and row.expires_at > utcnow()
            )

    def release_lease(self, name: str, holder: str) -> None:
        with self.session() as s:
            s.execute(
                update(Lease)
                .where(and_(Lease.name == name, Lease.holder == holder))
                .values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )
            s.commit()

    # --- maintenance ---------------------------------------------------------------

    def fail_stale_runs(
        self, older_than: dt.datetime, reason: str, *, kinds: Iterable[str], tenant: str | None = None
    ) -> int:
        """Mark ``running`` runs of ``kinds`` started before ``older_than`` failed with ``reason``.

        The caller picks ``older_than`` so such a run cannot still be going (for worker tasks:
        the hard time limit kills any task older than that), so it is the run of a worker
        that died (kill -9, OOM) and would otherwise show ``running`` forever."""
        stmt = (
            update(Run)
            .where(Run.status == "running", Run.kind.in_(list(kinds)), Run.started_at < older_than)
            .values(status="failed", error=reason, finished_at=utcnow())
        )
        if tenant is not None:
            stmt = stmt.where(Run.tenant == tenant)
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
            select(InboundEvent.id).where(
                InboundEvent.status == "done",
                InboundEvent.processed_at < now - events_days * day,  # type: ignore[operator]
            ),
            InboundEvent,
        )
        drain(
            "inbound_records",
            select(InboundRecord.id).where(InboundRecord.delivered_at < now - inbound_records_days * day),
            InboundRecord,
        )
        old_runs = select(Run.id).where(
            Run.status != "running",
            Run.finished_at < now - run_items_days * day,  # type: ignore[operator]
        )
        drain("run_items", select(RunItem.id).where(RunItem.run_id.in_(old_runs)), RunItem)
        with self._connect() as conn:
            tenants = [r[0] for r in conn.execute(select(Run.tenant).distinct())]
        for tenant in tenants:
            with self._connect() as conn:
                newest = list(
                    conn.execute(
                        select(Run.id).where(Run.tenant == tenant).order_by(Run.id.desc()).limit(keep_runs)
                    ).scalars()
                )
            if len(newest) < keep_runs:
                continue
            doomed = select(Run.id).where(
                Run.tenant == tenant,
                Run.id < min(newest),
                Run.status != "running",
                Run.finished_at < now - runs_days * day,  # type: ignore[operator]
            )
            while True:
                with self._begin() as conn:
                    ids = [r[0] for r in conn.execute(doomed.limit(batch))]
                    if ids:
                        conn.execute(delete(RunItem).where(RunItem.run_id.in_(ids)))
                        conn.execute(delete(Run).where(Run.id.in_(ids)))
                out["runs"] += len(ids)
                if len(ids) < batch:
                    break
        return out

    # --- alerts (sync.alerts) -----------------------------------------------------

    def alert_states(self, tenant: str) -> list[AlertState]:
        with self.session() as s:
            stmt = select(AlertState).where(AlertState.tenant == tenant).order_by(AlertState.id)
            return list(s.exec(stmt).scalars())

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
                    AlertState.id == alert_id,
                    AlertState.state == frm,
                    or_(AlertState.claimed_at.is_(None), AlertState.claimed_at < free_before),  # type: ignore[union-attr,operator]
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
                    AlertState.id == alert_id,
                    AlertState.state == state,
                    or_(AlertState.claimed_at.is_(None), AlertState.claimed_at < free_before),  # type: ignore[union-attr,operator]
                )
                .values(claimed_at=now, attempts=AlertState.attempts + 1)
            )
            return bool(result.rowcount)

    def alert_announced(self, alert_id: int) -> None:
        """The firing message was delivered."""
        with self._begin() as conn:
            conn.execute(
                update(AlertState)
                .where(AlertState.id == alert_id)
                .values(announced=True, claimed_at=None, updated_at=utcnow())
            )

    def alert_close(self, alert_id: int) -> bool:
        """Forget a resolved condition (its "resolved" message was delivered, or none was due)."""
        with self._begin() as conn:
            result = conn.execute(
                delete(AlertState).where(AlertState.id == alert_id, AlertState.state == "resolved")
            )
            return bool(result.rowcount)

    def alert_counter(self, tenant: str, name: str) -> AlertCounter | None:
        with self.session() as s:
            return s.get(AlertCounter, (tenant, name))

    def alert_count(self, tenant: str, name: str, *, reset: bool = False) -> None:
        """Add one to a counter, or (``reset``) set it back to 0: one cheap UPDATE when it is 0."""
        now = utcnow()
        where = and_(AlertCounter.tenant == tenant, AlertCounter.name == name)
        for _ in range(3):
            with self._begin() as conn:
                if reset:
                    conn.execute(
                        update(AlertCounter)
                        .where(where, AlertCounter.value != 0)
                        .values(value=0, since=now, updated_at=now)
                    )
                    return
                result = conn.execute(
                    update(AlertCounter)
                    .where(where)
                    .values(
                        value=AlertCounter.value + 1,
                        # a streak starts at its first failure
                        since=case((AlertCounter.value == 0, now), else_=AlertCounter.since),
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

    def inbox_oldest_pending(self, tenant: str) -> dt.datetime | None:
        """Receipt time of the oldest inbox event not yet applied (``pending``/``waiting``)."""
        stmt = select(func.min(InboundEvent.received_at)).where(
            InboundEvent.tenant == tenant,
            InboundEvent.status.in_(("pending", "waiting")),  # type: ignore[attr-defined]
        )
        with self._connect() as conn:
            value = conn.execute(stmt).scalar()
        if value is None:
            return None
        if isinstance(value, str):  # SQLite returns the aggregate untyped
            value = dt.datetime.fromisoformat(value)
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    def purge_tenant(self, tenant: str) -> None:
        """Forget everything about a tenant (tests, decommissioning)."""
        with self.session() as s:
            ids = select(Binding.id).where(Binding.tenant == tenant)
            s.execute(delete(BaseSnapshot).where(BaseSnapshot.binding_id.in_(ids)))
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
                s.execute(delete(model).where(model.tenant == tenant))
            run_ids = select(Run.id).where(Run.tenant == tenant)
            s.execute(delete(RunItem).where(RunItem.run_id.in_(run_ids)))
            s.execute(delete(Run).where(Run.tenant == tenant))
            s.execute(delete(Cursor).where(Cursor.tenant == tenant))
            s.execute(
                delete(Lease).where(
                    or_(
                        Lease.name == f"reconcile:{tenant}",
                        Lease.name.like(f"{tenant}:%"),
                    )
                )
            )
            s.commit()
