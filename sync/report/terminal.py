"""Terminal (Rich) renderings of plans, runs and ``erpsync why``."""

from __future__ import annotations

import re
from collections import Counter
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


# Detail rows shown on the terminal; the rest are in --json and the HTML report.
DETAIL_ROWS = 50


def _print_by_rule(console: Console, title: str, groups: Counter[tuple[str, str, str]]) -> None:
    """One line per (class, entity, rule) with its count, the largest first."""
    table = Table(title=title, title_justify="left", title_style="bold red")
    table.add_column("outcome")
    table.add_column("entity")
    table.add_column("rule")
    table.add_column("rows", justify="right")
    for (cls, entity, rule), n in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(Text(cls, style="red"), Text(entity), Text(rule, style="bold"), str(n))
    console.print(table)


def _short(text: str, width: int = 32) -> str:
    """A value cut to ``width`` characters on the terminal (--json and HTML show it whole)."""
    return text if len(text) <= width else f"{text[: width - 1]}… ({len(text)} chars)"


def _print_quarantine(console: Console, plan: Plan) -> None:
    if not plan.quarantine:
        return
    stage_class = {"apply": "rejected"}
    groups: Counter[tuple[str, str, str]] = Counter(
        (stage_class.get(q.stage, "quarantined"), f"{q.platform}/{q.entity}", q.rule) for q in plan.quarantine
    )
    _print_by_rule(console, f"Rows held back ({len(plan.quarantine)}), by rule", groups)
    table = Table(title="Held back rows", title_justify="left")
    for col in ("entity", "ERP key", "field", "ERP column", "value", "rule", "problem"):
        table.add_column(col, overflow="fold")
    shown = sorted(plan.quarantine, key=lambda q: (q.platform, q.entity, q.rule, q.erp_key))[:DETAIL_ROWS]
    for q in shown:
        cells = (
            f"{q.platform}/{q.entity}",
            q.erp_key,
            q.field or "",
            q.column or "",
            "" if q.value is None else _short(q.value),
            q.rule,
            scrub(q.message),
        )
        table.add_row(*(Text(str(c)) for c in cells))
    console.print(table)
    if len(plan.quarantine) > len(shown):
        console.print(
            f"… and {len(plan.quarantine) - len(shown)} more (every row: `erpsync plan --json` or --html)",
            highlight=False,
        )


_RULE = re.compile(r": ([a-z][a-z_]*): ")


def _rule_of(item: dict[str, Any], cls: str) -> str:
    """The rule a run item's detail names (``entity 'k' field 'f': rule: message``), else a short cause."""
    detail = str(item.get("detail") or "")
    found = _RULE.search(detail)
    if found:
        return found.group(1)
    return detail.split(":", 1)[0][:40] if detail else cls


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
        groups: Counter[tuple[str, str, str]] = Counter()
        for i in items:
            cls = classify(str(i.get("outcome") or ""))
            groups[(cls, f"{i.get('platform', '')}/{i.get('entity', '')}", _rule_of(i, cls))] += 1
        _print_by_rule(console, f"Items needing attention ({len(items)}), by rule", groups)
        table = Table(title="Items", title_justify="left")
        for col in ("entity", "ERP key", "action", "outcome", "detail", "request id"):
            table.add_column(col, overflow="fold")
        for i in items[:DETAIL_ROWS]:
            cells = (
                f"{i.get('platform', '')}/{i.get('entity', '')}",
                i.get("erp_key"),
                i.get("action"),
                classify(str(i.get("outcome") or "")),
                i.get("detail"),
                i.get("request_id"),
            )
            table.add_row(*(Text(scrub(str(c or ""))) for c in cells))
        console.print(table)
        if len(items) > DETAIL_ROWS:
            console.print(
                f"… and {len(items) - DETAIL_ROWS} more (every item: --json or --html)", highlight=False
            )
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
    source = info.get("source")
    if source:
        found = "found" if source.get("found") else "[bold yellow]no such row[/]"
        console.print(
            f"ERP row: table {_e(source.get('table'))}, {_e(source.get('key_column'))} = "
            f"{_e(info.get('erp_key', ''))}: {found}"
        )
    labels = (("ERP", "desired"), ("base", "base"), ("platform", "remote"))
    sides: list[tuple[str, dict[str, Any]]] = [(n, info[k]) for n, k in labels if info.get(k) is not None]
    if sides:
        columns = info.get("columns") or {}
        table = Table(title="Fields", title_justify="left")
        table.add_column("field")
        table.add_column("ERP column")
        for name, _ in sides:
            table.add_column(name, overflow="fold")
        names = sorted({k for _, data in sides for k in data})
        for field in names:
            values = [fmt(data.get(field)) for _, data in sides]
            style = "" if len(set(values)) == 1 else "bold yellow"
            column = Text(str(columns.get(field) or ""), style="dim")
            table.add_row(Text(field, style=style), column, *(Text(v, style=style) for v in values))
        console.print(table)
    children = info.get("children") or {}
    child_columns = info.get("children_columns") or {}
    for name in sorted(set(children.get("ERP") or {}) | set(children.get("base") or {})):
        erp_rows = (children.get("ERP") or {}).get(name) or []
        base_rows = (children.get("base") or {}).get(name) or []
        cols = ", ".join(
            f"{k.split('.', 1)[1]} ← {v}"
            for k, v in sorted(child_columns.items())
            if k.startswith(f"{name}.")
        )
        same = "same" if erp_rows == base_rows else "[bold yellow]differ[/]"
        console.print(
            f"children [bold]{_e(name)}[/]: {len(erp_rows)} in the ERP, {len(base_rows)} agreed last ({same})"
            + (f" · columns: {_e(cols)}" if cols else "")
        )
        for row in erp_rows[:10]:
            console.print(Text("    " + ", ".join(f"{k}={fmt(v)}" for k, v in sorted(row.items()))))
    last = info.get("last_action")
    if last:
        outcome = last.get("class") or last.get("outcome")
        text = f"last action: {last.get('action')} → {outcome} (run {last.get('run_id')})"
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
        console.print(f"[bold]next:[/] {_e(info['next'])}")
