"""``erpsync why``: everything erpsync knows about one record, as plain data."""

from __future__ import annotations

import asyncio
from typing import Any

from sync.engine.api import Engine
from sync.engine.collect import remote_fields
from sync.errors import ConfigError, ErpsyncError
from sync.redact import MASK
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
    return {
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
