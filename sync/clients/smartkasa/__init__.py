"""SmartKasa (POS) platform client: auth session, resources, errors, batch creates."""

from sync.clients.smartkasa.auth import MemoryTokenStore, SessionManager, TokenSet, TokenStore
from sync.clients.smartkasa.client import SmartKasaClient
from sync.clients.smartkasa.config import SmartKasaSettings
from sync.clients.smartkasa.errors import (
    BatchAmbiguous,
    BatchChunkRejected,
    map_status_error,
    parse_error_body,
)
from sync.clients.smartkasa.resources import BatchResult, CardUpsert

__all__ = [
    "BatchAmbiguous",
    "BatchChunkRejected",
    "BatchResult",
    "CardUpsert",
    "MemoryTokenStore",
    "SessionManager",
    "SmartKasaClient",
    "SmartKasaSettings",
    "TokenSet",
    "TokenStore",
    "map_status_error",
    "parse_error_body",
]
