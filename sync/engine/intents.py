"""A person settles an open intent by hand (``erpsync resolve``).

erpsync holds a create whose outcome is unknown when no lookup can find it (a SmartKasa
product without a barcode and without a marker): resending could duplicate it, since the
platform accepts duplicates. The person who checked the platform tells erpsync what they
found: the record is there (bind it, by id) or it is not (abandon the intent, so the next
apply creates it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sync.engine.api import Engine, remote_fields
from sync.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settled:
    platform: str
    entity: str
    erp_key: str
    intents: int
    remote_id: str | None  # None: marked as not created


def settle_by_hand(
    engine: Engine,
    tenant_id: str | None,
    entity: str,
    erp_key: str,
    *,
    remote_id: str | None,
    platform: str | None = None,
) -> Settled:
    """Bind ``erp_key`` to ``remote_id`` (checked on the platform) or, with None, mark it not created."""
    rt = engine.runtime(tenant_id)
    policies = rt.policies()
    candidates = [p for p in rt.platforms() if (platform in (None, p)) and (p, entity) in policies]
    if len(candidates) != 1:
        raise ConfigError(
            f"{entity!r} is mapped on {len(candidates)} platform(s)"
            + (f" matching {platform}" if platform else ""),
            hint="use the platform entity name from the mapping files and add --platform when both map it",
        )
    plat = candidates[0]
    store = engine.store
    open_ = [i for i in store.open_intents(rt.tenant_id, plat) if i.entity == entity and i.erp_key == erp_key]
    if not open_:
        raise ConfigError(
            f"{plat}/{entity} {erp_key!r} has no open intent: nothing to resolve",
            hint="`erpsync status` lists the open intents; `erpsync why ENTITY KEY` explains one record",
        )
    if remote_id is not None:
        policy = policies[(plat, entity)]
        bound = store.reverse_bindings(rt.tenant_id, plat).get(entity, {})
        if bound.get(remote_id) not in (None, erp_key):
            raise ConfigError(
                f"{plat} {entity} {remote_id} is already bound to ERP key {bound[remote_id]!r}",
                hint="give the id of the record created for this ERP row",
            )

        async def fetch() -> object:
            adapters = rt.adapters([plat])
            try:
                return await adapters[plat].get(entity, remote_id)
            finally:
                for a in adapters.values():
                    await a.aclose()

        raw = asyncio.run(fetch())
        if raw is None:
            raise ConfigError(
                f"{plat} has no {entity} with id {remote_id!r}",
                hint="copy the id from the platform's console or from `erpsync inspect`",
            )
        reverse = store.reverse_bindings(rt.tenant_id, plat)
        remote = remote_fields(rt, policy, raw, reverse)  # type: ignore[arg-type]
        store.save_base(
            rt.tenant_id,
            plat,
            entity,
            erp_key,
            remote.remote_id,
            remote.fields,
            children=remote.children,
            version=getattr(raw, "version", None),
        )
    for intent in open_:
        assert intent.id is not None
        if remote_id is not None:
            store.set_intent(intent.id, "done", remote_id=remote_id, error="bound by hand (erpsync resolve)")
        else:
            store.set_intent(intent.id, "abandoned", error="not created, said by hand (erpsync resolve)")
    return Settled(plat, entity, erp_key, len(open_), remote_id)
