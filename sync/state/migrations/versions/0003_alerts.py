"""alerts: alert_states (what fired, what was announced) and alert_counters

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 01:20:00

``alert_states`` holds one row per firing condition of a tenant until its "resolved"
message is delivered (one message per condition each way, even with several evaluating
processes); ``alert_counters`` holds webhook signature failures in a row and when alerts
first watched a tenant.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import sync.state.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("condition", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("announced", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sync.state.types.UTCDateTime(), nullable=True),
        sa.Column("since", sync.state.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sync.state.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "condition", name="uq_alert_state"),
    )
    op.create_table(
        "alert_counters",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("since", sync.state.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sync.state.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name"),
    )


def downgrade() -> None:
    op.drop_table("alert_counters")
    op.drop_table("alert_states")
