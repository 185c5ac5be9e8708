"""inbox backoff: next_attempt_at on inbound_events (relay order, attempt cap)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 22:10:00

Waiting and failed-to-write inbox rows get a next-attempt time with exponential backoff,
so thousands of rows waiting for a binding never crowd a lost ``pending`` row out of
the relay; ``dead`` (attempts exhausted) and ``failed`` (bad record) need no schema
change (``status`` is free text).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sync.state.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sync.state.types.UTCDateTime(), nullable=True))
        batch_op.create_index("ix_inbound_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_due")
        batch_op.drop_column("next_attempt_at")
