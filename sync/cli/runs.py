"""``erpsync runs`` and ``erpsync runs show RUN``: the run history and what one run did not do.

Every plan/apply/reconcile/change-event run is a row of the state store (``runs``) with its
start and end time, status, outcome counts, request counts and error. ``runs show`` lists
every item of the run that was not ok with its reason and request id, the creates it left
open (intents), and the rows quarantined at validation while it ran; ``--html`` writes its
HTML run report, for any past run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sync.cli._common import ConfigOption, console, fail, settings_or_exit
from sync.errors import ErpsyncError, utcnow
from sync.redact import redact

RunArgument = Annotated[int, typer.Argument(help="Run id (the first column of `erpsync runs`).", min=1)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
TenantFilter = Annotated[
    str | None, typer.Option("--tenant", "-t", help="Only this tenant's runs (default: all tenants).")
]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def outcomes(counts: Any) -> dict[str, int]:
    """Outcome totals (``ok``, ``failed``…) of a run's ``platform/entity/action/outcome`` counts."""
    total: Counter[str] = Counter()
    for key, n in (counts or {}).items():
        if isinstance(n, int):
            total[str(key).rsplit("/", 1)[-1]] += n
    return dict(sorted(total.items()))


def total_requests(requests: Any) -> int:
    return sum(
        sum(v for v in per.values() if isinstance(v, int)) if isinstance(per, dict) else int(per or 0)
        for per in (requests or {}).values()
    )


def run_row(run: Any) -> dict[str, Any]:
    """One run as plain, redacted data."""
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    row = {
        "id": run.id,
        "tenant": run.tenant,
        "kind": run.kind,
        "mode": run.mode,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_s": round(took, 3) if took is not None else None,
        "outcomes": outcomes(run.counts),
        "requests": total_requests(run.requests),
        "plan_hash": run.plan_hash,
        "error": run.error,
    }
    return redact(row)  # type: ignore[no-any-return]


def run_details(store: Any, run_id: int) -> dict[str, Any] | None:
    """A run, every item of it that was not ok, the creates it left open and the rows
    quarantined at validation while it ran (None: no such run)."""
    run = _get_run(store, run_id)
    if run is None:
        return None
    items = [
        {
            "platform": i.platform,
            "entity": i.entity,
            "erp_key": i.erp_key,
            "action": i.action,
            "outcome": i.outcome,
            "reason": i.detail,
            "request_id": i.request_id,
            "remote_id": i.remote_id,
        }
        for i in store.run_problems(run_id)
    ]
    intents = [
        {
            "platform": i.platform,
            "entity": i.entity,
            "erp_key": i.erp_key,
            "state": i.state,
            "reason": i.error,
            "attempts": i.attempts,
        }
        for i in store.run_intents(run_id)
    ]
    end = run.finished_at or utcnow()
    quarantine = [
        {
            "platform": q.platform,
            "entity": q.entity,
            "erp_key": q.erp_key,
            "stage": q.stage,
            "rule": q.rule,
            "field": q.field,
            "reason": q.message,
            "request_id": q.request_id,
        }
        for q in store.quarantined_between(run.tenant, run.started_at, end)
        if q.stage == "validate"  # apply-stage rows are items of the run already
    ]
    data = {"run": run_row(run), "items": items, "intents": intents, "quarantine": quarantine}
    return redact(data)  # type: ignore[no-any-return]


def _get_run(store: Any, run_id: int) -> Any:
    return store.get_run(run_id)


class _Holder:
    """What ``sync.engine.runs.run_dict`` needs of an engine: its store."""

    def __init__(self, store: Any) -> None:
        self.store = store


def _store(config: Path | None) -> Any:
    from sync.state.store import StateStore

    settings = settings_or_exit(config)
    try:
        return StateStore(settings.state_url)
    except ErpsyncError as exc:
        raise fail(exc) from None


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def runs_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    tenant: TenantFilter = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many runs, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The run history, newest first: status, outcomes, requests, duration and error of each run."""
    if ctx.invoked_subcommand is not None:
        return
    store = _store(config)
    rows = [run_row(r) for r in store.runs(tenant, limit=limit)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"no runs{f' of {escape(tenant)}' if tenant else ''} yet")
        return
    table = Table(title=f"runs of {tenant}" if tenant else "runs")
    for col in ("id", "tenant", "kind", "status", "started", "took", "outcomes", "requests", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            escape(r["tenant"]),
            f"{r['kind']} ({r['mode']})",
            r["status"],
            (r["started_at"] or "")[:19],
            _took(r["duration_s"]),
            ", ".join(f"{k} {v}" for k, v in r["outcomes"].items()),
            str(r["requests"]),
            escape(_short(r["error"])),
        )
    console.print(table)
    console.print("details of a run: erpsync runs show RUN", highlight=False)


def show_command(
    run_id: RunArgument,
    config: ConfigOption = None,
    html: Annotated[Path | None, typer.Option(help="Write the run's HTML report to this file.")] = None,
    as_json: JsonOption = False,
) -> None:
    """One run: every item that was not ok with its reason and request id, open creates, and
    the rows quarantined at validation while it ran."""
    store = _store(config)
    data = run_details(store, run_id)
    if data is None:
        raise fail(ErpsyncError(f"no run {run_id}", hint="`erpsync runs` lists the runs and their ids"))
    if html is not None:
        from sync.engine.runs import run_dict
        from sync.report import render_run_html

        try:
            html.write_text(render_run_html(run_dict(_Holder(store), run_id)), encoding="utf-8")
        except OSError as exc:
            raise fail(ErpsyncError(f"{html}: cannot write the report: {exc.strerror}")) from None
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    _print_details(data)
    if html is not None:
        console.print(f"HTML report: [bold]{escape(str(html))}[/]")


def _print_details(data: dict[str, Any]) -> None:
    r = data["run"]
    console.print(
        f"[bold]run {r['id']}[/] of {escape(r['tenant'])}: {r['kind']} ({r['mode']}), [bold]{r['status']}[/]"
    )
    console.print(
        f"started {r['started_at']}, finished {r['finished_at'] or '— (still running, or its worker died)'}, "
        f"took {_took(r['duration_s'])}; {r['requests']} requests",
        highlight=False,
    )
    console.print("outcomes: " + (", ".join(f"{k} {v}" for k, v in r["outcomes"].items()) or "none"))
    if r["error"]:
        console.print(f"[red]error:[/] {escape(r['error'])}")
    items = data["items"]
    if items:
        table = Table(title=f"not ok ({len(items)})")
        for col in ("platform", "entity", "erp_key", "action", "outcome", "reason", "request id"):
            table.add_column(col, overflow="fold")
        for i in items:
            table.add_row(
                *(escape(str(i[c] or "")) for c in ("platform", "entity", "erp_key", "action", "outcome")),
                escape(i["reason"] or ""),
                escape(i["request_id"] or ""),
            )
        console.print(table)
    else:
        console.print("every item of this run was ok")
    if data["intents"]:
        table = Table(title=f"creates left open or given up ({len(data['intents'])})")
        for col in ("platform", "entity", "erp_key", "state", "attempts", "reason"):
            table.add_column(col, overflow="fold")
        for i in data["intents"]:
            table.add_row(
                *(escape(str(i[c] if i[c] is not None else "")) for c in ("platform", "entity", "erp_key")),
                i["state"],
                str(i["attempts"]),
                escape(i["reason"] or ""),
            )
        console.print(table)
        console.print("open creates are resolved by lookup on the next run (erpsync resolve to force one)")
    if data["quarantine"]:
        table = Table(title=f"quarantined at validation during this run ({len(data['quarantine'])})")
        for col in ("platform", "entity", "erp_key", "rule", "field", "reason"):
            table.add_column(col, overflow="fold")
        for q in data["quarantine"]:
            table.add_row(
                *(
                    escape(str(q[c] or ""))
                    for c in ("platform", "entity", "erp_key", "rule", "field", "reason")
                )
            )
        console.print(table)
        console.print(
            "fix these rows in the ERP: the next run picks them up (erpsync status lists all held rows)"
        )
    console.print(f"HTML report: erpsync runs show {r['id']} --html run-{r['id']}.html", highlight=False)


def register(app: typer.Typer) -> None:
    runs_app = typer.Typer(
        help="The run history (erpsync runs) and one run's details (erpsync runs show RUN).",
        no_args_is_help=False,
    )
    runs_app.callback(invoke_without_command=True)(runs_command)
    runs_app.command("show")(show_command)
    app.add_typer(runs_app, name="runs")
