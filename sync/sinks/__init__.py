"""ERP sinks for inbound data (transactions, sales, stock): SQL tables or JSONL files.

``open_sink`` is the one place that turns a tenant's ``sink`` settings into a writer, so
the CLI, the Celery tasks and the tests build it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from sync.errors import ConfigError
from sync.sinks.base import STREAMS, InboundRow, Sink, SinkRowError
from sync.sinks.jsonl import JsonlSink
from sync.sinks.sql import SqlSink
from sync.state.store import StateStore


def _erp_url(erp: Any) -> str | None:
    """The ERP source's URL (a ``SecretStr`` in the source config, or a plain dict value)."""
    raw = erp.get("url") if isinstance(erp, Mapping) else getattr(erp, "url", None)
    if isinstance(raw, SecretStr):
        raw = raw.get_secret_value()
    return str(raw) if raw else None


def open_sink(
    tenant_settings: Any,
    *,
    tenant_id: str,
    store: StateStore,
    clients: Callable[[str], Any] | None = None,
) -> Sink:
    """The tenant's sink: ``sql`` (default: the ERP source database), ``jsonl`` (a folder) or
    ``tryton``. ``clients`` makes a platform client (``TenantRuntime.new_client``: the one place
    clients are made, sharing the tenant's rate governor) for a sink that reads a platform.

    Optional settings read when present: ``sink.tables`` (stream → existing table name) and
    ``sink.prefix`` (prefix of the tables we create, default ``erpsync_``).
    """
    cfg = tenant_settings.sink
    if cfg.kind == "tryton":  # docs/tryton.md "Sink"
        from sync.sinks.tryton import open_tryton_sink

        return open_tryton_sink(tenant_settings, tenant_id=tenant_id, store=store, clients=clients)
    if cfg.kind == "jsonl":
        if cfg.directory is None:
            raise ConfigError(f"tenants.{tenant_id}.sink.directory: required for a jsonl sink")
        return JsonlSink(cfg.directory, tenant=tenant_id, store=store)
    url = cfg.url or _erp_url(tenant_settings.erp)
    if not url:
        raise ConfigError(f"tenants.{tenant_id}.sink.url: required (the ERP source has no url to default to)")
    sink = SqlSink(
        str(url),
        tenant=tenant_id,
        store=store,
        prefix=getattr(cfg, "prefix", None) or "erpsync_",
        tables=getattr(cfg, "tables", None) or {},
    )
    sink.ensure_tables()
    return sink


__all__ = ["STREAMS", "InboundRow", "JsonlSink", "Sink", "SinkRowError", "SqlSink", "open_sink"]
