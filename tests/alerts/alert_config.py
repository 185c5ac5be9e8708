"""Settings of the alert tests: one tenant whose alerts go to local receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sync.settings import Settings, load_settings

API_KEY = "sk_alerts_test_api_key_0123456789"
WEBHOOK_SECRET = "whsec_alerts_test_secret_0123456789"
SMTP_PASSWORD = "smtp-password-alerts-0123456789"
HOOK_KEY = "hookkey-alerts-0123456789abcdef"  # part of the webhook URLs: they are secrets too


def alert_settings(
    tmp_path: Path,
    tenant: str,
    *,
    http_url: str,
    smtp_port: int | None,
    state_url: str,
    redis_url: str | None = None,
    thresholds: dict[str, Any] | None = None,
    formats: tuple[str, ...] = ("slack", "json"),
) -> Settings:
    alerts: dict[str, Any] = {
        "webhooks": [{"url": f"{http_url}/{fmt}/{HOOK_KEY}", "format": fmt} for fmt in formats],
        "thresholds": thresholds or {},
        "status_url": "https://erpsync.example.com",
    }
    if smtp_port is not None:
        alerts["email"] = {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "username": "alerts",
            "password": SMTP_PASSWORD,
            "sender": "erpsync@example.com",
            "to": ["ops@example.com"],
        }
    data = {
        "state_url": state_url,
        "redis_url": redis_url,
        "tenants": {
            tenant: {
                "erp": {"kind": "files", "directory": str(tmp_path)},
                "mappings": ["mapping.yaml"],
                "smartepi": {
                    "base_url": "http://127.0.0.1:9",
                    "api_key": API_KEY,
                    "webhook_secrets": [WEBHOOK_SECRET],
                },
                "alerts": alerts,
            }
        },
    }
    path = tmp_path / "erpsync.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_settings(path)


SECRETS = (API_KEY, WEBHOOK_SECRET, SMTP_PASSWORD, HOOK_KEY)
