"""erpsync: ERP ↔ SmartEPI / SmartKasa synchronizer (plan, apply, inbound)."""

__version__ = "0.1.0"
