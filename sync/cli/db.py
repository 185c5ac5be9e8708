"""``erpsync db upgrade``: migrate the state store (Alembic)."""

from __future__ import annotations

from typing import Annotated

import typer

from sync.cli._common import ConfigOption, console, fail, settings_or_exit
from sync.errors import ErpsyncError
from sync.state import db as state_db

db_app = typer.Typer(help="State store maintenance.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(
    config: ConfigOption = None,
    url: Annotated[str | None, typer.Option(help="State store URL (overrides the config).")] = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply state-store migrations (SQLite by default, PostgreSQL by URL)."""
    target = url or settings_or_exit(config).state_url
    try:
        state_db.upgrade(target, revision)
        console.print(f"[green]state store at revision[/] {state_db.current_revision(target)}")
    except ErpsyncError as exc:
        raise fail(exc) from None


@db_app.command("current")
def current(config: ConfigOption = None, url: Annotated[str | None, typer.Option()] = None) -> None:
    """Print the state store's migration revision."""
    target = url or settings_or_exit(config).state_url
    console.print(state_db.current_revision(target) or "(empty)")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
