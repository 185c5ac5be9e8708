"""Tryton 8.2 over JSON-RPC (docs/tryton.md, /work/shared/erp/tryton.md)."""

from sync.clients.tryton.client import SyncTrytonClient, TrytonClient
from sync.clients.tryton.errors import (
    TrytonAuthFailed,
    TrytonBug,
    TrytonBusy,
    TrytonConcurrencyError,
    TrytonForbidden,
    TrytonLoginError,
    TrytonUserError,
    TrytonWarning,
    batch_too_large,
)

__all__ = [
    "SyncTrytonClient",
    "TrytonAuthFailed",
    "TrytonBug",
    "TrytonBusy",
    "TrytonClient",
    "TrytonConcurrencyError",
    "TrytonForbidden",
    "TrytonLoginError",
    "TrytonUserError",
    "TrytonWarning",
    "batch_too_large",
]
