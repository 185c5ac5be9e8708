"""The inbound part of ``erpsync status`` and ``erpsync retry-failed``: held inbox rows.

Rows are ``failed`` (a malformed record, or one the ERP refused) or ``dead`` (out of
attempts: the ERP sink stayed unreachable, or a binding never appeared). Both keep their
record and reason; ``retry-failed`` sets them ``pending`` and applies them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.table import Table

from sync.cli._common import console
from sync.engine.inbound import InboundSummary, process_inbox
from sync.state.store import StateStore

SHOWN = 20


def inbound_status(store: StateStore, tenant: str) -> dict[str, Any]:
    """Inbox counts per status and the latest held rows with their reasons."""
    return {
        "counts": dict(sorted(store.inbox_counts(tenant).items())),
        "held": [
            {
                "event_id": ev.event_id,
                "type": ev.type,
                "status": ev.status,
                "attempts": ev.attempts,
                "reason": ev.error,
            }
            for ev in store.inbox_problems(tenant, limit=SHOWN)
        ],
    }


def print_inbound(data: dict[str, Any]) -> None:
    counts = data["counts"]
    console.print("inbound: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "no events"))
    if not data["held"]:
        return
    table = Table(
        title=f"inbound records held (latest {len(data['held'])}; retry-failed --inbound replays them)"
    )
    for col in ("event", "status", "attempts", "reason"):
        table.add_column(col, overflow="fold")
    for row in data["held"]:
        # platform data may look like markup ("[bold]"): print it as it is
        table.add_row(
            escape(row["event_id"]), row["status"], str(row["attempts"]), escape(row["reason"] or "")
        )
    console.print(table)


def retry_inbound(
    store: StateStore, tenant: str, tenant_settings: Any, *, clients: Callable[[str], Any] | None = None
) -> tuple[int, InboundSummary]:
    """Replay the tenant's ``failed`` and ``dead`` inbox rows; (rows replayed, outcome).
    ``clients``: ``TenantRuntime.new_client``, for a sink that reads a platform."""
    from sync.sinks import open_sink

    ids = store.inbox_retry(tenant)
    summary = InboundSummary()
    if not ids:
        return 0, summary
    sink = open_sink(tenant_settings, tenant_id=tenant, store=store, clients=clients)
    try:
        for i in range(0, len(ids), 500):
            part = process_inbox(store, tenant, tenant_settings, sink, ids[i : i + 500], limit=500)
            summary.done += part.done
            summary.failed += part.failed
            summary.waiting += part.waiting
            summary.dead += part.dead
            summary.written += part.written
            summary.released += part.released
    finally:
        sink.close()
    return len(ids), summary
