"""Per-tenant wiring: settings → source, mappings, clients, state store.

This is the only place that turns configuration into live objects, so the CLI, the
Celery tasks and the web app build a tenant the same way.
"""

from __future__ import annotations

from sync.errors import ConfigError, ErpsyncError, MappingError
from sync.settings import TenantSettings


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
