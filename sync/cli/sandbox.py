"""``erpsync sandbox``: serve the SmartEPI and SmartKasa sandboxes on localhost until Ctrl-C.

Tenants named with ``--tenant-key`` are created on both sandboxes through their ``/_admin/tenants``
endpoint (SmartKasa logs them in with its default phone 380960000006 / password 123456789; SmartEPI
signs webhooks with ``--webhook-secret``). At start the command prints, per tenant, the config
block that reaches it: these are the local sandbox's own demo credentials (the key the user typed,
the sandbox's fixed phone and password), labelled as such, plus the shop ids of the SmartKasa
account, which ``smartkasa.shops`` needs for stock cards.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import typer

DEFAULT_SMARTEPI_PORT = 8801
DEFAULT_SMARTKASA_PORT = 8802


SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret-0123456789"
SANDBOX_PHONE = "380960000006"  # the SmartKasa sandbox's default login (sync.sandbox.smartkasa.config)
SANDBOX_PASSWORD = "123456789"
DEMO_SHOP_CODES = ("KYIV-01", "LVIV-01")  # the demo ERP's shop codes (python -m sync.demo.erpgen)


def register(app: typer.Typer) -> None:
    app.command("sandbox")(sandbox)


def _create(url: str, body: dict[str, object]) -> dict[str, Any] | None:
    """Create a sandbox tenant; None when it exists already (409)."""
    response = httpx.post(f"{url}/_admin/tenants", json=body, timeout=10)
    if response.status_code == 409:
        return None
    if response.status_code not in (200, 201):
        raise typer.BadParameter(f"could not create a tenant on {url}: {response.status_code}")
    data = response.json()
    return data if isinstance(data, dict) else {}


def _shop_ids(url: str, key: str) -> list[int]:
    """The shop ids of an existing SmartKasa sandbox tenant (admin dump)."""
    response = httpx.get(f"{url}/_admin/dump", headers={"X-API-KEY": key}, timeout=10)
    if response.status_code != 200:
        return []
    return sorted(int(s["id"]) for s in response.json().get("shops", []))


def _credentials(epi_url: str, kasa_url: str, key: str, secret: str, shop_ids: list[int]) -> str:
    """The config block for one sandbox tenant. Only the sandbox's own demo values: the key the
    user chose on the command line, the sandbox's fixed login, and a webhook secret for local use."""
    codes = [*DEMO_SHOP_CODES, *(f"SHOP-{n}" for n in range(3, len(shop_ids) + 1))]
    table = ", ".join(f"{code}: {sid}" for code, sid in zip(codes, shop_ids, strict=False))
    return "\n".join(
        [
            "",
            f"# SANDBOX credentials for tenant key {key} (demo values of this local sandbox, not a real",
            "# account): paste under tenants.<tenant>: in the config",
            "smartepi:",
            f"  base_url: {epi_url}/v1",
            f"  api_key: {key}",
            f"  webhook_secrets: [{secret}]",
            "smartkasa:",
            f"  base_url: {kasa_url}",
            f"  api_key: {key}",
            f'  phone: "{SANDBOX_PHONE}"',
            f'  password: "{SANDBOX_PASSWORD}"',
            f"  # shop ids of this SmartKasa account: {', '.join(map(str, shop_ids)) or 'none'}",
            "  # (ERP shop code: shop id; the codes are the demo ERP's, put your ERP's own)",
            f"  shops: {{{table}}}",
        ]
    )


def sandbox(
    smartepi_port: int = typer.Option(
        DEFAULT_SMARTEPI_PORT, help="SmartEPI sandbox port (0 = any free port)."
    ),
    smartkasa_port: int = typer.Option(
        DEFAULT_SMARTKASA_PORT, help="SmartKasa sandbox port (0 = any free port)."
    ),
    faults: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Fault file (YAML or JSON)."),
    tenant_key: list[str] = typer.Option(
        [], "--tenant-key", help="API key of a tenant to create (repeatable)."
    ),
    webhook_secret: str = typer.Option(
        SANDBOX_WEBHOOK_SECRET, help="Secret the SmartEPI sandbox signs its webhooks with."
    ),
    webhook_url: str | None = typer.Option(
        None,
        help="Where the SmartEPI sandbox posts webhooks (e.g. http://127.0.0.1:8080/webhooks/smartepi/TENANT).",
    ),
) -> None:
    """Serve both platform sandboxes in the foreground (Ctrl-C stops them)."""
    from sync.sandbox.faults import load_fault_file
    from sync.sandbox.runner import serve_sandboxes

    fault_configs = load_fault_file(faults) if faults else None
    pair = serve_sandboxes(smartepi_port, smartkasa_port, fault_configs)
    try:
        shops: dict[str, list[int]] = {}
        for key in tenant_key:
            epi: dict[str, object] = {"api_key": key, "webhook_secret": webhook_secret}
            if webhook_url:
                epi["webhook_url"] = webhook_url
            _create(pair.smartepi.url, epi)
            kasa = _create(pair.smartkasa.url, {"api_key": key})
            shops[key] = (
                [int(s) for s in kasa.get("shops", [])] if kasa else _shop_ids(pair.smartkasa.url, key)
            )
        typer.echo(f"SmartEPI sandbox:  {pair.smartepi.url}/v1")
        typer.echo(f"SmartKasa sandbox: {pair.smartkasa.url}/api/v1")
        typer.echo(f"tenants: {len(tenant_key)}; admin under /_admin; Ctrl-C to stop")
        for key in tenant_key:
            typer.echo(_credentials(pair.smartepi.url, pair.smartkasa.url, key, webhook_secret, shops[key]))
        if not tenant_key:
            typer.echo("no tenant yet: start with --tenant-key KEY to create one and print its credentials")
        stop = threading.Event()
        try:
            while pair.smartepi.running and pair.smartkasa.running:
                stop.wait(0.5)
        except KeyboardInterrupt:
            typer.echo("stopping")
    finally:
        pair.stop()
