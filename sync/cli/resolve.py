"""``erpsync resolve``: settle by hand a create erpsync holds because no lookup can find it."""

from __future__ import annotations

from typing import Annotated

import typer

from sync.cli._common import ConfigOption, TenantOption, console, fail, settings_or_exit
from sync.errors import ConfigError, ErpsyncError


def resolve_command(
    entity: Annotated[str, typer.Argument(help="Platform entity, e.g. products.")],
    erp_key: Annotated[str, typer.Argument(help="The record's ERP key.")],
    remote_id: Annotated[
        str | None, typer.Option("--remote-id", help="The platform id of the record you found for this row.")
    ] = None,
    not_created: Annotated[
        bool, typer.Option("--not-created", help="You checked: the record is not on the platform.")
    ] = False,
    config: ConfigOption = None,
    tenant: TenantOption = None,
    platform: Annotated[
        str | None, typer.Option(help="smartepi or smartkasa (when both map ENTITY).")
    ] = None,
) -> None:
    """Settle a held create: bind it to the record you found, or say it was not created.

    erpsync never resends a create whose outcome is unknown unless a lookup that could have
    found the record found nothing; `erpsync status` and `erpsync why` show the held ones.
    """
    from sync.engine.api import Engine
    from sync.engine.intents import settle_by_hand

    if (remote_id is None) == (not not_created):
        raise fail(ConfigError("give exactly one of --remote-id ID and --not-created", hint=""))
    settings = settings_or_exit(config)
    try:
        done = settle_by_hand(
            Engine(settings), tenant, entity, erp_key, remote_id=remote_id, platform=platform
        )
    except ErpsyncError as exc:
        raise fail(exc) from None
    if done.remote_id is not None:
        console.print(
            f"{done.platform}/{done.entity} {done.erp_key} bound to {done.remote_id}", highlight=False
        )
    else:
        console.print(
            f"{done.platform}/{done.entity} {done.erp_key}: marked not created; the next apply creates it",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("resolve")(resolve_command)
