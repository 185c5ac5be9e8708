"""``erpsync apply``, ``erpsync status`` and ``erpsync retry-failed``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sync.cli._common import ConfigOption, TenantOption, console, fail, settings_or_exit
from sync.cli.inbound import inbound_status, print_inbound, retry_inbound
from sync.core.plan import Plan
from sync.engine.runs import run_dict
from sync.errors import ErpsyncError
from sync.report.progress import progress_bars


def apply_command(
    plan_file: Annotated[Path | None, typer.Argument(help="A plan saved by `erpsync plan --out`.")] = None,
    config: ConfigOption = None,
    tenant: TenantOption = None,
    fast: Annotated[bool, typer.Option("--fast", help="Plan in fast mode (no remote reads).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow a plan that trips the safety valve.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write the run report as HTML.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Apply a saved plan exactly (refused when stale), or plan and apply in one go."""
    from sync.engine.api import Engine
    from sync.report import render_run_html, render_run_terminal

    settings = settings_or_exit(config)
    plan = None
    if plan_file is not None:
        try:
            plan = Plan.from_json(plan_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise fail(FileNotFoundError(f"{plan_file}: no such plan file")) from None
        except ErpsyncError as exc:
            raise fail(exc) from None
        if tenant and plan.tenant != tenant:
            raise fail(ErpsyncError(f"the plan is for tenant {plan.tenant!r}, not {tenant!r}"))
        tenant = plan.tenant
    engine = Engine(settings)
    try:
        with progress_bars(not (quiet or as_json), console) as (on_plan, advance):
            summary = engine.apply(
                tenant, plan, mode="fast" if fast else "full", force=force, progress=advance, on_plan=on_plan
            )
    except ErpsyncError as exc:
        raise fail(exc) from None
    run = run_dict(engine, summary.run_id)
    if html:
        html.write_text(render_run_html(run), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    elif not quiet:
        render_run_terminal(run, console)
        if html:
            console.print(f"HTML report: [bold]{html}[/]")
    raise typer.Exit(0 if summary.status == "ok" else 1)


def status_command(
    config: ConfigOption = None,
    tenant: TenantOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent runs, quarantine and open intents of a tenant."""
    from sync.state.store import StateStore

    settings = settings_or_exit(config)
    try:
        tid, _ = settings.tenant(tenant)
        store = StateStore(settings.state_url)
    except ErpsyncError as exc:
        raise fail(exc) from None
    runs = store.runs(tid, limit=10)
    quarantine = store.quarantined(tid)
    intents = store.intent_counts(tid)
    bindings = store.count_bindings(tid)
    data: dict[str, Any] = {
        "tenant": tid,
        "runs": [
            {
                "id": r.id,
                "kind": r.kind,
                "mode": r.mode,
                "status": r.status,
                "started_at": r.started_at.isoformat(),
                "counts": r.counts,
                "requests": sum(sum(v.values()) for v in r.requests.values()),
            }
            for r in runs
        ],
        "bindings": {f"{p}/{e}": n for (p, e), n in sorted(bindings.items())},
        "quarantine": [
            {
                "platform": q.platform,
                "entity": q.entity,
                "erp_key": q.erp_key,
                "stage": q.stage,
                "rule": q.rule,
                "field": q.field,
                "message": q.message,
            }
            for q in quarantine
        ],
        "intents": intents,
        "inbound": inbound_status(store, tid),
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    table = Table(title=f"runs of {tid}")
    for col in ("id", "kind", "mode", "status", "started", "requests", "outcomes"):
        table.add_column(col)
    for r in data["runs"]:
        outcomes: Counter[str] = Counter()
        for key, n in r["counts"].items():
            outcomes[key.rsplit("/", 1)[-1]] += n
        table.add_row(
            str(r["id"]),
            r["kind"],
            r["mode"],
            r["status"],
            r["started_at"][:19],
            str(r["requests"]),
            ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
        )
    console.print(table)
    console.print("bindings: " + (", ".join(f"{k} {v}" for k, v in data["bindings"].items()) or "none"))
    open_n = sum(n for s, n in intents.items() if s in ("pending", "unknown"))
    console.print(f"open intents: {open_n}  (all: {dict(sorted(intents.items()))})")
    if quarantine:
        q = Table(title=f"quarantine ({len(quarantine)})")
        for col in ("platform", "entity", "erp_key", "stage", "rule", "field", "message"):
            q.add_column(col)
        for row in data["quarantine"][:200]:
            q.add_row(
                *(
                    str(row[c] or "")
                    for c in ("platform", "entity", "erp_key", "stage", "rule", "field", "message")
                )
            )
        console.print(q)
    else:
        console.print("quarantine: empty")
    print_inbound(data["inbound"])


def retry_failed_command(
    config: ConfigOption = None,
    tenant: TenantOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    inbound: Annotated[
        bool, typer.Option("--inbound", help="Only replay failed and dead inbound records (the ERP sink).")
    ] = False,
) -> None:
    """Release rows the platforms rejected (apply-stage quarantine) and apply again; replay
    inbound records held as failed or dead."""
    from sync.engine.api import Engine
    from sync.state.store import StateStore

    settings = settings_or_exit(config)
    try:
        tid, tenant_settings = settings.tenant(tenant)
        store = StateStore(settings.state_url)
        if inbound or store.inbox_counts(tid).keys() & {"failed", "dead"}:
            replayed, outcome = retry_inbound(store, tid, tenant_settings)
            console.print(
                f"inbound: replayed {replayed} record(s): {outcome.done} done, {outcome.failed} failed again,"
                f" {outcome.waiting} waiting, {outcome.dead} dead"
            )
            for row in inbound_status(store, tid)["held"][:5]:
                console.print(f"  still held: {escape(row['reason'] or '')}")
            if inbound:
                raise typer.Exit(0 if outcome.failed + outcome.dead == 0 else 1)
    except ErpsyncError as exc:
        raise fail(exc) from None
    engine = Engine(settings)
    try:
        released = 0
        for q in engine.store.quarantined(tid, stage="apply"):
            released += engine.store.release(tid, q.platform, q.entity, q.erp_key, stage="apply")
        with progress_bars(not quiet, console) as (on_plan, advance):
            summary = engine.apply(tid, progress=advance, on_plan=on_plan, kind="retry")
    except ErpsyncError as exc:
        raise fail(exc) from None
    console.print(f"released {released} record(s); run {summary.run_id}: {summary.status}")
    raise typer.Exit(0 if summary.status == "ok" else 1)


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)
    app.command("status")(status_command)
    app.command("retry-failed")(retry_failed_command)
