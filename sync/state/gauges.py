"""The state the service's gauges show, read in one connection (``erpsync_*`` state gauges).

The metrics module asks the store for these rows when Prometheus scrapes (``StateStore.
gauge_rows``), so the queries live with the tables and the observability layer imports no
table model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from sync.state.models import Cursor, InboundEvent, Intent, Quarantine, Run
from sync.state.repos._base import StoreBase

INBOX_STATUSES = ("pending", "waiting", "failed", "dead")
PULL_PLATFORMS = ("smartepi", "smartkasa")


@dataclass
class GaugeRows:
    quarantine: list[tuple[str, str, str, str, int]] = field(
        default_factory=list
    )  # tenant, platform, entity, rule, n
    intents: list[tuple[str, str, str, int]] = field(default_factory=list)  # tenant, platform, state, n
    inbox: list[tuple[str, str, str, int, Any]] = field(
        default_factory=list
    )  # …, status, n, oldest received_at
    cursors: list[tuple[str, str, str, str | None]] = field(
        default_factory=list
    )  # tenant, platform, stream, value
    last_ok_reconcile: list[tuple[str, Any]] = field(default_factory=list)  # tenant, finished_at


def gauge_rows(store: StoreBase) -> GaugeRows:
    out = GaugeRows()
    with store.engine.connect() as conn:
        out.quarantine = [
            (t, p, e, r, int(n))
            for t, p, e, r, n in conn.execute(
                select(
                    col(Quarantine.tenant),
                    col(Quarantine.platform),
                    col(Quarantine.entity),
                    col(Quarantine.rule),
                    func.count(),
                ).group_by(
                    col(Quarantine.tenant),
                    col(Quarantine.platform),
                    col(Quarantine.entity),
                    col(Quarantine.rule),
                )
            )
        ]
        out.intents = [
            (t, p, s, int(n))
            for t, p, s, n in conn.execute(
                select(col(Intent.tenant), col(Intent.platform), col(Intent.state), func.count())
                .where(col(Intent.state).in_(("pending", "unknown")))
                .group_by(col(Intent.tenant), col(Intent.platform), col(Intent.state))
            )
        ]
        out.inbox = [
            (t, p, s, int(n), first)
            for t, p, s, n, first in conn.execute(
                select(
                    col(InboundEvent.tenant),
                    col(InboundEvent.platform),
                    col(InboundEvent.status),
                    func.count(),
                    func.min(col(InboundEvent.received_at)),
                )
                .where(col(InboundEvent.status).in_(INBOX_STATUSES))
                .group_by(col(InboundEvent.tenant), col(InboundEvent.platform), col(InboundEvent.status))
            )
        ]
        out.cursors = [
            (t, p, s, v)
            for t, p, s, v in conn.execute(
                select(col(Cursor.tenant), col(Cursor.platform), col(Cursor.stream), col(Cursor.value)).where(
                    col(Cursor.platform).in_(PULL_PLATFORMS),
                    col(Cursor.stream).not_like("%:%"),  # bookkeeping ("shifts:late_check"), not a position
                )
            )
        ]
        out.last_ok_reconcile = [
            (t, finished)
            for t, finished in conn.execute(
                select(col(Run.tenant), func.max(col(Run.finished_at)))
                .where(col(Run.kind) == "reconcile", col(Run.status).in_(("ok", "partial")))
                .group_by(col(Run.tenant))
            )
        ]
    return out
