"""Options and helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

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


def check_output(path: Path | None, option: str) -> None:
    """Refuse an output file (``--html``, ``--out``) that cannot be written, before any work."""
    if path is None:
        return
    if path.is_dir():
        fail(
            ErpsyncError(
                f"{option} {path}: is a directory", hint=f"give a file name, e.g. {path / 'report.html'}"
            )
        )
    parent = path.parent
    if not parent.is_dir():
        fail(
            ErpsyncError(
                f"{option} {path}: the folder {parent} does not exist", hint="create it or pick another"
            )
        )


def fail(exc: BaseException, code: int = 1) -> typer.Exit:
    """Print one clear, redacted error line and exit (never a traceback for expected errors)."""
    # The message is data (paths, values): escaped, so "[bold]" in a path is printed as written.
    err_console.print(f"[bold red]error:[/] {escape(scrub(str(exc)))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
