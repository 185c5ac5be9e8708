"""The platform registry: a platform name → how to build its client and its adapter.

``TenantRuntime`` asks this registry instead of branching on platform names, so adding a
platform means one entry here, its catalogue entry (``sync.core.platforms``), its client
package and its adapter (docs/extending.md). The tenant settings section of a platform
has the platform's name (``tenants.<id>.smartepi``) and carries ``rate`` (requests per
second, burst, concurrency) and ``timeout_seconds``; the shared rate governor, the token
store and the transport are made by the runtime and handed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from sync.engine.adapters.base import PlatformAdapter
    from sync.engine.runtime import TenantRuntime


@dataclass(frozen=True, slots=True)
class ClientParts:
    """What the runtime prepared for one client: settings section, governor, transport."""

    settings: Any
    governor: Any
    transport: httpx.AsyncBaseTransport


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    name: str
    make_client: Callable[[TenantRuntime, ClientParts], Any]
    make_adapter: Callable[[TenantRuntime, Any, bool], PlatformAdapter]  # (runtime, client, owns_client)


def _smartepi_client(rt: TenantRuntime, parts: ClientParts) -> Any:
    from sync.clients.smartepi.client import SmartEPIClient

    epi = parts.settings
    return SmartEPIClient(
        epi.base_url,
        epi.api_key,
        account=rt.tenant_id,
        governor=parts.governor,
        transport=parts.transport,
        timeout=epi.timeout_seconds,
        max_connections=max(epi.rate.concurrency, 4),
        key_activation_wait=epi.key_activation_wait_seconds,
    )


def _smartepi_adapter(rt: TenantRuntime, client: Any, owns_client: bool) -> PlatformAdapter:
    from sync.engine.adapters.smartepi import SmartEPIAdapter

    return SmartEPIAdapter(client, owns_client=owns_client)


def _smartkasa_client(rt: TenantRuntime, parts: ClientParts) -> Any:
    from sync.clients.smartkasa.client import SmartKasaClient
    from sync.clients.smartkasa.config import SmartKasaSettings as ClientSettings
    from sync.state.tokens import StateTokenStore, token_cipher

    kasa = parts.settings
    client_settings = ClientSettings(
        base_url=kasa.base_url,
        api_key=kasa.api_key,
        phone_number=kasa.phone,
        password=kasa.password,
        auth_scheme=kasa.auth_scheme,
        body_style=kasa.body_style,
        refresh_margin_seconds=kasa.refresh_margin_seconds,
        batch_size=kasa.batch_size,
        timeout=kasa.timeout_seconds,
        max_connections=max(kasa.rate.concurrency, 4),
    )
    return SmartKasaClient(
        client_settings,
        account=rt.tenant_id,
        governor=parts.governor,
        transport=parts.transport,
        token_store=StateTokenStore(rt.store, rt.tenant_id, token_cipher(rt.settings.secrets_key)),
    )


def _smartkasa_adapter(rt: TenantRuntime, client: Any, owns_client: bool) -> PlatformAdapter:
    from sync.engine.adapters.smartkasa import SmartKasaAdapter

    return SmartKasaAdapter(
        client, batch_size=rt.platform_settings("smartkasa").batch_size, owns_client=owns_client
    )


REGISTRY: dict[str, PlatformEntry] = {
    e.name: e
    for e in (
        PlatformEntry("smartepi", _smartepi_client, _smartepi_adapter),
        PlatformEntry("smartkasa", _smartkasa_client, _smartkasa_adapter),
    )
}
