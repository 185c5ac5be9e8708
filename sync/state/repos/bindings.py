"""Bindings and base snapshots: the identity of every synced record and the field values both
sides agreed on (the ancestor of the three-way diff)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, bindparam, cast, delete, func, insert, or_, update
from sqlmodel import Session, col, select

from sync.core.normalize import content_hash
from sync.core.records import Base
from sync.errors import utcnow
from sync.state.models import BaseSnapshot, Binding, Intent
from sync.state.repos._base import StoreBase, decode_text, decode_value, encode_value


def _base(erp_key: str, remote_id: str, fields: Any, version: str | None) -> Base:
    """One ``Base`` from a stored snapshot (JSON text, or an already-parsed value, or NULL)."""
    if not fields:
        data: Any = {}
    elif isinstance(fields, str):  # the common path: the text of the JSON column
        data = decode_text(fields)
    else:  # some drivers hand JSON back parsed
        data = decode_value(fields)
    children = data.pop("__children__", {}) if isinstance(data, dict) else {}
    return Base(erp_key, remote_id, data, children, version)


class StoredBases(Mapping[str, Base]):
    """Bases of one entity keyed by ERP key, each decoded when it is looked up.

    A million bases held as decoded dicts cost about three times the memory of their
    stored JSON text, and the planner looks each one up once; so only the text is held,
    and where nothing holds a NUL (JSON text never does) as one string per record,
    ``remote_id NUL [version NUL] text``, which saves a tuple and a string or two per
    record. Read-only: every lookup returns a fresh ``Base`` equal to the stored one.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[str, str | tuple[str, Any, str | None]]) -> None:
        self._rows = rows

    @staticmethod
    def pack(remote_id: str, fields: Any, version: str | None) -> str | tuple[str, Any, str | None]:
        """The held form of one stored row (see the class docstring)."""
        if fields.__class__ is str and "\x00" not in fields and "\x00" not in remote_id:
            if version is None:
                return f"{remote_id}\x00{fields}"
            if "\x00" not in version:
                return f"{remote_id}\x00{version}\x00{fields}"
        return (remote_id, fields, version)

    @staticmethod
    def _unpack(key: str, row: str | tuple[str, Any, str | None]) -> Base:
        if isinstance(row, str):
            parts = row.split("\x00")
            if len(parts) == 2:
                return _base(key, parts[0], parts[1], None)
            return _base(key, parts[0], parts[2], parts[1])
        remote_id, fields, version = row
        return _base(key, remote_id, fields, version)

    def __getitem__(self, key: str) -> Base:
        return self._unpack(key, self._rows[key])

    def get(self, key: str, default: Any = None) -> Any:
        row = self._rows.get(key)
        if row is None:
            return default
        return self._unpack(key, row)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"StoredBases({len(self._rows)} bases)"


@dataclass(frozen=True, slots=True)
class BindRow:
    """One created record to bind (see ``StateStore.bind_many``)."""

    erp_key: str
    remote_id: str
    fields: Mapping[str, Any]
    children: Mapping[str, Any] | None = None
    version: str | None = None
    erp_hash: str = ""
    intent_id: int | None = None


class BindingsRepo(StoreBase):
    """Bindings (``erp_key`` ↔ ``remote_id``) and their base snapshots."""

    def load_bases(
        self, tenant: str, platform: str, entity: str, *, keys: Iterable[str] | None = None
    ) -> Mapping[str, Base]:
        """Every bound record of one entity with its base snapshot, keyed by ERP key.

        One streamed query; the snapshots stay JSON text until looked up (``StoredBases``).
        """
        stmt = (
            select(
                col(Binding.erp_key),
                col(Binding.remote_id),
                cast(col(BaseSnapshot.fields), Text),
                col(BaseSnapshot.version),
            )
            .join(BaseSnapshot, col(BaseSnapshot.binding_id) == col(Binding.id), isouter=True)
            .where(
                col(Binding.tenant) == tenant,
                col(Binding.platform) == platform,
                col(Binding.entity) == entity,
            )
        )
        if keys is not None:  # a change event: only these records (a few keys, one IN list)
            stmt = stmt.where(col(Binding.erp_key).in_(list(keys)))
        rows: dict[str, str | tuple[str, Any, str | None]] = {}
        pack = StoredBases.pack
        with self._connect() as conn:
            # Plain text columns: no result processing is needed, so read the DBAPI cursor in
            # batches (a million SQLAlchemy rows would cost more than the query itself).
            cursor = conn.execute(stmt).cursor
            while batch := cursor.fetchmany(10_000):
                for erp_key, remote_id, fields, version in batch:
                    # Interned: the mapped ERP records hold the same keys (one object each).
                    rows[sys.intern(erp_key)] = pack(remote_id, fields, version)
        return StoredBases(rows)

    def reverse_bindings(self, tenant: str, platform: str) -> dict[str, dict[str, str]]:
        """entity → remote_id → erp_key, to translate remote references into ERP keys."""
        stmt = select(col(Binding.entity), col(Binding.remote_id), col(Binding.erp_key)).where(
            col(Binding.tenant) == tenant, col(Binding.platform) == platform
        )
        out: dict[str, dict[str, str]] = {}
        with self._connect() as conn:
            result = conn.execute(stmt.execution_options(yield_per=10_000))
            current, by_remote = None, {}
            for part in result.partitions():
                for entity, remote_id, erp_key in part:
                    if entity != current:
                        current, by_remote = entity, out.setdefault(entity, {})
                    by_remote[remote_id] = erp_key
        return out

    def bindings(self, tenant: str, platform: str, entity: str) -> dict[str, str]:
        """erp_key → remote_id for one entity."""
        stmt = select(col(Binding.erp_key), col(Binding.remote_id)).where(
            col(Binding.tenant) == tenant, col(Binding.platform) == platform, col(Binding.entity) == entity
        )
        out: dict[str, str] = {}
        with self._connect() as conn:
            result = conn.execute(stmt.execution_options(yield_per=10_000))
            for part in result.partitions():
                out.update({k: r for k, r in part})
        return out

    def binding(self, tenant: str, platform: str, entity: str, erp_key: str) -> Base | None:
        with self.session() as s:
            row = s.exec(
                select(Binding, BaseSnapshot)
                .join(BaseSnapshot, col(BaseSnapshot.binding_id) == col(Binding.id), isouter=True)
                .where(
                    col(Binding.tenant) == tenant,
                    col(Binding.platform) == platform,
                    col(Binding.entity) == entity,
                    col(Binding.erp_key) == erp_key,
                )
            ).first()
            if row is None:
                return None
            binding, base = row
            data = decode_value(base.fields) if base else {}
            children = data.pop("__children__", {})
            return Base(binding.erp_key, binding.remote_id, data, children, base.version if base else None)

    def save_base(
        self,
        tenant: str,
        platform: str,
        entity: str,
        erp_key: str,
        remote_id: str,
        fields: Mapping[str, Any],
        *,
        children: Mapping[str, Any] | None = None,
        version: str | None = None,
        erp_hash: str = "",
        session: Session | None = None,
    ) -> None:
        """Bind (or re-bind) a record and store the agreed field values (echo suppression)."""
        own = session is None
        s = session or self.session()
        try:
            binding = s.exec(
                select(Binding).where(
                    col(Binding.tenant) == tenant,
                    col(Binding.platform) == platform,
                    col(Binding.entity) == entity,
                    col(Binding.erp_key) == erp_key,
                )
            ).one_or_none()
            if binding is None:
                # A remote id bound to another ERP key means the ERP re-keyed the row: move it.
                s.exec(
                    delete(Binding).where(
                        col(Binding.tenant) == tenant,
                        col(Binding.platform) == platform,
                        col(Binding.entity) == entity,
                        col(Binding.remote_id) == remote_id,
                    )
                )
                binding = Binding(
                    tenant=tenant, platform=platform, entity=entity, erp_key=erp_key, remote_id=remote_id
                )
                s.add(binding)
                s.flush()
            elif binding.remote_id != remote_id:
                binding.remote_id = remote_id
                s.add(binding)
                s.flush()
            data = dict(fields)
            if children:
                data["__children__"] = dict(children)
            encoded = encode_value(data)
            assert binding.id is not None  # flushed above, or loaded
            snap = s.get(BaseSnapshot, binding.id)
            if snap is None:
                snap = BaseSnapshot(
                    binding_id=binding.id,
                    fields=encoded,
                    fields_hash=content_hash(encoded),
                    erp_hash=erp_hash,
                    version=version,
                )
            else:
                snap.fields = encoded
                snap.fields_hash = content_hash(encoded)
                snap.erp_hash = erp_hash or snap.erp_hash
                snap.version = version
                snap.synced_at = utcnow()
            s.add(snap)
            if own:
                s.commit()
        finally:
            if own:
                s.close()

    def unbind(self, tenant: str, platform: str, entity: str, erp_key: str) -> None:
        with self.session() as s:
            s.exec(
                delete(Binding).where(
                    col(Binding.tenant) == tenant,
                    col(Binding.platform) == platform,
                    col(Binding.entity) == entity,
                    col(Binding.erp_key) == erp_key,
                )
            )
            s.commit()

    def count_bindings(self, tenant: str) -> dict[tuple[str, str], int]:
        stmt = (
            select(col(Binding.platform), col(Binding.entity), func.count())
            .where(col(Binding.tenant) == tenant)
            .group_by(col(Binding.platform), col(Binding.entity))
        )
        with self._connect() as conn:
            return {(p, e): n for p, e, n in conn.execute(stmt)}

    def bound_keys(self, tenant: str, platform: str, entity: str, keys: Iterable[str]) -> dict[str, str]:
        """erp_key → remote_id for those of ``keys`` that are bound."""
        keys = list(keys)
        out: dict[str, str] = {}
        with self._connect() as conn:
            for i in range(0, len(keys), 500):
                stmt = select(col(Binding.erp_key), col(Binding.remote_id)).where(
                    col(Binding.tenant) == tenant,
                    col(Binding.platform) == platform,
                    col(Binding.entity) == entity,
                    col(Binding.erp_key).in_(keys[i : i + 500]),
                )
                out.update({k: r for k, r in conn.execute(stmt)})
        return out

    def bind_many(self, tenant: str, platform: str, entity: str, rows: list[BindRow]) -> None:
        """Bind many freshly created records, store their bases and close their intents, in
        one transaction. Rows that collide with an existing binding go through ``save_base``."""
        if not rows:
            return
        now = utcnow()
        keys = [r.erp_key for r in rows]
        remotes = [r.remote_id for r in rows]
        with self.session() as s:
            clash: set[str] = set()
            for i in range(0, len(rows), 400):
                stmt = select(col(Binding.erp_key), col(Binding.remote_id)).where(
                    col(Binding.tenant) == tenant,
                    col(Binding.platform) == platform,
                    col(Binding.entity) == entity,
                    or_(
                        col(Binding.erp_key).in_(keys[i : i + 400]),
                        col(Binding.remote_id).in_(remotes[i : i + 400]),
                    ),
                )
                for bound_key, bound_remote in s.exec(stmt):
                    clash.update((bound_key, bound_remote))
            fresh = [r for r in rows if r.erp_key not in clash and r.remote_id not in clash]
            if fresh:
                got = s.exec(
                    insert(Binding).returning(col(Binding.id), col(Binding.erp_key)),
                    params=[
                        {
                            "tenant": tenant,
                            "platform": platform,
                            "entity": entity,
                            "erp_key": r.erp_key,
                            "remote_id": r.remote_id,
                            "created_at": now,
                        }
                        for r in fresh
                    ],
                )
                ids = {k: bid for bid, k in got}
                bases = []
                for r in fresh:
                    data = dict(r.fields)
                    if r.children:
                        data["__children__"] = dict(r.children)
                    encoded = encode_value(data)
                    bases.append(
                        {
                            "binding_id": ids[r.erp_key],
                            "fields": encoded,
                            "fields_hash": content_hash(encoded),
                            "erp_hash": r.erp_hash,
                            "version": r.version,
                            "synced_at": now,
                        }
                    )
                s.exec(insert(BaseSnapshot), params=bases)
            for r in rows:
                if r.erp_key in clash or r.remote_id in clash:
                    self.save_base(
                        tenant,
                        platform,
                        entity,
                        r.erp_key,
                        r.remote_id,
                        r.fields,
                        children=r.children,
                        version=r.version,
                        erp_hash=r.erp_hash,
                        session=s,
                    )
            done = [{"iid": r.intent_id, "rid": r.remote_id} for r in rows if r.intent_id is not None]
            if done:
                s.connection().execute(
                    update(Intent)
                    .where(col(Intent.id) == bindparam("iid"))
                    .values(
                        state="done",
                        remote_id=bindparam("rid"),
                        updated_at=now,
                        attempts=col(Intent.attempts) + 1,
                    ),
                    done,
                )
            s.commit()
