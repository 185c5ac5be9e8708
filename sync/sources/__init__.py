"""ERP sources: read desired state as plain rows (no diff logic here)."""

from __future__ import annotations

from sync.sources.base import Source
from sync.sources.config import (
    FileEntityConfig,
    FileSourceConfig,
    SourceConfig,
    SqlEntityConfig,
    SqlSourceConfig,
    TrytonSourceConfig,
)


def open_source(config: SqlSourceConfig | FileSourceConfig | TrytonSourceConfig) -> Source:
    """Build the source a config describes (connections open lazily)."""
    if isinstance(config, SqlSourceConfig):
        from sync.sources.sql import SqlSource

        return SqlSource(config)
    if isinstance(config, TrytonSourceConfig):
        from sync.sources.tryton import TrytonSource

        return TrytonSource(config)
    from sync.sources.files import FileSource

    return FileSource(config)


__all__ = [
    "FileEntityConfig",
    "FileSourceConfig",
    "Source",
    "SourceConfig",
    "SqlEntityConfig",
    "SqlSourceConfig",
    "TrytonSourceConfig",
    "open_source",
]
