"""``erpsync inspect PLATFORM LIST``: the reference lists a mapping needs ids from, read live.

A mapping that writes stock cards needs the SmartKasa account's shop ids (``smartkasa.shops``
in the tenant's config); one that sets a unit needs SmartKasa unit type codes; SmartEPI's
organisation lists (sectors, cost centers, job roles, groups, access groups) give the ids a
console user would otherwise copy by hand. Each list prints as a table, or as JSON with
``--json``. Nothing is written.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from sync.cli._common import ConfigOption, TenantOption, console, fail, settings_or_exit
from sync.errors import ConfigError, ErpsyncError

inspect_app = typer.Typer(
    help="List a platform's reference data (SmartKasa shops, unit types; SmartEPI sectors...).",
    no_args_is_help=True,
)

SMARTKASA_LISTS = ("shops", "unit-types", "subgroups")
SMARTEPI_LISTS = ("sectors", "cost-centers", "job-roles", "groups", "access-groups")
JsonOption = Annotated[bool, typer.Option("--json", help="Print the list as JSON on stdout.")]


def _choose(name: str, known: tuple[str, ...], platform: str) -> str:
    import difflib

    wanted = name.strip().lower().replace("_", "-")
    if wanted in known:
        return wanted
    close = difflib.get_close_matches(wanted, known, n=1)
    maybe = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"{platform} has no list {name!r}: {maybe}known lists: {', '.join(known)}", hint="")


def _client(config: Any, tenant: str | None, platform: str) -> tuple[str, Any, Any]:
    """(tenant id, tenant settings, a fresh client the caller closes)."""
    from sync.engine.runtime import build_runtime

    settings = settings_or_exit(config)
    try:
        runtime = build_runtime(settings, tenant)
        if getattr(runtime.tenant, platform) is None:
            raise ConfigError(
                f"tenant {runtime.tenant_id!r} has no {platform} section",
                hint=f"add tenants.{runtime.tenant_id}.{platform} (base_url and credentials) to the config",
            )
        return runtime.tenant_id, runtime.tenant, runtime.new_client(platform)
    except ErpsyncError as exc:
        raise fail(exc) from None


def _run(client: Any, fetch: Any) -> Any:
    async def go() -> Any:
        try:
            return await fetch(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except ErpsyncError as exc:
        raise fail(exc) from None


def _print_table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    console.print(Text(title, style="bold"))
    if not rows:
        console.print(Text("(none)"))
        return
    table = Table()
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if row.get(c) is None else str(row.get(c))) for c in columns))
    console.print(table)


# --- SmartKasa -------------------------------------------------------------------------


async def _kasa_list(client: Any, name: str) -> list[dict[str, Any]]:
    if name == "shops":
        return [
            {
                "id": str(s.id),
                "title": s.title,
                "city": (s.address or {}).get("city_name"),
                "address": (s.address or {}).get("content"),
            }
            async for s in client.shops.iterate()
        ]
    if name == "unit-types":
        return [
            {"code": u.code, "name": u.name, "short_name": u.short_name, "weighted": u.is_weighted}
            async for u in client.unit_types.iterate()
        ]
    return [{"id": str(g.id), "title": g.title} async for g in client.subgroups.iterate()]


def smartkasa_command(
    list_name: Annotated[str, typer.Argument(metavar="LIST", help=f"One of: {', '.join(SMARTKASA_LISTS)}.")],
    config: ConfigOption = None,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """List SmartKasa reference data: shops (the ids `smartkasa.shops` needs), unit-types, subgroups."""
    try:
        name = _choose(list_name, SMARTKASA_LISTS, "smartkasa")
    except ErpsyncError as exc:
        raise fail(exc) from None
    tid, tenant_settings, client = _client(config, tenant, "smartkasa")
    rows = _run(client, lambda c: _kasa_list(c, name))
    if name == "shops":
        rows.sort(key=lambda r: (len(r["id"]), r["id"]))
        configured = {str(v): code for code, v in (tenant_settings.smartkasa.shops or {}).items()}
        for row in rows:
            row["erp_code"] = configured.get(row["id"])
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    columns = list(rows[0]) if rows else ["id"]
    _print_table(f"SmartKasa {name} of tenant {tid}: {len(rows)}", columns, rows)
    if name == "shops":
        _shops_advice(tid, tenant_settings, rows)


def _shops_advice(tid: str, tenant_settings: Any, rows: list[dict[str, Any]]) -> None:
    """Say how the ids go into the config, and which configured ids are not the account's."""
    from sync.engine.shops import shop_problems

    ids = [r["id"] for r in rows]
    configured = dict(tenant_settings.smartkasa.shops or {})
    problems = shop_problems(tid, tenant_settings, [(r["id"], r["title"]) for r in rows])
    for problem in problems:
        console.print(Text.assemble(("problem", "bold red"), ": ", problem))
    if configured and not problems:
        console.print(Text(f"tenants.{tid}.smartkasa.shops resolves: every configured id is a shop here."))
        return
    if not ids:
        console.print(Text("This account has no shops: create one in the SmartKasa console first."))
        return
    example = ", ".join(f"YOUR-SHOP-CODE-{i}: {sid}" for i, sid in enumerate(ids, 1))
    console.print(
        Text(
            "Map each ERP shop code to one of these ids in the config (it overrides the mapping "
            f"file's table, whatever the lookup is named):\n"
            f"tenants:\n  {tid}:\n    smartkasa:\n      shops: {{{example}}}"
        )
    )


# --- SmartEPI --------------------------------------------------------------------------


async def _epi_list(client: Any, name: str) -> list[dict[str, Any]]:
    return [dict(r) async for r in client.resource(name).list()]


def _epi_columns(rows: list[dict[str, Any]]) -> list[str]:
    preferred = ["id", "name", "code", "description", "active"]
    present = {k for r in rows for k, v in r.items() if not isinstance(v, (dict, list))}
    cols = [c for c in preferred if c in present]
    cols += sorted(present - set(cols))[: max(0, 6 - len(cols))]
    return cols or ["id"]


def smartepi_command(
    list_name: Annotated[str, typer.Argument(metavar="LIST", help=f"One of: {', '.join(SMARTEPI_LISTS)}.")],
    config: ConfigOption = None,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """List SmartEPI reference data: sectors, cost-centers, job-roles, groups, access-groups."""
    try:
        name = _choose(list_name, SMARTEPI_LISTS, "smartepi")
    except ErpsyncError as exc:
        raise fail(exc) from None
    tid, _, client = _client(config, tenant, "smartepi")
    rows = _run(client, lambda c: _epi_list(c, name))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    _print_table(f"SmartEPI {name} of tenant {tid}: {len(rows)}", _epi_columns(rows), rows)


def register(app: typer.Typer) -> None:
    inspect_app.command("smartkasa")(smartkasa_command)
    inspect_app.command("smartepi")(smartepi_command)
    app.add_typer(inspect_app, name="inspect")
