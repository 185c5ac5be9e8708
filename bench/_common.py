"""Shared helpers for the benchmarks: out-of-process sandboxes, tenants, configs, machine load.

Each sandbox runs in its own ``uvicorn --factory`` process (as in ``bench/sandbox.py``), so it does not
share the GIL with erpsync, which runs in the benchmark's own process. Tenants are created through the
sandboxes' ``/_admin/tenants`` endpoints and the config is written the way ``sync.playground`` writes it
(secrets as ``${ENV}`` references, set in this process's environment only).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

FACTORIES = {
    "smartepi": "sync.sandbox.smartepi.app:create_app",
    "smartkasa": "sync.sandbox.smartkasa.app:create_app",
}
KASA_PHONE = "380971234567"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


@dataclass
class Sandbox:
    """One platform sandbox in its own process."""

    platform: str
    proc: subprocess.Popen[bytes]
    url: str
    admin_key: str | None = None  # SmartKasa admin calls name the tenant with X-API-KEY

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        t = self.process.cpu_times()
        return float(t.user + t.system)

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if self.admin_key and "X-API-KEY" not in headers:
            headers["X-API-KEY"] = self.admin_key
        r = httpx.request(method, f"{self.url}/_admin{path}", headers=headers, timeout=300, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def set_faults(self, **faults: Any) -> None:
        self.admin("PUT", "/faults", json=faults)

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "/stats"))

    def reset_stats(self) -> None:
        self.admin("DELETE", "/stats")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_sandbox(platform: str) -> Sandbox:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        FACTORIES[platform],
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{platform} sandbox exited with {proc.returncode}")
        try:
            httpx.get(f"{url}/_admin/faults", timeout=1)
            return Sandbox(platform, proc, url)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{platform} sandbox did not start")


@dataclass
class Pair:
    """Both sandboxes with one fresh account each, and what a config needs to reach them."""

    epi: Sandbox
    kasa: Sandbox
    tenant: str
    epi_key: str
    kasa_key: str
    kasa_password: str
    shops: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)

    def sandboxes(self) -> tuple[Sandbox, Sandbox]:
        return self.epi, self.kasa

    def set_faults(self, **faults: Any) -> None:
        for sb in self.sandboxes():
            sb.set_faults(**faults)

    def reset_stats(self) -> None:
        for sb in self.sandboxes():
            sb.reset_stats()

    def stop(self) -> None:
        for sb in self.sandboxes():
            sb.stop()
        for name in self.env:
            os.environ.pop(name, None)

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_pair(tenant: str = "bench", shop_codes: tuple[str, ...] = ("KYIV-01", "LVIV-01")) -> Pair:
    """Start both sandboxes (each in its own process) and create one account on each."""
    epi = start_sandbox("smartepi")
    try:
        kasa = start_sandbox("smartkasa")
    except BaseException:
        epi.stop()
        raise
    try:
        epi_key = "sk_bench_" + secrets.token_hex(12)
        kasa_key = secrets.token_hex(16)
        password = secrets.token_urlsafe(12)
        epi.admin("POST", "/tenants", json={"id": tenant, "api_key": epi_key})
        made = kasa.admin(
            "POST", "/tenants", json={"api_key": kasa_key, "phone_number": KASA_PHONE, "password": password}
        )
        kasa.admin_key = kasa_key
        shops = dict(zip(shop_codes, [int(s) for s in made["shops"]], strict=False))
        return Pair(epi, kasa, tenant, epi_key, kasa_key, password, shops)
    except BaseException:
        epi.stop()
        kasa.stop()
        raise


def write_config(
    pair: Pair,
    root: Path,
    *,
    erp_path: Path,
    mappings: list[Path],
    rate: dict[str, Any],
    state_name: str = "state.db",
) -> Path:
    """A one-tenant config for ``pair`` (secrets as ``${ENV}`` references, set in this process)."""
    prefix = f"ERPSYNC_BENCH_{secrets.token_hex(3).upper()}"
    env = {
        f"{prefix}_EPI_KEY": pair.epi_key,
        f"{prefix}_KASA_KEY": pair.kasa_key,
        f"{prefix}_KASA_PASSWORD": pair.kasa_password,
    }
    os.environ.update(env)
    pair.env.update(env)
    tenant_cfg: dict[str, Any] = {
        "erp": {"kind": "sql", "url": f"sqlite:///{erp_path}"},
        "mappings": [str(p) for p in mappings],
        "smartepi": {
            "base_url": pair.epi.url + "/v1",
            "api_key": f"${{{prefix}_EPI_KEY}}",
            "rate": dict(rate),
        },
        "smartkasa": {
            "base_url": pair.kasa.url,
            "api_key": f"${{{prefix}_KASA_KEY}}",
            "phone": KASA_PHONE,
            "password": f"${{{prefix}_KASA_PASSWORD}}",
            "shops": pair.shops,
            "rate": dict(rate),
        },
    }
    config = {
        "state_url": f"sqlite:///{root / state_name}",
        "report_dir": str(root / "reports"),
        "tenants": {pair.tenant: tenant_cfg},
    }
    path = root / f"config-{state_name.removesuffix('.db')}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
