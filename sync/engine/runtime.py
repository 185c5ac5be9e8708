"""A tenant's live objects, built from settings in one place (CLI, tasks and web agree).

``TenantRuntime`` owns the mapping set, the ERP source, the state store and, per
platform, a client wrapped in an adapter with the deployment's rate governor (Redis
when ``redis_url`` is set, so every process shares one budget). Clients are async and
bound to the event loop that uses them, so ``adapters()`` builds fresh ones per run,
unless the runtime ``keep_clients`` (a worker process whose engine keeps one event loop):
then each platform's client, its connection pool and its Redis connections live as long
as the runtime, and only the adapters (which hold per-run caches) are new per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx

from sync.core.mapping import MappingSet, load_mappings
from sync.core.records import EntityPolicy, Platform
from sync.engine.adapters.base import PlatformAdapter
from sync.engine.registry import REGISTRY, ClientParts
from sync.errors import ConfigError, ErpsyncError, MappingError
from sync.settings import Settings, TenantSettings, deployment_namespace
from sync.state.store import StateStore


@dataclass
class TenantRuntime:
    tenant_id: str
    settings: Settings
    tenant: TenantSettings
    store: StateStore
    transports: Mapping[str, httpx.AsyncBaseTransport] = field(default_factory=dict)
    keep_clients: bool = False
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def mappings(self) -> MappingSet:
        """Mapping files; the tenant's SmartKasa ``shops`` table overrides the files' lookup
        (under any name a ``shop_id`` field gives it: ``sync.engine.shops``)."""
        from sync.engine.shops import tenant_lookups

        mappings = load_mappings(self.tenant.mappings, lookups=tenant_lookups(self.tenant))
        if not self.tenant.generated_mapping_loop:
            from sync.core.mapping.reference import set_generated_loop

            set_generated_loop(mappings, False)
        return mappings

    @cached_property
    def source(self) -> Any:
        from sync.sources import open_source

        return open_source(self.tenant.erp)

    def platform_settings(self, platform: str) -> Any:
        """The tenant's settings section of ``platform`` (``tenants.<id>.<platform>``), or None."""
        return getattr(self.tenant, platform, None)

    def platforms(self) -> list[Platform]:
        return [p for p in self.mappings.platforms if p in REGISTRY and self.platform_settings(p) is not None]

    def policies(self) -> dict[tuple[str, str], EntityPolicy]:
        out: dict[tuple[str, str], EntityPolicy] = {}
        for platform in self.platforms():
            for entity, policy in self.mappings.policies(platform).items():
                out[(platform, entity)] = policy
        return out

    def concurrency(self) -> dict[str, int]:
        out = {}
        for name in REGISTRY:
            section = self.platform_settings(name)
            if section is not None:
                out[name] = section.rate.concurrency
        return out

    def batch_size(self) -> int:
        """Records per batch request (the planner's cost model): the configured platforms' smallest."""
        sizes = [getattr(self.platform_settings(name), "batch_size", None) for name in REGISTRY]
        return min((n for n in sizes if n), default=100)

    def adapters(self, only: Iterable[str] | None = None) -> dict[str, PlatformAdapter]:
        """Adapters for this run (``only`` those platforms), on fresh clients, or on the kept
        ones when ``keep_clients``; request counts start at zero either way."""
        platforms = [p for p in self.platforms() if only is None or p in set(only)]
        clients = self._kept_clients(platforms) if self.keep_clients else self.new_clients(platforms)
        return {
            name: REGISTRY[name].make_adapter(self, client, not self.keep_clients)
            for name, client in clients.items()
        }

    def _kept_clients(self, platforms: list[Platform]) -> dict[str, Any]:
        missing = [p for p in platforms if p not in self._clients]
        if missing:
            self._clients.update(self.new_clients(missing))
        return {p: self._clients[p] for p in platforms if p in self._clients}

    async def aclose(self) -> None:
        """Close the kept clients (their connection pools and Redis connections)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def new_client(self, platform: str) -> Any:
        """One fresh client for ``platform`` (None when the tenant does not configure it)."""
        return self.new_clients([platform]).get(platform)

    def new_clients(self, platforms: Iterable[str]) -> dict[str, Any]:
        """Fresh clients the caller owns (and closes), for ``platforms`` the tenant configures.

        The one place clients are made: every caller (apply, pull, explain) shares the tenant's
        Redis rate governor, its token store and the injected transports."""
        platforms = list(platforms)
        from sync.clients.governor import RateLimits, make_governor

        out: dict[str, Any] = {}
        redis_url = self.settings.redis_url
        # The quota key names the deployment too, so two deployments sharing a Redis (or two
        # test runs) never share a budget by accident.
        namespace = deployment_namespace()
        gov_prefix = f"{namespace}:erpsync:gov" if namespace else "erpsync:gov"
        for name in platforms:
            section = self.platform_settings(name)
            if name not in REGISTRY or section is None:
                continue
            gov = make_governor(
                RateLimits(section.rate.requests_per_second, section.rate.burst, section.rate.concurrency),
                key=f"{gov_prefix}:{name}:{self.tenant_id}",
                redis_url=redis_url,
                request_timeout=section.timeout_seconds,
            )
            parts = ClientParts(section, gov, self.transports.get(name) or _transport(section))
            out[name] = REGISTRY[name].make_client(self, parts)
        return out


def _transport(platform: Any) -> httpx.AsyncBaseTransport:
    """A platform client's transport from its settings: ``transport`` (stock|lean), ``proxy``,
    ``max_response_bytes`` (``sync.clients.http.default_transport``)."""
    from sync.clients.http import default_transport

    return default_transport(
        max(platform.rate.concurrency, 4),
        kind=platform.transport,
        proxy=platform.proxy,
        max_response_bytes=platform.max_response_bytes,
    )


def validate_tenant_files(tenant_id: str, tenant: TenantSettings) -> None:
    """Check what the settings model cannot: mapping files and the ERP source section."""
    missing = [str(p) for p in tenant.mappings if not p.exists()]
    if missing:
        raise ConfigError(f"tenants.{tenant_id}.mappings: no such file: {', '.join(missing)}")
    try:
        from sync.core.mapping import load_mappings
    except ImportError:  # mapping engine not installed in this build
        return
    try:
        from sync.engine.shops import tenant_lookups

        load_mappings(tenant.mappings, lookups=tenant_lookups(tenant))
    except MappingError:
        raise
    except ErpsyncError as exc:
        raise ConfigError(f"tenants.{tenant_id}.mappings: {exc}") from None


def build_runtime(
    settings: Settings,
    tenant_id: str | None,
    *,
    store: StateStore | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    keep_clients: bool = False,
) -> TenantRuntime:
    tid, tenant = settings.tenant(tenant_id)
    if tenant.smartepi is None and tenant.smartkasa is None:
        raise ConfigError(f"tenants.{tid}: no platform configured")
    return TenantRuntime(
        tid, settings, tenant, store or StateStore(settings.state_url), transports or {}, keep_clients
    )
