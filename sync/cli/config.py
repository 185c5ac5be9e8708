"""``erpsync config check FILE``: validate a configuration (and its mapping files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sync.cli._common import console, fail
from sync.errors import ErpsyncError
from sync.settings import load_settings

config_app = typer.Typer(help="Inspect and validate configuration.", no_args_is_help=True)


@config_app.command("check")
def check(file: Annotated[Path, typer.Argument(help="YAML configuration file.")]) -> None:
    """Validate FILE: every problem is reported with its key path; secrets are never printed."""
    try:
        settings = load_settings(file)
        from sync.engine.context import validate_tenant_files

        for tenant_id, tenant in settings.tenants.items():
            validate_tenant_files(tenant_id, tenant)
    except ErpsyncError as exc:
        raise fail(exc) from None
    console.print(
        f"[green]ok[/]: {file} ({len(settings.tenants)} tenant(s): {', '.join(settings.tenants) or '-'})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
