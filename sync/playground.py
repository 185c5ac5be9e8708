"""A complete local environment: both sandboxes, a generated demo ERP and a config.

The demo, the end-to-end tests and the benchmarks all start here, so they exercise
exactly what a user runs: real HTTP against the sandboxes, the shipped mapping files,
SQLite (or any URL) for the state store. Secrets are generated per environment and
passed to the config as ``${ENV}`` references, never written to disk.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from sync.sandbox.faults import FaultConfig
from sync.sandbox.runner import SandboxPair, serve_sandboxes
from sync.settings import Settings, load_settings

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
ERP_SHOPS = ("KYIV-01", "LVIV-01")


def shipped_mappings() -> list[Path]:
    """The demo mapping files (repo checkout first, then the installed package copy)."""
    for folder in (MAPPINGS, Path(__file__).resolve().parent / "demo" / "mappings"):
        files = [folder / "smartepi.yaml", folder / "smartkasa.yaml"]
        if all(f.exists() for f in files):
            return files
    raise FileNotFoundError("demo mapping files not found (mappings/smartepi.yaml, mappings/smartkasa.yaml)")


@dataclass
class Playground:
    root: Path
    sandboxes: SandboxPair
    config_path: Path
    erp_path: Path
    tenant: str
    epi_key: str
    kasa_key: str
    shops: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def epi_url(self) -> str:
        return self.sandboxes.smartepi.url

    @property
    def kasa_url(self) -> str:
        return self.sandboxes.smartkasa.url

    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def epi_admin(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.epi_url}/_admin{path}", timeout=60, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def kasa_admin(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"X-API-KEY": self.kasa_key, **kw.pop("headers", {})}
        r = httpx.request(method, f"{self.kasa_url}/_admin{path}", timeout=60, headers=headers, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def epi_state(self) -> dict[str, Any]:
        return dict(self.epi_admin("GET", f"/tenants/{self.tenant}/state"))

    def kasa_state(self) -> dict[str, Any]:
        return dict(self.kasa_admin("GET", "/dump"))

    def set_faults(self, platform: str, faults: FaultConfig | dict[str, Any]) -> None:
        body = faults.model_dump() if isinstance(faults, FaultConfig) else faults
        if platform == "smartepi":
            self.epi_admin("PUT", "/faults", json=body)
        else:
            self.kasa_admin("PUT", "/faults", json=body)

    def stats(self, platform: str) -> dict[str, Any]:
        if platform == "smartepi":
            return dict(self.epi_admin("GET", "/stats"))
        return dict(self.kasa_admin("GET", "/stats"))

    def stop(self) -> None:
        self.sandboxes.stop()
        for name in self.env:
            os.environ.pop(name, None)

    def __enter__(self) -> Playground:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_playground(
    root: Path,
    *,
    employees: int = 120,
    products_epi: int = 40,
    products_kasa: int = 150,
    seed: int = 42,
    tenant: str = "demo",
    state_url: str | None = None,
    redis_url: str | None = None,
    faults: dict[str, FaultConfig] | None = None,
    rate: dict[str, Any] | None = None,
    webhook_url: str | None = None,
    extra_tenant: dict[str, Any] | None = None,
    mappings: list[Path] | None = None,
    generate_erp: bool = True,
) -> Playground:
    """Start both sandboxes, create one platform account each, generate the ERP, write a config."""
    from sync.demo.erpgen import generate

    root.mkdir(parents=True, exist_ok=True)
    pair = serve_sandboxes(faults=faults)
    try:
        epi_key = "sk_play_" + secrets.token_hex(12)
        kasa_key = secrets.token_hex(16)
        password = secrets.token_urlsafe(12)
        webhook_secret = "whsec_" + secrets.token_hex(16)
        epi_tenant: dict[str, Any] = {"id": tenant, "api_key": epi_key}
        if webhook_url:
            epi_tenant.update(webhook_url=webhook_url, webhook_secret=webhook_secret)
        r = httpx.post(f"{pair.smartepi.url}/_admin/tenants", json=epi_tenant, timeout=30)
        r.raise_for_status()
        r = httpx.post(
            f"{pair.smartkasa.url}/_admin/tenants",
            json={"api_key": kasa_key, "phone_number": "380971234567", "password": password},
            timeout=30,
        )
        r.raise_for_status()
        shop_ids = [int(s) for s in r.json()["shops"]]
        shops = dict(zip(ERP_SHOPS, shop_ids, strict=False))
        erp_path = root / "erp.db"
        if generate_erp:
            generate(
                erp_path,
                employees=employees,
                products_epi=products_epi,
                products_kasa=products_kasa,
                seed=seed,
            )
        prefix = f"ERPSYNC_PLAY_{secrets.token_hex(3).upper()}"
        env = {
            f"{prefix}_EPI_KEY": epi_key,
            f"{prefix}_KASA_KEY": kasa_key,
            f"{prefix}_KASA_PASSWORD": password,
            f"{prefix}_WEBHOOK_SECRET": webhook_secret,
            f"{prefix}_EVENT_TOKEN": secrets.token_hex(16),
        }
        os.environ.update(env)
        rates = {"requests_per_second": 1000.0, "burst": 1000, "concurrency": 8, **(rate or {})}
        tenant_cfg: dict[str, Any] = {
            # funcionarios accepts write-back: console edits of `both` fields land in the ERP table.
            "erp": {
                "kind": "sql",
                "url": f"sqlite:///{erp_path}",
                "entities": {"funcionarios": {"writable": True, "updated_at": "updated_at"}},
            },
            "mappings": [str(p) for p in (mappings or shipped_mappings())],
            "event_token": f"${{{prefix}_EVENT_TOKEN}}",
            "sink": {"kind": "sql", "url": f"sqlite:///{root / 'erp-inbound.db'}"},
            "smartepi": {
                "base_url": pair.smartepi.url + "/v1",
                "api_key": f"${{{prefix}_EPI_KEY}}",
                "webhook_secrets": [f"${{{prefix}_WEBHOOK_SECRET}}"],
                "rate": dict(rates),
            },
            "smartkasa": {
                "base_url": pair.smartkasa.url,
                "api_key": f"${{{prefix}_KASA_KEY}}",
                "phone": "380971234567",
                "password": f"${{{prefix}_KASA_PASSWORD}}",
                "shops": shops,
                "rate": dict(rates),
            },
            **(extra_tenant or {}),
        }
        config: dict[str, Any] = {
            "state_url": state_url or f"sqlite:///{root / 'state.db'}",
            "report_dir": str(root / "reports"),
            "tenants": {tenant: tenant_cfg},
        }
        if redis_url:
            config["redis_url"] = redis_url
        config_path = root / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return Playground(root, pair, config_path, erp_path, tenant, epi_key, kasa_key, shops, env)
    except BaseException:
        pair.stop()
        raise
