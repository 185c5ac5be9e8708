"""Leases (one reconcile per tenant, fenced) and platform session tokens (stored encrypted only;
sync/state/tokens.py says why and with which key)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.fernet import InvalidToken
from sqlalchemy import and_, case, insert, or_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col, select

from sync.errors import StateError, utcnow
from sync.state.models import Lease, PlatformToken
from sync.state.repos._base import StoreBase
from sync.state.tokens import TokenCipher

log = logging.getLogger("sync.state.store")  # the name operators filter on


@dataclass(frozen=True, slots=True)
class TokenRow:
    access_token: str
    refresh_token: str
    access_expires_at: dt.datetime
    refresh_expires_at: dt.datetime

    def __repr__(self) -> str:  # never print tokens
        return f"TokenRow(access_expires_at={self.access_expires_at!r})"


class LeasesRepo(StoreBase):
    """Leases with fencing tokens (one reconcile per tenant), and platform session tokens."""

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
                    .where(
                        col(Lease.name) == name,
                        or_(col(Lease.holder) == holder, col(Lease.expires_at) <= now),
                    )
                    .values(
                        # SET expressions read the row as it was: the token moves on a change of holder
                        fencing_token=case(
                            (col(Lease.holder) == holder, col(Lease.fencing_token)),
                            else_=col(Lease.fencing_token) + 1,
                        ),
                        holder=holder,
                        expires_at=expires,
                    )
                )
                if taken.rowcount == 1:
                    token = conn.execute(
                        select(col(Lease.fencing_token)).where(col(Lease.name) == name)
                    ).scalar_one()
                    return int(token)
                exists = conn.execute(select(col(Lease.name)).where(col(Lease.name) == name)).first()
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
            s.exec(
                update(Lease)
                .where(and_(col(Lease.name) == name, col(Lease.holder) == holder))
                .values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )
            s.commit()
