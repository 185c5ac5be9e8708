"""The web app (``erpsync serve``): ERP change events, platform webhooks, health."""

from sync.web.app import create_app

__all__ = ["create_app"]
