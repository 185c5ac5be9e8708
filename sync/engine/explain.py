"""``erpsync why``: everything erpsync knows about one record, as plain data."""

from __future__ import annotations

import asyncio
from typing import Any

from sync.engine.api import Engine
from sync.engine.collect import remote_fields
from sync.errors import ConfigError, ErpsyncError
from sync.redact import MASK
from sync.report.outcomes import classify
from sync.settings import Settings


def explain(
    settings: Settings, tenant_id: str | None, entity: str, erp_key: str, *, platform: str | None = None
) -> dict[str, Any]:
    engine = Engine(settings)
    rt = engine.runtime(tenant_id)
    candidates = [
        p for p in rt.platforms() if (platform is None or p == platform) and (p, entity) in rt.policies()
    ]
    if not candidates:
        raise ConfigError(
            f"no mapped entity {entity!r}" + (f" on {platform}" if platform else ""),
            hint="use the platform entity name from the mapping files, e.g. employees",
        )
    if len(candidates) > 1:
        raise ConfigError(f"{entity!r} is mapped on {', '.join(candidates)}", hint="add --platform")
    plat = candidates[0]
    policy = rt.policies()[(plat, entity)]
    secret = {name for name, f in policy.fields.items() if f.sensitive}

    def hide(fields: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if fields is None else {k: (MASK if k in secret else v) for k, v in fields.items()}

    store = engine.store
    base = store.binding(rt.tenant_id, plat, entity, erp_key)
    remote: dict[str, Any] | None = None
    remote_error: str | None = None
    if base is not None:

        async def fetch() -> Any:
            adapters = rt.adapters()
            try:
                return await adapters[plat].get(entity, base.remote_id)
            finally:
                for a in adapters.values():
                    await a.aclose()

        try:
            raw = asyncio.run(fetch())
            if raw is None:
                remote_error = "gone on the platform (404)"
            else:
                reverse = store.reverse_bindings(rt.tenant_id, plat)
                remote = remote_fields(rt, policy, raw, reverse).fields
        except ErpsyncError as exc:
            remote_error = str(exc)
    last = store.last_item(rt.tenant_id, plat, entity, erp_key)
    quarantine = [q for q in store.quarantined(rt.tenant_id, plat, entity) if q.erp_key == erp_key]
    intents = [
        i for i in store.open_intents(rt.tenant_id, plat) if i.entity == entity and i.erp_key == erp_key
    ]
    em = rt.mappings.entity(plat, entity)
    erp_row, desired, erp_problems = _erp_side(rt, em, erp_key)
    if erp_row is None and base is None and last is None and not quarantine and not intents:
        raise ConfigError(
            f"no {entity} record with ERP key {erp_key!r}: the ERP table {em.source_entity!r} has no row "
            f"with {em.erp_key_field} = {erp_key!r} and erpsync never synced one",
            hint=f"check the key (it is the {em.erp_key_field!r} column of {em.source_entity!r})",
        )
    columns = {name: em.column_of(name) for name in policy.fields}
    children_columns = {
        f"{c.name}.{f.name}": ", ".join(f.columns) for c in em.children for f in c.fields if f.columns
    }
    info_next = next_action(
        bound=base is not None,
        erp_found=erp_row is not None,
        desired=hide(desired.fields) if desired else None,
        desired_children=desired.children if desired else None,
        base=hide(base.fields) if base else None,
        base_children=base.children if base else None,
        remote=hide(remote),
        quarantine=[(q.stage, q.rule, q.field) for q in quarantine] + erp_problems,
        held=any(str(i.error or "").startswith("held for a person") for i in intents),
        entity=entity,
        erp_key=erp_key,
        delete_policy=str(getattr(em.spec, "delete", "") or ""),
    )
    return {
        "source": {"table": em.source_entity, "key_column": em.erp_key_field, "found": erp_row is not None},
        "columns": columns,
        "children_columns": children_columns,
        "desired": hide(desired.fields) if desired else None,
        "children": {
            "ERP": desired.children if desired else None,
            "base": base.children if base else None,
        },
        "next": info_next,
        "tenant": rt.tenant_id,
        "platform": plat,
        "entity": entity,
        "erp_key": erp_key,
        "binding": {"remote_id": base.remote_id, "version": base.version} if base else None,
        "base": hide(base.fields) if base else None,
        "remote": hide(remote),
        "remote_error": remote_error,
        "last_action": None
        if last is None
        else {
            "run_id": last.run_id,
            "action": last.action,
            "outcome": last.outcome,
            "detail": last.detail,
            "request_id": last.request_id,
            "class": classify(last.outcome),
        },
        "quarantine": [
            {
                "stage": q.stage,
                "rule": q.rule,
                "field": q.field,
                "message": q.message,
                "value": q.value,
                "request_id": q.request_id,
            }
            for q in quarantine
        ],
        "open_intents": [
            {"id": i.id, "state": i.state, "attempts": i.attempts, "error": i.error} for i in intents
        ],
    }


def _erp_side(
    rt: Any, em: Any, erp_key: str
) -> tuple[dict[str, Any] | None, Any, list[tuple[str, str, str | None]]]:
    """The ERP row of ``erp_key`` (``None`` when absent), what it maps to (``None`` when it does
    not map) and the problems mapping it finds now (stage, rule, field)."""
    from sync.core.mapping import MapContext

    rows = list(rt.source.read_keys(em.source_entity, [erp_key], key_field=em.erp_key_field))
    if not rows:
        return None, None, []
    ctx = MapContext()
    for child, (source, _col) in em.child_sources.items():
        ctx.child_rows[child] = em.group_child_rows(child, rt.source.read(source))
    result = em.map_rows(rows, ctx)
    desired = next((d for d in result.desired if d.erp_key == erp_key), None)
    problems = [("validate", q.rule, q.field) for q in result.quarantine if q.erp_key == erp_key]
    return rows[0], desired, problems


def next_action(
    *,
    bound: bool,
    erp_found: bool,
    desired: dict[str, Any] | None,
    desired_children: dict[str, Any] | None,
    base: dict[str, Any] | None,
    base_children: dict[str, Any] | None,
    remote: dict[str, Any] | None,
    quarantine: list[tuple[str, str, str | None]],
    held: bool,
    entity: str,
    erp_key: str,
    delete_policy: str,
) -> str:
    """What the next apply does with this record, in one sentence (pure)."""
    if held:
        return (
            f"held for a person: check the platform, then `erpsync resolve {entity} {erp_key} "
            "--remote-id ID` or `--not-created`"
        )
    for stage, rule, field in quarantine:
        where = f" (field {field})" if field else ""
        if stage == "apply":
            return (
                f"waits: the platform rejected it ({rule}{where}); it is sent again when its ERP row or "
                "the mapping changes, or now with `erpsync retry-failed`"
            )
        return f"nothing is sent until the ERP row is fixed: {rule}{where}; it leaves quarantine by itself"
    if not erp_found:
        if not bound:
            return "nothing: the ERP has no such row and nothing is bound"
        policy = delete_policy or "ignore"
        return f"the ERP row is gone: the next apply applies the entity's delete policy ({policy})"
    if not bound:
        return "the next apply creates it on the platform (or adopts a record with the same natural key)"
    if desired is None:
        return "nothing: the ERP row is filtered out of this entity's mapping"
    changed = sorted(k for k, v in desired.items() if (base or {}).get(k) != v)
    drift = sorted(k for k, v in (remote or {}).items() if k in (base or {}) and (base or {}).get(k) != v)
    kids = sorted(k for k, v in (desired_children or {}).items() if (base_children or {}).get(k) != v)
    parts = []
    if changed:
        parts.append(f"updates {', '.join(changed)} from the ERP")
    if kids:
        parts.append(f"writes the children {', '.join(kids)}")
    if drift:
        parts.append(f"finds {', '.join(drift)} changed on the platform (drift, per the fields' policy)")
    if not parts:
        return "nothing: the ERP, the last agreed values and the platform agree"
    return "the next apply " + "; ".join(parts)
