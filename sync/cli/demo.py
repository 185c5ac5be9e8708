"""``erpsync demo``: the embedded default, end to end, in under a minute."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sync.cli._common import console


def demo_command(
    folder: Annotated[Path | None, typer.Option("--dir", help="Keep everything in this folder.")] = None,
    employees: Annotated[int, typer.Option(help="Employees in the generated ERP.")] = 120,
    erp: Annotated[
        str, typer.Option(help="The ERP: sqlite (a generated SQLite file) or tryton (needs erpsync[tryton]).")
    ] = "sqlite",
) -> None:
    """Run the whole loop against local sandboxes: plan, apply, change both sides, plan, apply, pull."""
    from sync.demo.tour import run_tour
    from sync.observability.logging import setup_logging

    setup_logging("WARNING", "text")  # erpsync --log-level / --log-format win
    if erp == "tryton":  # docs/tryton.md "Demo"
        from sync.demo.tryton_demo import require_tryton, run_tryton_tour
        from sync.errors import ConfigError

        try:
            require_tryton()
        except ConfigError as exc:
            from rich.markup import escape

            console.print(f"[red]error:[/] {escape(f'{exc.message} ({exc.hint})')}", soft_wrap=True)
            raise typer.Exit(2) from None
        figures = run_tryton_tour(folder, console=console)
        raise typer.Exit(0 if figures.get("converged") else 1)
    if erp != "sqlite":
        console.print(f"[red]error:[/] --erp {erp!r}: use sqlite or tryton", soft_wrap=True)
        raise typer.Exit(2)
    figures = run_tour(folder, console=console, employees=employees)
    raise typer.Exit(0 if figures.get("converged") else 1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
