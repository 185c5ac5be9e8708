"""SmartKasa shop ids: where a mapping needs them, where they come from, and whether they resolve.

Stock cards name a shop by its integer SmartKasa id, which belongs to the account: a mapping
turns the ERP's shop code into it with a lookup table (``shop_id: {from: shop_code, lookup:
shops}``). The table is the tenant's ``smartkasa.shops`` setting when it is set, whatever name
the mapping gives the lookup (``shops``, ``lojas``, ``shop_ids``...), else the mapping file's
own table. ``shop_problems`` says, for ``config check``, when those ids cannot resolve: no
table at all, an empty one, or ids the account does not have (``erpsync inspect smartkasa
shops`` lists the ones it has).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from sync.settings import TenantSettings

SHOP_FIELD = "shop_id"
INSPECT_HINT = "list the account's shops with `erpsync inspect smartkasa shops -c CONFIG`"


@dataclass(frozen=True)
class ShopField:
    """One SmartKasa mapping field that holds a shop id."""

    file: str
    where: str  # e.g. "products.cards.shop_id"
    lookup: str | None  # the named lookup table; None: no lookup, or an inline table
    inline: Mapping[str, Any] | None  # an inline ``lookup: {CODE: id}`` table
    tables: Mapping[str, Mapping[str, Any]]  # the file's named lookup tables


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the mapping loader reports unreadable files with their line numbers


def shop_fields(paths: Iterable[Path | str]) -> list[ShopField]:
    """Every ``shop_id`` field of the SmartKasa mapping files, top level or in children."""
    out: list[ShopField] = []
    for path in paths:
        doc = _load(Path(path))
        if not isinstance(doc, dict) or doc.get("platform") != "smartkasa":
            continue
        tables: dict[Any, Any] = doc["lookups"] if isinstance(doc.get("lookups"), dict) else {}
        entities: dict[Any, Any] = doc["entities"] if isinstance(doc.get("entities"), dict) else {}
        for ename, entity in entities.items():
            if not isinstance(entity, dict):
                continue
            scopes: list[tuple[str, Any]] = [(str(ename), entity.get("fields"))]
            children = entity.get("children")
            for cname, child in (children if isinstance(children, dict) else {}).items():
                if isinstance(child, dict):
                    scopes.append((f"{ename}.{cname}", child.get("fields")))
            for where, fields in scopes:
                spec = fields.get(SHOP_FIELD, False) if isinstance(fields, dict) else False
                if spec is False:
                    continue
                lookup = spec.get("lookup") if isinstance(spec, dict) else None
                out.append(
                    ShopField(
                        file=str(path),
                        where=f"{where}.{SHOP_FIELD}",
                        lookup=lookup if isinstance(lookup, str) else None,
                        inline=lookup if isinstance(lookup, dict) else None,
                        tables={str(k): v for k, v in tables.items() if isinstance(v, dict)},
                    )
                )
    return out


def tenant_lookups(tenant: TenantSettings) -> dict[str, dict[str, Any]] | None:
    """The lookup tables the tenant's settings add to its mapping files: ``smartkasa.shops``
    under ``shops`` and under every name a SmartKasa ``shop_id`` field looks up."""
    kasa = tenant.smartkasa
    if kasa is None or not kasa.shops:
        return None
    names = {"shops"} | {f.lookup for f in shop_fields(tenant.mappings) if f.lookup}
    return {name: dict(kasa.shops) for name in sorted(names)}


@dataclass(frozen=True)
class ShopTable:
    """The ERP shop code → shop id table one shop field resolves through, and where it is set."""

    field: ShopField
    table: Mapping[str, Any] | None  # None: the field has no lookup (the ERP column holds ids)
    source: str


def shop_tables(tenant_id: str, tenant: TenantSettings) -> list[ShopTable]:
    kasa = tenant.smartkasa
    out = []
    for f in shop_fields(tenant.mappings):
        if f.inline is not None:
            out.append(ShopTable(f, f.inline, f"{f.file}: {f.where}.lookup"))
        elif f.lookup is None:
            out.append(ShopTable(f, None, f"{f.file}: {f.where}"))
        elif kasa is not None and kasa.shops:
            out.append(ShopTable(f, dict(kasa.shops), f"tenants.{tenant_id}.smartkasa.shops"))
        else:
            out.append(ShopTable(f, f.tables.get(f.lookup), f"{f.file}: lookups.{f.lookup}"))
    return out


def _ids(table: Mapping[str, Any]) -> dict[str, str]:
    """ERP shop code → the id as text (YAML may give ints or strings)."""
    return {str(code): str(value).strip() for code, value in table.items()}


def shop_problems(
    tenant_id: str,
    tenant: TenantSettings,
    account_shops: Sequence[tuple[str, str | None]] | None = None,
) -> list[str]:
    """Why the shop ids a tenant's SmartKasa mapping needs would not resolve (empty: they do).

    ``account_shops``: the account's ``(id, title)`` pairs when they could be read; then every
    configured id must be one of them."""
    if tenant.smartkasa is None:
        return []
    problems = []
    fix = (
        f"{INSPECT_HINT}, then set tenants.{tenant_id}.smartkasa.shops: {{ERP_SHOP_CODE: SHOP_ID, ...}} "
        "(it overrides the mapping file's table, whatever the lookup is named)"
    )
    known = {sid for sid, _ in account_shops} if account_shops is not None else None
    seen: set[str] = set()
    for st in shop_tables(tenant_id, tenant):
        if st.table is None:
            continue  # ids straight from an ERP column: nothing to check without the data
        if st.source in seen:
            continue
        seen.add(st.source)
        ids = _ids(st.table)
        if not ids:
            problems.append(
                f"{st.field.file}: {st.field.where} needs SmartKasa shop ids but {st.source} is empty: {fix}"
            )
            continue
        bad = {code: sid for code, sid in ids.items() if not sid.isdigit()}
        if bad:
            shown = ", ".join(f"{c}: {v!r}" for c, v in sorted(bad.items()))
            problems.append(f"{st.source}: shop ids must be integers ({shown}): {fix}")
        if known is not None:
            missing = {code: sid for code, sid in ids.items() if sid.isdigit() and sid not in known}
            if missing:
                shown = ", ".join(f"{c}: {v}" for c, v in sorted(missing.items()))
                have = (
                    ", ".join(f"{sid} {title or ''}".strip() for sid, title in account_shops or []) or "none"
                )
                problems.append(
                    f"{st.source}: {shown} {'is not a shop' if len(missing) == 1 else 'are not shops'} "
                    f"of this SmartKasa account (its shops: {have}), so {st.field.where} "
                    f"would be rejected as `shop_id: invalid`: {fix}"
                )
    return problems


def needs_shop_ids(tenant: TenantSettings) -> bool:
    return tenant.smartkasa is not None and any(st.table is not None for st in shop_tables("", tenant))


async def account_shops(client: Any) -> list[tuple[str, str | None]]:
    """The SmartKasa account's shops as ``(id, title)``, in id order."""
    shops = [(str(shop.id), shop.title) async for shop in client.shops.iterate()]
    return sorted(shops, key=lambda s: (len(s[0]), s[0]))


def read_account_shops(
    tenant_id: str, tenant: TenantSettings, timeout: float = 10.0
) -> list[tuple[str, str | None]]:
    """The SmartKasa account's shops, read once with no retries and no state store (``config
    check`` stays free of side effects: session tokens live in memory). Raises ``ErpsyncError``
    (unreachable, refused login...)."""
    import asyncio

    from sync.clients.retry import NO_RETRY_POLICY
    from sync.clients.smartkasa.client import SmartKasaClient
    from sync.clients.smartkasa.config import SmartKasaSettings as ClientSettings

    kasa = tenant.smartkasa
    assert kasa is not None
    client = SmartKasaClient(
        ClientSettings(
            base_url=kasa.base_url,
            api_key=kasa.api_key,
            phone_number=kasa.phone,
            password=kasa.password,
            auth_scheme=kasa.auth_scheme,
            body_style=kasa.body_style,
            timeout=min(kasa.timeout_seconds, timeout),
        ),
        account=tenant_id,
        retry=NO_RETRY_POLICY,
    )

    async def go() -> list[tuple[str, str | None]]:
        try:
            return await account_shops(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def check_shops(
    tenant_id: str, tenant: TenantSettings, *, online: bool = True
) -> tuple[list[str], list[str]]:
    """(problems, notes) for ``config check``: problems when the shop ids a SmartKasa mapping
    needs cannot resolve; a note when the account could not be asked."""
    from sync.errors import ErpsyncError

    if not needs_shop_ids(tenant):
        return [], []
    problems = shop_problems(tenant_id, tenant)
    if problems or not online:
        return problems, []
    try:
        shops = read_account_shops(tenant_id, tenant)
    except (ErpsyncError, OSError) as exc:
        return [], [
            f"tenants.{tenant_id}.smartkasa: the shop ids were not checked against the account "
            f"(SmartKasa did not answer: {exc}); run `erpsync config check` again when it is reachable"
        ]
    return shop_problems(tenant_id, tenant, shops), []
