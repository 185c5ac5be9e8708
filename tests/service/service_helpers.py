"""Settings builders shared by the service tests and the benchmark."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from sync.clients.governor import max_request_timeout
from sync.settings import soft_time_limit

TOKENS = {"acme": "acme-event-token-0123456789", "globex": "globex-event-token-9876543210"}


def tenant_config(tenant: str, *, sandbox_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    return {
        "erp": {"kind": "files", "directory": "/nonexistent"},
        "mappings": ["mapping.yaml"],
        "smartepi": {"base_url": sandbox_url, "api_key": f"{tenant}-api-key-secret"},
        "event_token": TOKENS.get(tenant, f"{tenant}-event-token-000000"),
    }


def service_config(redis_url: str, state_url: str, tenants: list[str], **celery: Any) -> dict[str, Any]:
    conf = {"task_time_limit": 10, "visibility_timeout": 20, "debounce_seconds": 2.0, **celery}
    # The longest request timeout the settings accept under this time limit (rate-limit
    # slot leases must end before the task's soft time limit), at most the default 30 s.
    timeout = min(30.0, max_request_timeout(soft_time_limit(int(conf["task_time_limit"]))))
    data = {t: tenant_config(t) for t in tenants}
    for tenant in data.values():
        tenant["smartepi"]["timeout_seconds"] = math.floor(timeout * 100) / 100
    return {"state_url": state_url, "redis_url": redis_url, "celery": conf, "tenants": data}


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
