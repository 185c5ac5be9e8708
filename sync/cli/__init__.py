"""The ``erpsync`` command line (Typer).

Each command group lives in its own module of this package and exposes
``register(app: typer.Typer) -> None``; modules are discovered here, so adding a
command never means editing a shared file.

Exit codes (docs/exit-codes.md; ``sync.report.outcomes.EXIT_CODES``):

==== =========================================================================================
0    success: ``plan`` has nothing to write; ``apply`` wrote every row (status ok)
1    error: bad configuration or input, an unreachable platform, a run that stopped
2    ``plan``: there are changes to apply; any command: a usage error (an unknown option, a
     bad option value)
3    ``apply``, ``retry-failed``: the run finished, but rows were quarantined, rejected,
     deferred, failed or held (status partial); the report lists them with what to do
==== =========================================================================================
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from sync.errors import ErpsyncError
from sync.observability.logging import LogFormatChoice, LogLevelChoice, set_overrides

app = typer.Typer(
    name="erpsync",
    help="Synchronize an ERP with SmartEPI and SmartKasa: plan, apply, and bring data back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"erpsync {version('erpsync')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("erpsync (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    log_format: LogFormatChoice | None = typer.Option(None, help="Log lines as text or JSON."),
    log_level: LogLevelChoice | None = typer.Option(
        None, case_sensitive=False, help="Log level (default: the config's log_level)."
    ),
) -> None:
    """Synchronize an ERP with SmartEPI and SmartKasa: plan, apply, and bring data back."""
    set_overrides(log_level and log_level.value, log_format and log_format.value)  # over the config


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_discover()


def main() -> None:
    """Console entry point: erpsync errors become one clear line and exit code 1."""
    try:
        app()
    except ErpsyncError as exc:  # pragma: no cover - exercised through CliRunner tests
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
