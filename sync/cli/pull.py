"""``erpsync pull``: bring transactions, sales and stock back into the ERP sink.

Without ``--since`` each stream continues from its cursor (minus the overlap); with
``--since DATE`` it re-reads from that date (backfill). Records already in the sink are
skipped, so a backfill over known data writes nothing new.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sync.cli._common import ConfigOption, TenantOption, console, fail, settings_or_exit
from sync.errors import ErpsyncError
from sync.sinks import open_sink
from sync.state.store import StateStore


def _parse_since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            "expected a date (2025-01-31) or an ISO-8601 time", param_hint="--since"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def pull_command(
    tenant: TenantOption = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Backfill from this date/time (UTC unless an offset is given)."),
    ] = None,
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only these streams (repeatable), e.g. withdrawals.")
    ] = None,
    overlap_minutes: Annotated[
        int, typer.Option(min=0, help="Re-read this many minutes before each cursor.")
    ] = 10,
    config: ConfigOption = None,
) -> None:
    """Pull SmartEPI transactions and SmartKasa shifts, receipts, Z-reports and stock into the ERP sink."""
    from sync.engine.pull import pull
    from sync.engine.runtime import build_runtime

    settings = settings_or_exit(config)
    start = _parse_since(since)
    try:
        tenant_id, tenant_settings = settings.tenant(tenant)
        store = StateStore(settings.state_url)
        runtime = build_runtime(settings, tenant_id, store=store)
        sink = open_sink(tenant_settings, tenant_id=tenant_id, store=store, clients=runtime.new_client)
        try:
            summary = pull(
                store,
                tenant_id,
                tenant_settings,
                sink,
                clients=runtime.new_client,
                since=start,
                overlap=dt.timedelta(minutes=overlap_minutes),
                streams=stream or None,
            )
        finally:
            sink.close()
    except ErpsyncError as exc:
        raise fail(exc) from None
    table = Table(title=f"pull {tenant_id}")
    for name in ("platform", "stream", "fetched", "written", "waiting", "failed", "cursor"):
        table.add_column(name)
    for s in summary.streams:
        table.add_row(
            s.platform,
            s.stream,
            str(s.fetched),
            str(s.written),
            str(s.parked),
            str(s.failed),
            s.cursor_after or s.cursor_before or "-",
        )
    console.print(table)
    requests = ", ".join(f"{p}: {n}" for p, n in summary.requests.items()) or "none"
    console.print(f"requests: {requests}")
    if any(s.failed for s in summary.streams):
        console.print(
            "records held as failed: see erpsync status; fix the cause, then erpsync retry-failed --inbound"
        )
    for error in summary.errors:  # the other streams went on; this one resumes from its cursor next time
        console.print(f"[red]stopped[/red] {escape(error)}")
    if summary.errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_command)
