"""Self-contained HTML reports (Jinja2): inline CSS and JS, no external assets.

Values are prepared (formatted and redacted) in ``sync.report.view``; the templates only
lay them out, with autoescaping on.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from sync.core.plan import Plan
from sync.redact import scrub
from sync.report.outcomes import ATTENTION, classify, plan_outcomes, run_outcomes
from sync.report.view import action_row, duration, fmt, run_counts, summary, when


@cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("sync.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["scrub"] = lambda v: scrub(str(v)) if v is not None else ""
    env.filters["fmt"] = fmt
    return env


def render_plan_html(plan: Plan) -> str:
    kinds, rows = summary(plan)
    actions = [action_row(plan, a) for a in plan.actions]
    held = plan_outcomes(plan.quarantine)
    return (
        _env()
        .get_template("plan.html.j2")
        .render(
            plan=plan,
            plan_hash=plan.hash,
            created=when(plan.created_at),
            kinds=kinds,
            summary=rows,
            actions=actions,
            entities=sorted({f"{a.platform}/{a.entity}" for a in actions}),
            n_drift=sum(1 for a in actions for c in a.changes if c.kind == "drift"),
            n_conflict=sum(1 for a in actions for c in a.changes if c.kind == "conflict"),
            outcomes=held,
            stage_class={"validate": "quarantined", "apply": "rejected"},
        )
    )


def render_run_html(run: dict[str, Any]) -> str:
    outcomes = run_outcomes(run.get("counts") or {})
    return (
        _env()
        .get_template("run.html.j2")
        .render(
            run=run,
            started=when(run.get("started_at")),
            finished=when(run.get("finished_at")),
            took=duration(run.get("duration")),
            counts=run_counts(run.get("counts") or {}),
            requests=[
                (platform, sum(n.values()) if isinstance(n, dict) else n)
                for platform, n in sorted((run.get("requests") or {}).items())
            ],
            items=[i for i in run.get("items") or [] if classify(str(i.get("outcome") or "")) in ATTENTION],
            outcomes=outcomes,
            classify=classify,
        )
    )
