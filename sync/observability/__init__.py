"""Observability: logs an operator can read and a machine can parse (``logging``), metrics."""
