"""Open intents: settled by lookup before a run writes, or by a person (``erpsync resolve``).

Every create is written to the intent log before its request goes out (``pending``) and
closed after its answer (``done``/``failed``); a crash or a lost answer leaves it open.
``resolve_open_intents`` settles those at the start of every apply: a lookup that could
have found the record decides (``match_lookup``), so a create is resent only when it
provably never landed.

erpsync holds a create whose outcome is unknown when no lookup can find it (a SmartKasa
product without a barcode and without a marker): resending could duplicate it, since the
platform accepts duplicates. The person who checked the platform tells erpsync what they
found: the record is there (bind it, by id) or it is not (abandon the intent, so the next
apply creates it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from sync.core.records import Platform, QuarantineEntry
from sync.engine.adapters.base import PlatformAdapter, RawRemote
from sync.engine.apply import ABSENT, UNSEARCHABLE, Several, held_reason, match_lookup
from sync.engine.collect import remote_fields
from sync.engine.registry import REGISTRY
from sync.engine.runtime import TenantRuntime
from sync.errors import ClientError, ConfigError, ErpsyncError
from sync.observability import metrics
from sync.state.models import Intent
from sync.state.store import StateStore

if TYPE_CHECKING:
    from sync.engine.api import Engine

log = logging.getLogger("erpsync.engine")
Fence = Callable[[], None]


async def resolve_open_intents(
    store: StateStore, rt: TenantRuntime, adapters: Mapping[str, PlatformAdapter], fence: Fence | None
) -> int:
    """Settle every pending/unknown intent by lookup before anything else.

    A create whose outcome is unknown is settled only by a lookup that could have found it
    (``match_lookup``): found → bound; absent → abandoned (the next plan creates it);
    unsearchable → held for a person (``erpsync resolve``); lookup failed → left open.
    """
    policies = rt.policies()
    resolved = 0
    groups: dict[tuple[str, str], list[Intent]] = {}
    for intent in store.open_intents(rt.tenant_id):
        assert intent.id is not None
        if intent.platform not in REGISTRY:
            continue  # an ERP sink's ledger (platform "tryton"): the sink settles its own
        policy = policies.get((intent.platform, intent.entity))
        adapter = adapters.get(intent.platform)
        if adapter is None and policy is not None:
            continue  # that platform is not part of this run (a change event elsewhere)
        if policy is None or adapter is None:
            store.set_intent(intent.id, "failed", error="no mapping or platform configured any more")
            continue
        existing = store.binding(rt.tenant_id, intent.platform, intent.entity, intent.erp_key)
        if existing is not None:
            store.set_intent(intent.id, "done", remote_id=existing.remote_id)
            resolved += 1
            continue
        groups.setdefault((intent.platform, intent.entity), []).append(intent)
    for (platform, entity), intents in groups.items():
        policy = policies[(platform, entity)]
        try:
            found = await adapters[platform].find_many(
                entity, [dict(i.natural_key) for i in intents], marker=policy.marker
            )
        except ErpsyncError as exc:
            if exc.kind == "terminal" and not isinstance(exc, ClientError):
                raise
            log.warning("%s/%s: resolving %d open intents failed: %s", platform, entity, len(intents), exc)
            continue
        for intent, candidates in zip(intents, found, strict=True):
            assert intent.id is not None
            bound = store.reverse_bindings(rt.tenant_id, platform).get(entity, {})
            got = match_lookup(policy, intent.natural_key, candidates, bound, intent.erp_key, own=True)
            metrics.ambiguous_resolved(rt.tenant_id, platform, entity, got)
            if got == UNSEARCHABLE:
                store.set_intent(intent.id, "unknown", error=held_reason(policy, intent.erp_key))
                continue
            if got == ABSENT:
                store.set_intent(
                    intent.id, "abandoned", error="lookup found nothing: the create never landed"
                )
            elif isinstance(got, RawRemote):
                if fence:
                    fence()
                reverse = store.reverse_bindings(rt.tenant_id, platform)
                remote = remote_fields(rt, policy, got, reverse)
                store.save_base(
                    rt.tenant_id,
                    platform,
                    entity,
                    intent.erp_key,
                    remote.remote_id,
                    remote.fields,
                    children=remote.children,
                    version=got.version,
                )
                store.set_intent(intent.id, "done", remote_id=remote.remote_id)
            else:
                assert isinstance(got, Several)
                store.set_intent(intent.id, "failed", error=f"{got.count} remote records match")
                store.quarantine(
                    rt.tenant_id,
                    [
                        QuarantineEntry(
                            cast(Platform, platform),
                            entity,
                            intent.erp_key,
                            None,
                            "ambiguous_natural_key",
                            f"{got.count} remote records match the natural key of an unfinished "
                            "create; keep one and delete the others on the platform",
                            stage="apply",
                        )
                    ],
                )
            resolved += 1
    return resolved


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
