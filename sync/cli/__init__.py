"""The ``erpsync`` command line (Typer).

Each command group lives in its own module of this package and exposes
``register(app: typer.Typer) -> None``; modules are discovered here, so adding a
command never means editing a shared file. Exit codes: 0 success (for ``plan``: no
changes), 1 error, 2 ``plan``: changes present.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from sync.errors import ErpsyncError

app = typer.Typer(
    name="erpsync",
    help="Synchronize an ERP with SmartEPI and SmartKasa: plan, apply, and bring data back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
