"""``erpsync sandbox``: serve the SmartEPI and SmartKasa sandboxes on localhost until Ctrl-C.

Tenants named with ``--tenant-key`` are created on both sandboxes through their ``/_admin/tenants``
endpoint (SmartKasa logs them in with its default phone 380960000006 / password 123456789). Keys are
secrets even here: they are never printed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import typer

DEFAULT_SMARTEPI_PORT = 8801
DEFAULT_SMARTKASA_PORT = 8802


def register(app: typer.Typer) -> None:
    app.command("sandbox")(sandbox)


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
) -> None:
    """Serve both platform sandboxes in the foreground (Ctrl-C stops them)."""
    from sync.sandbox.faults import load_fault_file
    from sync.sandbox.runner import serve_sandboxes

    fault_configs = load_fault_file(faults) if faults else None
    pair = serve_sandboxes(smartepi_port, smartkasa_port, fault_configs)
    try:
        for handle in (pair.smartepi, pair.smartkasa):
            for key in tenant_key:
                response = httpx.post(f"{handle.url}/_admin/tenants", json={"api_key": key}, timeout=10)
                if response.status_code not in (200, 201, 409):
                    raise typer.BadParameter(
                        f"could not create a tenant on {handle.url}: {response.status_code}"
                    )
        typer.echo(f"SmartEPI sandbox:  {pair.smartepi.url}/v1")
        typer.echo(f"SmartKasa sandbox: {pair.smartkasa.url}/api/v1")
        typer.echo(f"tenants: {len(tenant_key)}; admin under /_admin; Ctrl-C to stop")
        stop = threading.Event()
        try:
            while pair.smartepi.running and pair.smartkasa.running:
                stop.wait(0.5)
        except KeyboardInterrupt:
            typer.echo("stopping")
    finally:
        pair.stop()
