"""Options and helpers shared by the command modules."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sync.errors import ErpsyncError
from sync.redact import install_log_redaction, scrub
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


# Libraries that log every HTTP request or migration step at INFO: on a terminal that buries the
# plan, the progress bars and the run report. They speak at INFO only with log_level DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "alembic")


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record is emitted, not when logging was set up
    (so a handler never outlives a replaced or closed stream, e.g. under CliRunner)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def settings_or_exit(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except ErpsyncError as exc:
        fail(exc)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[_CurrentStderr()],
    )
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING)
    install_log_redaction()
    return settings


def fail(exc: BaseException, code: int = 1) -> typer.Exit:
    """Print one clear, redacted error line and exit (never a traceback for expected errors)."""
    err_console.print(f"[bold red]error:[/] {scrub(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)
