"""State store tables (SQLModel): the memory erpsync needs to be exactly-once and three-way.

- ``Binding``: the only source of identity, ``(tenant, platform, entity, erp_key) ↔ remote_id``,
  unique both ways.
- ``BaseSnapshot``: per binding, the field values both sides agreed on at the last
  successful sync (the ancestor of the three-way diff) and the remote version (ETag).
- ``Intent``: the write-ahead log for creates over non-idempotent POSTs (design §3). A
  partial unique index allows at most one *open* (pending/unknown) intent per record, which
  is also the per-record claim that stops a change event and a reconcile from creating the
  same record twice.
- ``Run`` / ``RunItem``: what each plan/apply/pull did, for ``erpsync status`` and reports.
- ``Quarantine``: rows that cannot be synced, with the reason and the ERP content hash that
  releases them when the ERP row changes.
- ``Cursor``: inbound pull cursors and ERP watermarks per (tenant, platform, stream).
- ``InboundEvent``: the webhook inbox (unique event id), processed by a task.
- ``PlatformToken``: the SmartKasa session, so rotated refresh tokens survive restarts.
- ``Lease``: one reconcile per tenant, with a fencing token.
- ``AdoptedEdit``: remote edits of pull/both fields for the ERP to consume.
- ``InboundRecord``: every inbound record by remote id (dedupe + mapping back to ERP keys).

JSON columns hold normalized values serialized by ``sync.core.normalize.canonical_json``
rules (decimals as strings) via ``sync.state.store`` helpers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from sync.errors import utcnow
from sync.state.types import UTCDateTime


def _now() -> dt.datetime:
    return utcnow()


class Binding(SQLModel, table=True):
    __tablename__ = "bindings"
    __table_args__ = (
        UniqueConstraint("tenant", "platform", "entity", "erp_key", name="uq_binding_erp"),
        UniqueConstraint("tenant", "platform", "entity", "remote_id", name="uq_binding_remote"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    entity: str = Field(max_length=64)
    erp_key: str = Field(max_length=255)
    remote_id: str = Field(max_length=255)
    created_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class BaseSnapshot(SQLModel, table=True):
    __tablename__ = "base_snapshots"

    binding_id: int = Field(primary_key=True, foreign_key="bindings.id", ondelete="CASCADE")
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    fields_hash: str = Field(max_length=64)
    erp_hash: str = Field(default="", max_length=64)
    version: str | None = Field(default=None, max_length=64)
    synced_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class Intent(SQLModel, table=True):
    __tablename__ = "intents"
    __table_args__ = (
        Index(
            "uq_intent_open",
            "tenant",
            "platform",
            "entity",
            "erp_key",
            unique=True,
            sqlite_where=text("state IN ('pending', 'unknown')"),
            postgresql_where=text("state IN ('pending', 'unknown')"),
        ),
        Index("ix_intent_state", "tenant", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    entity: str = Field(max_length=64)
    erp_key: str = Field(max_length=255)
    natural_key: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    payload_hash: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=16)  # pending | unknown | done | failed | abandoned
    remote_id: str | None = Field(default=None, max_length=255)
    run_id: int | None = Field(default=None, index=True)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # plan | apply | reconcile | pull | sync_keys
    mode: str = Field(default="full", max_length=8)
    status: str = Field(default="running", max_length=16)  # running | ok | partial | failed
    plan_hash: str | None = Field(default=None, max_length=64)
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    requests: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))
    started_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class RunItem(SQLModel, table=True):
    __tablename__ = "run_items"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    platform: str = Field(max_length=16)
    entity: str = Field(max_length=64)
    erp_key: str = Field(max_length=255)
    action: str = Field(max_length=16)
    outcome: str = Field(max_length=16)  # ok | failed | quarantined | skipped | deferred
    remote_id: str | None = Field(default=None, max_length=255)
    request_id: str | None = Field(default=None, max_length=128)
    detail: str | None = Field(default=None, sa_column=Column(Text))


class Quarantine(SQLModel, table=True):
    __tablename__ = "quarantine"
    __table_args__ = (
        UniqueConstraint("tenant", "platform", "entity", "erp_key", "stage", name="uq_quarantine_row"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    entity: str = Field(max_length=64)
    erp_key: str = Field(max_length=255)
    stage: str = Field(default="validate", max_length=16)  # validate | apply | inbound
    field: str | None = Field(default=None, max_length=128)
    rule: str = Field(max_length=64)
    message: str = Field(sa_column=Column(Text, nullable=False))
    value: str | None = Field(default=None, sa_column=Column(Text))
    erp_hash: str = Field(default="", max_length=64)
    request_id: str | None = Field(default=None, max_length=128)
    created_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class Cursor(SQLModel, table=True):
    __tablename__ = "cursors"

    tenant: str = Field(primary_key=True, max_length=64)
    platform: str = Field(primary_key=True, max_length=16)  # smartepi | smartkasa | erp
    stream: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=255)
    updated_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class InboundEvent(SQLModel, table=True):
    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("tenant", "platform", "event_id", name="uq_inbound_event"),
        Index("ix_inbound_pending", "status", "received_at"),
        Index("ix_inbound_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    event_id: str = Field(max_length=255)
    type: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # pending | waiting (for a binding) | done | failed (bad record) | dead (attempts exhausted)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    received_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    processed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # when the relay may hand a pending/waiting row back again (backoff); None: at once
    next_attempt_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class InboundRecord(SQLModel, table=True):
    __tablename__ = "inbound_records"
    __table_args__ = (
        UniqueConstraint("tenant", "platform", "stream", "remote_id", name="uq_inbound_record"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    platform: str = Field(max_length=16)
    stream: str = Field(max_length=64)
    remote_id: str = Field(max_length=255)
    content_hash: str = Field(max_length=64)
    delivered_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class PlatformToken(SQLModel, table=True):
    __tablename__ = "platform_tokens"

    tenant: str = Field(primary_key=True, max_length=64)
    platform: str = Field(primary_key=True, max_length=16)
    access_token: str = Field(sa_column=Column(Text, nullable=False), repr=False)
    refresh_token: str = Field(sa_column=Column(Text, nullable=False), repr=False)
    access_expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    refresh_expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class Lease(SQLModel, table=True):
    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=128)
    holder: str = Field(max_length=128)
    fencing_token: int = 0
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)


class AdoptedEdit(SQLModel, table=True):
    __tablename__ = "adopted_edits"

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64, index=True)
    platform: str = Field(max_length=16)
    entity: str = Field(max_length=64)
    erp_key: str = Field(max_length=255)
    field: str = Field(max_length=128)
    old_value: str | None = Field(default=None, sa_column=Column(Text))
    new_value: str | None = Field(default=None, sa_column=Column(Text))
    resolution: str = Field(default="pulled", max_length=16)  # pulled | conflict_reported | remote_wins
    detected_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    consumed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertState(SQLModel, table=True):
    """An alert condition of a tenant that fired (``sync.alerts``): one row from the firing
    until its "resolved" message is sent, so each condition sends one message each way.
    ``claimed_at`` is the delivery claim (evaluators in several processes never send the
    same message twice; a failed delivery is retried once the claim lapses)."""

    __tablename__ = "alert_states"
    __table_args__ = (UniqueConstraint("tenant", "condition", name="uq_alert_state"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    condition: str = Field(max_length=128)
    state: str = Field(default="firing", max_length=16)  # firing | resolved
    summary: str = Field(sa_column=Column(Text, nullable=False))
    announced: bool = False  # the firing message was delivered
    attempts: int = 0
    claimed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    since: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class AlertCounter(SQLModel, table=True):
    """Per-tenant counters the alert conditions read: webhook signature failures in a row,
    and when alerts first watched the tenant (the start of "no successful reconcile")."""

    __tablename__ = "alert_counters"

    tenant: str = Field(primary_key=True, max_length=64)
    name: str = Field(primary_key=True, max_length=64)
    value: int = 0
    since: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)
