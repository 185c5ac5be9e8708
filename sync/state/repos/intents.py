"""Intents: the write-ahead log for creates over non-idempotent POSTs (design §3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from sync.core.normalize import content_hash
from sync.errors import utcnow
from sync.state.models import Intent
from sync.state.repos._base import StoreBase, decode_value, encode_value, iter_chunks, row_id

OPEN_INTENT_STATES = ("pending", "unknown")


class IntentClaimed(Exception):
    """Another writer holds an open intent for this record (the per-record claim)."""


class IntentsRepo(StoreBase):
    """The write-ahead log for creates: one open intent per record is also its claim."""

    def open_intent(
        self,
        tenant: str,
        platform: str,
        entity: str,
        erp_key: str,
        natural_key: Mapping[str, Any],
        payload: Any,
        *,
        run_id: int | None = None,
    ) -> int:
        """Commit a pending intent before a create; raises IntentClaimed if one is open."""
        intent = Intent(
            tenant=tenant,
            platform=platform,
            entity=entity,
            erp_key=erp_key,
            natural_key=encode_value(dict(natural_key)),
            payload_hash=content_hash(encode_value(payload)),
            run_id=run_id,
        )
        with self.session() as s:
            s.add(intent)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                raise IntentClaimed(f"{platform}/{entity} {erp_key!r} has an open intent") from None
            assert intent.id is not None
            return intent.id

    def open_intents_many(
        self,
        tenant: str,
        platform: str,
        entity: str,
        items: list[tuple[str, Mapping[str, Any], Any]],
        *,
        run_id: int | None = None,
    ) -> dict[str, int]:
        """Open pending intents for many records in one transaction (erp_key → intent id).

        Records whose open intent is held by another writer are left out of the answer.
        """
        if not items:
            return {}
        now = utcnow()
        rows = [
            {
                "tenant": tenant,
                "platform": platform,
                "entity": entity,
                "erp_key": erp_key,
                "natural_key": encode_value(dict(nk)),
                "payload_hash": content_hash(encode_value(payload)),
                "state": "pending",
                "run_id": run_id,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for erp_key, nk, payload in items
        ]
        try:
            with self._begin() as conn:
                got = conn.execute(
                    insert(Intent).returning(col(Intent.id), col(Intent.erp_key)),
                    rows,
                )
                return {erp_key: row_id(iid) for iid, erp_key in got}
        except IntegrityError:
            out: dict[str, int] = {}
            for erp_key, nk, payload in items:
                try:
                    out[erp_key] = self.open_intent(
                        tenant, platform, entity, erp_key, nk, payload, run_id=run_id
                    )
                except IntentClaimed:
                    continue
            return out

    def set_intents(self, ids: Iterable[int], state: str, *, error: str | None = None) -> None:
        """Move many intents to ``state`` in one statement."""
        ids = list(ids)
        if not ids:
            return
        values: dict[str, Any] = {
            "state": state,
            "updated_at": utcnow(),
            "attempts": col(Intent.attempts) + 1,
        }
        if error is not None:
            values["error"] = error[:2000]
        with self._begin() as conn:
            conn.execute(update(Intent).where(col(Intent.id).in_(ids)).values(**values))

    def set_intent(
        self, intent_id: int, state: str, *, remote_id: str | None = None, error: str | None = None
    ) -> None:
        with self.session() as s:
            values: dict[str, Any] = {
                "state": state,
                "updated_at": utcnow(),
                "attempts": col(Intent.attempts) + 1,
            }
            if remote_id is not None:
                values["remote_id"] = remote_id
            if error is not None:
                values["error"] = error[:2000]
            s.exec(update(Intent).where(col(Intent.id) == intent_id).values(**values))
            s.commit()

    def open_intents(self, tenant: str, platform: str | None = None) -> list[Intent]:
        with self.session() as s:
            stmt = select(Intent).where(
                col(Intent.tenant) == tenant, col(Intent.state).in_(OPEN_INTENT_STATES)
            )
            if platform:
                stmt = stmt.where(col(Intent.platform) == platform)
            rows = list(s.exec(stmt.order_by(col(Intent.id))))
            for row in rows:
                row.natural_key = decode_value(row.natural_key)
            return rows

    def intents_for_keys(
        self,
        tenant: str,
        platform: str,
        entity: str,
        keys: Iterable[str],
        *,
        states: Iterable[str] | None = None,
    ) -> list[Intent]:
        """The intents of ``keys`` (any state, or only ``states``), oldest first per IN chunk."""
        keys = list(keys)
        wanted = None if states is None else list(states)
        out: list[Intent] = []
        with self.session() as s:
            for chunk in iter_chunks(keys, 500):
                stmt = select(Intent).where(
                    col(Intent.tenant) == tenant,
                    col(Intent.platform) == platform,
                    col(Intent.entity) == entity,
                    col(Intent.erp_key).in_(chunk),
                )
                if wanted:
                    stmt = stmt.where(col(Intent.state).in_(wanted))
                out.extend(s.exec(stmt.order_by(col(Intent.id))))
        return out

    def done_remote_ids(self, tenant: str, platform: str, entity: str, remote_ids: Iterable[str]) -> set[str]:
        """Which of ``remote_ids`` a ``done`` intent of ``entity`` created."""
        ids = list(remote_ids)
        if not ids:
            return set()
        stmt = select(col(Intent.remote_id)).where(
            col(Intent.tenant) == tenant,
            col(Intent.platform) == platform,
            col(Intent.entity) == entity,
            col(Intent.state) == "done",
            col(Intent.remote_id).in_(ids),
        )
        with self.session() as s:
            return {r for r in s.exec(stmt) if r}

    def intent_counts(self, tenant: str) -> dict[str, int]:
        stmt = (
            select(col(Intent.state), func.count())
            .where(col(Intent.tenant) == tenant)
            .group_by(col(Intent.state))
        )
        with self._connect() as conn:
            return {state: n for state, n in conn.execute(stmt)}
