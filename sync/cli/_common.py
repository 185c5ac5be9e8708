"""Options and helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sync.errors import ErpsyncError
from sync.observability.logging import setup_logging
from sync.redact import scrub
from sync.settings import Settings, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="ERPSYNC_CONFIG", help="YAML config file (or $ERPSYNC_CONFIG)."),
]
TenantOption = Annotated[
    str | None, typer.Option("--tenant", "-t", help="Tenant id (optional with one tenant).")
]

console = Console()
err_console = Console(stderr=True)


def settings_or_exit(config: Path | None) -> Settings:
    """The settings, or one error line and exit 1. Without a config file (no ``--config``, no
    ``$ERPSYNC_CONFIG``) the environment must configure a tenant or ``state_url``: otherwise a
    command would create a state file in the current directory for nothing."""
    import os

    from sync.errors import ConfigError

    try:
        settings = load_settings(config)
        if (
            config is None
            and not os.environ.get("ERPSYNC_CONFIG")
            and not settings.tenants
            and "state_url" not in settings.model_fields_set
        ):
            raise ConfigError(
                "no configuration file",
                hint="pass --config FILE or set ERPSYNC_CONFIG",
            )
    except ErpsyncError as exc:
        fail(exc)
    setup_logging(settings.log_level, settings.log_format)  # --log-level / --log-format win
    return settings


def fail(exc: BaseException, code: int = 1) -> typer.Exit:
    """Print one clear, redacted error line and exit (never a traceback for expected errors)."""
    err_console.print(f"[bold red]error:[/] {scrub(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)
