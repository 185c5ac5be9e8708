"""``erpsync config check FILE``: validate a configuration (and its mapping files).

Besides errors, the check says what the configuration means for the running service
where a user would not guess it: an ERP entity without a change column is only synced
by reconciles (the poll cannot see its edits), and platform edits of an entity whose
ERP table cannot be written wait in ``adopted_edits`` instead of reaching the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sync.cli._common import console, fail
from sync.errors import ErpsyncError
from sync.settings import TenantSettings, load_settings

config_app = typer.Typer(help="Inspect and validate configuration.", no_args_is_help=True)


def tenant_notes(tenant_id: str, tenant: TenantSettings) -> list[str]:
    """What the service will (not) do with this tenant that a user should know: one line each."""
    from sync.sources.entities import flows_back, unpolled, writes_back

    notes = []
    every = tenant.schedule.fast_reconcile_seconds
    for entity in unpolled(tenant):
        notes.append(
            f"tenants.{tenant_id}.erp.entities.{entity}: no updated_at column, so the service's "
            f"poll cannot see edits of {entity!r}; only reconciles (every {every} s) sync them. "
            f"Set erp.entities.{entity}.updated_at to the column that dates a row's last change "
            "(ISO text, SQL datetime or epoch seconds)"
        )
    for fb in flows_back(tenant):
        if not writes_back(tenant, fb.source):
            notes.append(
                f"tenants.{tenant_id}: platform edits of {fb.platform} {fb.entity} "
                f"({', '.join(fb.fields)}) are kept in adopted_edits, not written to the ERP, "
                f"because {fb.source!r} is not a writable table. Set "
                f"erp.entities.{fb.source}.writable: true to write them into the table"
            )
    return notes


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="YAML configuration file.")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not ask SmartKasa whether the configured shop ids exist.")
    ] = False,
    show_generated: Annotated[
        list[str] | None,
        typer.Option(
            "--show-generated",
            metavar="ENTITY",
            help="Also print the Python row loop generated for ENTITY (platform.entity, or entity"
            " when one platform maps it) for every tenant that maps it; repeatable.",
        ),
    ] = None,
) -> None:
    """Validate FILE: every problem is reported with its key path; secrets are never printed."""
    notes: list[str] = []
    try:
        settings = load_settings(file)
        from sync.engine.runtime import validate_tenant_files
        from sync.engine.shops import check_shops
        from sync.errors import ConfigError

        for tenant_id, tenant in settings.tenants.items():
            validate_tenant_files(tenant_id, tenant)
            notes.extend(tenant_notes(tenant_id, tenant))
            shop_problems, shop_notes = check_shops(tenant_id, tenant, online=not offline)
            if shop_problems:
                raise ConfigError("\n".join(shop_problems), hint="")
            notes.extend(shop_notes)
    except ErpsyncError as exc:
        raise fail(exc) from None
    for note in notes:
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(
        f"[green]ok[/]: {file} ({len(settings.tenants)} tenant(s): {', '.join(settings.tenants) or '-'})"
    )
    for name in show_generated or []:
        try:
            print_generated(settings.tenants, name)
        except ErpsyncError as exc:
            raise fail(exc) from None


def print_generated(tenants: dict[str, TenantSettings], name: str) -> None:
    """``--show-generated``: the generated row loop of entity ``name`` in every tenant mapping it."""
    from sync.core.mapping import load_mappings
    from sync.core.mapping.reference import generated_source
    from sync.engine.shops import tenant_lookups
    from sync.errors import ConfigError

    platform_part, _, entity_part = name.rpartition(".")
    shown = 0
    mapped: list[str] = []
    for tenant_id, tenant in tenants.items():
        mappings = load_mappings(tenant.mappings, lookups=tenant_lookups(tenant))
        for platform in mappings.platforms:
            for em in mappings.entities(platform):
                mapped.append(f"{platform}.{em.entity}")
                if em.entity != entity_part or platform_part not in ("", platform):
                    continue
                shown += 1
                source = generated_source(em)
                title = f"tenants.{tenant_id}: {platform}.{em.entity}"
                if source is None:
                    console.print(
                        f"# {escape(title)}: no generated loop (an entity with children maps every row"
                        " through the per-field path)",
                        highlight=False,
                        soft_wrap=True,
                    )
                    continue
                console.print(f"# {escape(title)}: generated row loop", highlight=False)
                console.print(escape(source), highlight=False, soft_wrap=True, end="")
    if not shown:
        known = ", ".join(sorted(set(mapped))) or "none"
        raise ConfigError(
            f"--show-generated {name}: no tenant maps this entity (mapped: {known})",
            hint="name it as platform.entity, e.g. smartepi.employees",
        )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
