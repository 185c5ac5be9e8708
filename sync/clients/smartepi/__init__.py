"""SmartEPI /v1 client (contract: /work/shared/contracts/smartepi.md)."""

from sync.clients.smartepi.client import SmartEPIClient

__all__ = ["SmartEPIClient"]
