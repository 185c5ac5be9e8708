"""Terminal (Rich) renderings of plans, runs and ``erpsync why``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sync.core.plan import Plan
from sync.redact import scrub
from sync.report.outcomes import ATTENTION, classify, plan_outcomes, run_outcomes
from sync.report.view import EMPTY, ActionRow, action_row, duration, fmt, run_counts, summary, when


def _e(value: Any) -> str:
    """Data shown inside Rich markup: secrets scrubbed, brackets escaped."""
    return escape(scrub(str(value)))


KIND_STYLE = {
    "create": "green",
    "adopt": "cyan",
    "update": "blue",
    "pull": "magenta",
    "conflict": "bold red",
    "deactivate": "yellow",
    "delete": "red",
    "skip": "dim",
}
CHANGE_STYLE = {"push": "", "pull": "magenta", "drift": "bold yellow", "conflict": "bold red"}
STATUS_STYLE = {"ok": "green", "partial": "yellow", "failed": "bold red", "running": "cyan"}


def render_plan_terminal(plan: Plan, console: Console, detail: bool = False) -> None:
    """Summary per platform/entity/action and the request estimate; ``detail`` lists every action."""
    console.print(
        f"[bold]Plan[/] for tenant [bold]{_e(plan.tenant)}[/] · {plan.mode} mode · "
        f"{when(plan.created_at)} · hash {plan.hash[:12]}"
    )
    kinds, rows = summary(plan)
    held = plan_outcomes(plan.quarantine)
    if not rows and held.attention:
        console.print(
            f"[bold yellow]No changes to write[/], but {held.attention} row(s) need attention: "
            f"{held.line()} (below)."
        )
    elif not rows:
        console.print("[green]Nothing to do[/]: ERP, state store and platforms agree.")
    else:
        table = Table(title="Actions", title_justify="left")
        table.add_column("platform")
        table.add_column("entity")
        for k in kinds:
            table.add_column(k, justify="right", style=KIND_STYLE.get(k, ""))
        table.add_column("total", justify="right", style="bold")
        for r in rows:
            table.add_row(r.platform, r.entity, *(str(r.counts.get(k, "")) for k in kinds), str(r.total))
        console.print(table)
    est = Table(title="Request estimate", title_justify="left")
    est.add_column("platform")
    est.add_column("requests", justify="right")
    for platform, n in sorted(plan.request_estimate.items()):
        est.add_row(platform, str(n))
    console.print(est)
    flagged = [a for a in plan.actions if any(c.kind in ("drift", "conflict") for c in a.changes)]
    if flagged:
        n_drift = sum(1 for a in flagged for c in a.changes if c.kind == "drift")
        n_conf = sum(1 for a in flagged for c in a.changes if c.kind == "conflict")
        console.print(f"[bold yellow]{n_drift} drifted[/] and [bold red]{n_conf} conflicting[/] field(s).")
    if detail:
        for a in plan.actions:
            _print_action(console, action_row(plan, a))
    _print_quarantine(console, plan)
    _print_next_steps(console, held.next_steps())


def _print_next_steps(console: Console, steps: list[str]) -> None:
    for step in steps:
        console.print(Text(f"  • {step}", style="yellow"))


def _print_action(console: Console, row: ActionRow) -> None:
    head = Text()
    head.append(f"{row.kind:<10}", style=KIND_STYLE.get(row.kind, ""))
    head.append(f" {row.platform}/{row.entity} ")
    head.append(row.erp_key, style="bold")
    if row.remote_id:
        head.append(f" → {row.remote_id}")
    if row.local_only:
        head.append(" (state only)", style="dim")
    head.append(f"  {row.reason}", style="dim")
    console.print(head)
    for c in row.changes:
        line = Text("    ")
        line.append(c.field, style="bold")
        line.append(": ")
        line.append(c.old)
        line.append(f" {c.arrow} ")
        line.append(c.new, style="bold")
        tag = c.kind + (f", {c.resolution}" if c.resolution else "")
        line.append(f"  [{tag}]", style=CHANGE_STYLE.get(c.kind, ""))
        if c.kind in ("drift", "conflict"):
            line.append(f"  (base {c.base}, ERP {c.erp}, platform {c.remote})", style="dim")
        console.print(line)


def _print_quarantine(console: Console, plan: Plan) -> None:
    if not plan.quarantine:
        return
    table = Table(title=f"Quarantine ({len(plan.quarantine)})", title_justify="left", title_style="bold red")
    for col in ("platform", "entity", "ERP key", "field", "rule", "message"):
        table.add_column(col)
    for q in plan.quarantine:
        cells = (q.platform, q.entity, q.erp_key, q.field or "", q.rule, scrub(q.message))
        table.add_row(*(Text(c) for c in cells))
    console.print(table)


def render_run_terminal(run: dict[str, Any], console: Console) -> None:
    """Run summary: status, duration, counts per platform/entity/action/outcome, requests, errors."""
    if not run:
        console.print("[red]No such run.[/]")
        return
    status = str(run.get("status", ""))
    console.print(
        f"[bold]Run[/] {_e(run.get('run_id', ''))} for tenant [bold]{_e(run.get('tenant', ''))}[/] · "
        f"[{STATUS_STYLE.get(status, 'bold')}]{_e(status)}[/] · {when(run.get('started_at'))} → "
        f"{when(run.get('finished_at'))} ({duration(run.get('duration'))})"
    )
    if run.get("error"):
        console.print(f"[bold red]error:[/] {_e(run['error'])}")
    outcomes = run_outcomes(run.get("counts") or {})
    console.print(Text(f"rows: {outcomes.line()}"))
    counts = run_counts(run.get("counts") or {})
    if counts:
        table = Table(title="Outcomes", title_justify="left")
        for col in ("platform", "entity", "action", "outcome"):
            table.add_column(col)
        table.add_column("count", justify="right")
        for p, e, a, raw, n in counts:
            o = classify(raw)
            style = "" if o == "written" else ("yellow" if o in ("conflict", "skipped") else "red")
            table.add_row(
                Text(p), Text(e), Text(a, style=KIND_STYLE.get(a, "")), Text(o, style=style), str(n)
            )
        console.print(table)
    requests = run.get("requests") or {}
    if requests:
        req = Table(title="Requests", title_justify="left")
        req.add_column("platform")
        req.add_column("request")
        req.add_column("count", justify="right")
        for platform, n in sorted(requests.items()):
            if isinstance(n, dict):  # "METHOD route status" -> count
                for route, count in sorted(n.items()):
                    req.add_row(Text(platform), Text(route), fmt(count))
                req.add_row(Text(platform, style="bold"), Text("total", style="bold"), fmt(sum(n.values())))
            else:
                req.add_row(Text(platform), Text("total"), fmt(n))
        console.print(req)
    items = [i for i in run.get("items") or [] if classify(str(i.get("outcome") or "")) in ATTENTION]
    if items:
        table = Table(
            title=f"Items needing attention ({len(items)})", title_justify="left", title_style="bold red"
        )
        for col in ("platform", "entity", "ERP key", "action", "outcome", "detail", "request id"):
            table.add_column(col)
        for i in items:
            keys = ("platform", "entity", "erp_key", "action", "outcome", "detail", "request_id")
            row = {**i, "outcome": classify(str(i.get("outcome") or ""))}
            table.add_row(*(Text(scrub(str(row.get(k) or ""))) for k in keys))
        console.print(table)
    _print_next_steps(console, outcomes.next_steps())


def render_explain(info: dict[str, Any], console: Console) -> None:
    """``erpsync why``: binding, base vs platform (vs ERP when known), last action, quarantine, intents.

    ``info`` is plain data with values already redacted by the caller (``sync.engine.explain``).
    """
    where = f"{info.get('platform', '')}/{info.get('entity', '')} {info.get('erp_key', '')!r}"
    console.print(f"[bold]{_e(where)}[/] (tenant {_e(info.get('tenant', ''))})")
    binding = info.get("binding")
    if binding:
        version = f", version {binding['version']}" if binding.get("version") else ""
        console.print(f"bound to remote [bold]{_e(binding['remote_id'])}[/]{_e(version)}")
    elif any(
        str(i.get("error") or "").startswith("held for a person") for i in info.get("open_intents") or []
    ):
        console.print("[bold yellow]held[/]: a create may have landed and no lookup can find it (see below)")
    else:
        console.print("[yellow]not bound[/]: the next plan creates or adopts it (if the ERP row maps)")
    if info.get("remote_error"):
        console.print(f"[red]platform:[/] {_e(info['remote_error'])}")
    labels = (("ERP", "desired"), ("base", "base"), ("platform", "remote"))
    sides: list[tuple[str, dict[str, Any]]] = [(n, info[k]) for n, k in labels if info.get(k) is not None]
    if sides:
        table = Table(title="Fields", title_justify="left")
        table.add_column("field")
        for name, _ in sides:
            table.add_column(name)
        names = sorted({k for _, data in sides for k in data})
        for field in names:
            values = [fmt(data.get(field)) for _, data in sides]
            style = "" if len(set(values)) == 1 else "bold yellow"
            table.add_row(Text(field, style=style), *(Text(v, style=style) for v in values))
        console.print(table)
    last = info.get("last_action")
    if last:
        text = f"last action: {last.get('action')} → {last.get('outcome')} (run {last.get('run_id')})"
        text += f": {last['detail']}" if last.get("detail") else ""
        text += f" request {last['request_id']}" if last.get("request_id") else ""
        console.print(_e(text))
    else:
        console.print("last action: " + EMPTY)
    for q in info.get("quarantine") or []:
        field = f" field {q['field']!r}" if q.get("field") else ""
        text = f"({q.get('stage')}){field}: {q.get('rule')}: {q.get('message')}"
        console.print(f"[bold red]quarantined[/] {_e(text)}")
    for i in info.get("open_intents") or []:
        error = f": {i['error']}" if i.get("error") else ""
        text = f"{i.get('id')} {i.get('state')} after {i.get('attempts')} attempt(s){error}"
        console.print(f"[yellow]open intent[/] {_e(text)}")
    if info.get("next"):
        console.print(f"next plan: {_e(info['next'])}")
