"""``erpsync plan`` (dry run) and ``erpsync why`` (explain one record)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sync.cli._common import ConfigOption, TenantOption, check_output, console, fail, settings_or_exit
from sync.errors import ErpsyncError


def plan_command(
    config: ConfigOption = None,
    tenant: TenantOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Save the plan (JSON) for `erpsync apply`.")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    detail: Annotated[bool, typer.Option("--detail", help="List every action with its field diffs.")] = False,
    fast: Annotated[
        bool, typer.Option("--fast", help="Trust bindings and bases: do not read the platforms.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow a plan that trips the safety valve.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the plan as JSON on stdout (sensitive values masked).")
    ] = False,
) -> None:
    """Compute what apply would do, without writing to the platforms.

    Rows held back (quarantined, or rejected earlier and waiting) are listed by rule with
    what to do. Exit codes: 0 nothing to write, 2 changes present, 1 error.
    """
    from sync.engine.api import Engine
    from sync.report import render_plan_html, render_plan_json, render_plan_terminal

    check_output(out, "--out")
    check_output(html, "--html")
    settings = settings_or_exit(config)
    try:
        plan = Engine(settings).plan(tenant, mode="fast" if fast else "full", force=force)
    except ErpsyncError as exc:
        raise fail(exc) from None
    if out:
        out.write_text(plan.to_json(indent=2), encoding="utf-8")
    if html:
        html.write_text(render_plan_html(plan), encoding="utf-8")
    if as_json:
        # The report form: sensitive values masked (the saved --out file leaves them out too; apply
        # takes them from the fresh plan it computes to check the saved one).
        typer.echo(render_plan_json(plan))
    else:
        render_plan_terminal(plan, console, detail=detail)
        if out:
            console.print(f"plan saved to [bold]{out}[/] (hash {plan.hash[:12]})")
        if html:
            console.print(f"HTML report: [bold]{html}[/]")
    raise typer.Exit(0 if plan.is_empty() else 2)


def why_command(
    entity: Annotated[str, typer.Argument(help="Platform entity, e.g. employees or products.")],
    erp_key: Annotated[str, typer.Argument(help="The record's ERP key.")],
    config: ConfigOption = None,
    tenant: TenantOption = None,
    platform: Annotated[
        str | None, typer.Option(help="smartepi or smartkasa (when both map ENTITY).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Explain one record: its ERP row and the column behind each field, the values in the ERP,
    last agreed and on the platform, its children, the last run's outcome, quarantine, open
    intents and what the next apply does. Exit 1 when neither the ERP nor erpsync knows KEY."""
    from sync.engine.explain import explain

    settings = settings_or_exit(config)
    try:
        info = explain(settings, tenant, entity, erp_key, platform=platform)
    except ErpsyncError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str, ensure_ascii=False))
        return
    from sync.report import render_explain

    render_explain(info, console)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
    app.command("why")(why_command)
