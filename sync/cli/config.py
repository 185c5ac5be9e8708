"""``erpsync config check FILE``: validate a configuration (and its mapping files).

Every problem is reported in one run: unset environment variables, settings (an unknown
key names the close valid one), each tenant's mapping files (file:line, did-you-mean for
fields and keys) and the shop ids SmartKasa mappings need.

Besides errors, the check says what the configuration means for the running service
where a user would not guess it: an ERP entity without a change column is only synced
by reconciles (the poll cannot see its edits), and platform edits of an entity whose
ERP table cannot be written wait in ``adopted_edits`` instead of reaching the table.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from sync.cli._common import console, err_console, fail
from sync.errors import ConfigError, ErpsyncError
from sync.redact import scrub
from sync.settings import Settings, TenantSettings, load_settings

config_app = typer.Typer(help="Inspect and validate configuration.", no_args_is_help=True)


def tenant_notes(tenant_id: str, tenant: TenantSettings) -> list[str]:
    """What the service will (not) do with this tenant that a user should know: one line each."""
    from sync.engine.entities import flows_back, unpolled, writes_back

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


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Stands for an unset environment variable while the rest of the file is validated.
_PLACEHOLDER = "unset-environment-variable-0123456789"


def missing_env(value: Any, path: str = "") -> list[tuple[str, str]]:
    """``(key path, variable)`` for every ``${VAR}`` without a default that is not set."""
    if isinstance(value, str):
        return [
            (path or "<root>", m.group(1))
            for m in _ENV_REF.finditer(value)
            if m.group(1) not in os.environ and m.group(2) is None
        ]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in missing_env(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in missing_env(v, f"{path}[{i}]")]
    return []


@contextmanager
def _placeholders(names: Iterable[str]) -> Iterator[None]:
    names = [n for n in names if n not in os.environ]
    for name in names:
        os.environ[name] = _PLACEHOLDER
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)


def _problems_of(exc: ErpsyncError) -> list[str]:
    """One entry per problem an error carries (settings and mapping errors list several)."""
    many = getattr(exc, "problems", None)
    if many:
        return [str(p) for p in many]
    return [str(exc)]


def config_problems(file: Path, *, online: bool = True) -> tuple[list[str], list[str], Settings | None]:
    """(problems, notes, settings) of FILE: every problem of every part at once (environment
    variables, settings, each tenant's mapping files and shops), each with its key path."""
    from sync.core.mapping import load_mappings

    problems: list[str] = []
    notes: list[str] = []
    try:
        return problems, notes, _check_tenants(load_settings(file), problems, notes, online)
    except ConfigError as exc:
        first = exc
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return [str(first)], notes, None  # unreadable: the one error says why
    if not isinstance(raw, dict):
        return [str(first)], notes, None
    unset = missing_env(raw)
    for path, name in unset:
        problems.append(
            f"{path}: environment variable {name} is not set (export it, or write ${{{name}:-default}})"
        )
    settings = None
    with _placeholders(name for _, name in unset):
        try:
            settings = load_settings(file)
        except ConfigError as exc:
            unset_paths = {path for path, _ in unset}
            # a value error at an unset variable's key is about the placeholder, not the file
            problems += [
                p for p in _problems_of(exc) if p.split(": ", 1)[0] not in unset_paths or ": unknown key" in p
            ]
        if settings is not None:
            _check_tenants(settings, problems, notes, online)
        else:  # the settings do not validate: still check every tenant's mapping files
            base = file.resolve().parent
            for tenant_id, tenant in (raw.get("tenants") or {}).items():
                paths = tenant.get("mappings") if isinstance(tenant, dict) else None
                if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                    continue
                try:
                    load_mappings([base / p for p in paths])
                except ErpsyncError as exc:
                    problems += [_in_tenant(tenant_id, p) for p in _problems_of(exc)]
    return problems, notes, None if problems else settings


def _in_tenant(tenant_id: str, problem: str) -> str:
    return problem if problem.startswith("tenants.") else f"tenants.{tenant_id}.mappings: {problem}"


def _check_tenants(settings: Settings, problems: list[str], notes: list[str], online: bool) -> Settings:
    from sync.engine.runtime import validate_tenant_files
    from sync.engine.shops import check_shops

    for tenant_id, tenant in settings.tenants.items():
        try:
            validate_tenant_files(tenant_id, tenant)
        except ErpsyncError as exc:
            problems += [_in_tenant(tenant_id, p) for p in _problems_of(exc)]
            continue
        notes.extend(tenant_notes(tenant_id, tenant))
        shop_problems, shop_notes = check_shops(tenant_id, tenant, online=online)
        problems += shop_problems
        notes.extend(shop_notes)
    return settings


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
    """Validate FILE and its mapping files: every problem at once, each with its key path (and
    the close valid name when a key is misspelt); secrets are never printed. Exit 1 on problems."""
    problems, notes, settings = config_problems(file, online=not offline)
    for note in notes:
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
    if problems or settings is None:
        for problem in problems:
            err_console.print(
                f"[bold red]error[/]: {escape(scrub(problem))}", highlight=False, soft_wrap=True
            )
        if len(problems) > 1:  # one problem is one line
            err_console.print(
                f"{len(problems)} problem(s) in {escape(str(file))}: fix them and run "
                "`erpsync config check` again",
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(1)
    console.print(
        f"[green]ok[/]: {escape(str(file))} ({len(settings.tenants)} tenant(s): "
        f"{', '.join(settings.tenants) or '-'})"
    )
    for name in show_generated or []:
        try:
            print_generated(settings.tenants, name)
        except ErpsyncError as exc:
            raise fail(exc) from None


@config_app.command("schema")
def schema(
    kind: Annotated[
        str, typer.Argument(help="config (the configuration file) or mapping (a mapping file).")
    ] = "config",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the schema to this file.")] = None,
) -> None:
    """Print the JSON Schema of the configuration file or of a mapping file (editors validate
    YAML with it, e.g. `# yaml-language-server: $schema=erpsync-config.schema.json`)."""
    from sync.cli._common import check_output
    from sync.docgen import json_schema

    if kind not in ("config", "mapping"):
        raise fail(ConfigError(f"no schema {kind!r}", hint="erpsync config schema config|mapping"))
    check_output(out, "--out")
    text = json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"JSON Schema of the {kind} file written to {escape(str(out))}", highlight=False)


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
