"""``erpsync apply``, ``erpsync status`` and ``erpsync retry-failed``."""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sync.cli._common import ConfigOption, TenantOption, check_output, console, fail, settings_or_exit
from sync.cli.inbound import inbound_status, print_inbound, retry_inbound
from sync.core.plan import Plan
from sync.engine.runs import run_dict
from sync.errors import ErpsyncError
from sync.report.outcomes import run_outcomes
from sync.report.progress import progress_bars


class _RowsInReport(logging.Filter):
    """Drops the executor's per-row warnings: the run report's table lists those rows once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and hasattr(record, "key"))


@contextmanager
def rows_in_report(active: bool) -> Iterator[None]:
    """While ``active`` (a terminal report follows), per-row warnings are not logged twice."""
    logger, dropper = logging.getLogger("erpsync.apply"), _RowsInReport()
    if active:
        logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)


def _interactive() -> bool:
    """Whether apply may ask a question: stdin and stdout are a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def exit_code(status: str) -> int:
    """``ok`` -> 0, ``partial`` (rows need attention) -> 3, anything else -> 1 (docs/exit-codes.md)."""
    return {"ok": 0, "partial": 3}.get(status, 1)


def apply_command(
    plan_file: Annotated[Path | None, typer.Argument(help="A plan saved by `erpsync plan --out`.")] = None,
    config: ConfigOption = None,
    tenant: TenantOption = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Apply without showing the plan and asking first (for scripts)."),
    ] = False,
    fast: Annotated[bool, typer.Option("--fast", help="Plan in fast mode (no remote reads).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow a plan that trips the safety valve.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write the run report as HTML.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Apply a saved plan exactly (refused when stale), or plan, show the plan, ask, and apply.

    Without PLAN_FILE, apply shows the plan and asks before writing; `--yes` skips the
    question, and without a terminal one of the two is required. Exit codes: 0 every row
    written (status ok), 3 the run finished but rows need attention (status partial), 1 error.
    """
    from sync.engine.api import Engine
    from sync.report import render_plan_terminal, render_run_html, render_run_terminal

    if plan_file is None and not yes and as_json:  # the question would break the JSON output
        raise fail(ErpsyncError("apply --json asks nothing: pass --yes as well, or a plan file"))
    if plan_file is None and not yes and not _interactive():
        raise fail(
            ErpsyncError(
                "apply writes to the platforms: pass --yes to apply without asking, or a plan file "
                "(`erpsync plan --out plan.json`, then `erpsync apply plan.json`)"
            )
        )
    check_output(html, "--html")
    settings = settings_or_exit(config)
    plan = None
    if plan_file is not None:
        try:
            plan = Plan.from_json(plan_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise fail(FileNotFoundError(f"{plan_file}: no such plan file")) from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise fail(
                ErpsyncError(f"{plan_file}: cannot read the plan file ({type(exc).__name__})")
            ) from None
        except ErpsyncError as exc:
            raise fail(exc) from None
        if tenant and plan.tenant != tenant:
            raise fail(ErpsyncError(f"the plan is for tenant {plan.tenant!r}, not {tenant!r}"))
        tenant = plan.tenant
    engine = Engine(settings)
    if plan is None and not yes:
        try:
            plan = engine.plan(tenant, mode="fast" if fast else "full", force=force)
        except ErpsyncError as exc:
            raise fail(exc) from None
        render_plan_terminal(plan, console)
        if not plan.is_empty() and not typer.confirm("Apply this plan?", default=False):
            console.print("Nothing applied.")
            raise typer.Exit(1)
        tenant = plan.tenant
    try:
        with (
            rows_in_report(not (quiet or as_json)),
            progress_bars(not (quiet or as_json), console) as (
                on_plan,
                advance,
            ),
        ):
            summary = engine.apply(
                tenant, plan, mode="fast" if fast else "full", force=force, progress=advance, on_plan=on_plan
            )
    except ErpsyncError as exc:
        raise fail(exc) from None
    run = run_dict(engine, summary.run_id)
    if html:
        html.write_text(render_run_html(run), encoding="utf-8")
    if as_json:
        data = summary.to_dict()
        outcomes = run_outcomes(summary.counts)
        data["outcomes"] = outcomes.to_dict()
        data["next_steps"] = outcomes.next_steps()
        typer.echo(json.dumps(data, indent=2))
    elif not quiet:
        render_run_terminal(run, console)
        if html:
            console.print(f"HTML report: [bold]{escape(str(html))}[/]")
    raise typer.Exit(exit_code(summary.status))


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
            from sync.engine.runtime import build_runtime

            clients = build_runtime(settings, tid, store=store).new_client
            replayed, outcome = retry_inbound(store, tid, tenant_settings, clients=clients)
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
    console.print(f"rows: {run_outcomes(summary.counts).line()}", highlight=False)
    raise typer.Exit(exit_code(summary.status))


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)
    app.command("status")(status_command)
    app.command("retry-failed")(retry_failed_command)
