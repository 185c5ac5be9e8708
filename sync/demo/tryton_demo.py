"""``erpsync demo --erp tryton``: the whole loop with a real Tryton 8.2 as the ERP.

A seeded Tryton database (``sync.demo.tryton_seed``, field guide §4) is built in the demo
folder (kept for the next run), ``trytond`` is started from this venv on a free loopback
port, and both sandboxes run in-process. Two tenants, one Tryton user each (one per company):
``demo`` (SmartEPI, user ``epi``) and ``demo-kasa`` (SmartKasa, user ``kasa``). The tour plans
and applies both, changes records in Tryton and a job role in the SmartEPI console, plans and
applies again (the console edit goes back into Tryton), then brings withdrawals, returns and
a day of sales back into Tryton through ``sink: {kind: tryton}`` and counts what landed.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.rule import Rule

from sync.errors import ConfigError

EPI_TENANT, KASA_TENANT = "demo", "demo-kasa"


def tryton_available() -> bool:
    try:
        return importlib.util.find_spec("trytond.modules.sale_point") is not None
    except ModuleNotFoundError:
        return False


def require_tryton() -> None:
    if not tryton_available():
        raise ConfigError(
            "erpsync demo --erp tryton needs Tryton 8.2 in this environment",
            hint="pip install 'erpsync[tryton]' (or pip install -e '.[tryton]' in a checkout)",
        )


def _mapping(name: str) -> Path:
    from sync.playground import shipped_mappings

    for path in shipped_mappings():
        candidate = path.with_name(name)
        if candidate.exists():
            return candidate
    raise ConfigError(f"the shipped mapping {name} is missing", hint="reinstall erpsync")


def ensure_database(directory: Path, size: str) -> dict[str, Any]:
    """The seeded database in ``directory``: reused when the seed script has not changed."""
    import json

    from sync.demo import tryton_seed

    manifest_path = directory / "seed.json"
    if manifest_path.exists():
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        same_size = manifest.get("employees") == tryton_seed.SeedSize.named(size).employees
        if manifest.get("script_hash") == tryton_seed.script_hash() and same_size:
            return manifest
    return tryton_seed.build(directory, size)


def fresh_copy(seeded: Path, target: Path) -> Path:
    """A working copy of the seeded database: every demo run starts from the same Tryton."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(seeded, target, ignore=shutil.ignore_patterns("trytond.log", "*.lock"))
    return target


def write_config(pg: Any, server: Any) -> Path:
    """Split the playground's one tenant into the two Tryton tenants (one user per company)."""
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    base = config["tenants"][pg.tenant]
    prefix = f"ERPSYNC_TRYTON_{secrets.token_hex(3).upper()}"
    tenants = {}
    for tenant, login, platform, other, mapping in (
        (EPI_TENANT, "epi", "smartepi", "smartkasa", "tryton-smartepi.yaml"),
        (KASA_TENANT, "kasa", "smartkasa", "smartepi", "tryton-smartkasa.yaml"),
    ):
        env = f"{prefix}_{login.upper()}"
        os.environ[env] = server.credentials(login)[1]
        pg.env[env] = os.environ[env]
        cfg = {k: v for k, v in base.items() if k != other}
        cfg["erp"] = {
            "kind": "tryton",
            "url": server.url.rstrip("/"),
            "database": server.database,
            "user": login,
            "password": f"${{{env}}}",
        }
        cfg["mappings"] = [str(_mapping(mapping))]
        cfg["sink"] = {"kind": "tryton"}
        if platform == "smartkasa":
            ids = sorted(pg.shops.values())
            cfg["smartkasa"] = {**cfg["smartkasa"], "shops": {"KYIV": ids[0], "LVIV": ids[-1]}}
        tenants[tenant] = cfg
    config["tenants"] = tenants
    pg.config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return Path(pg.config_path)


def tryton_edits(server: Any) -> list[str]:
    """What a Tryton user changes: a job role's name, a shop price, an employee's e-mail."""
    from sync.clients.tryton.client import SyncTrytonClient

    done = []
    for login in ("epi", "kasa"):
        with SyncTrytonClient(server.url, server.database, login, server.credentials(login)[1]) as c:
            if login == "epi":
                (root,) = c.search("party.category", [("name", "=", "Cargo"), ("parent", "=", None)])
                role = c.search_read("party.category", [("parent", "=", root)], ["name"], limit=1)[0]
                c.write("party.category", [role["id"]], {"name": role["name"] + " Sênior"})
                done.append(f"job role {role['name']!r}: renamed to {role['name'] + ' Sênior'!r} in Tryton")
                mech = c.search_read(
                    "party.contact_mechanism",
                    [("type", "=", "email"), ("value", "like", "%@metalurgica-exemplo.com.br")],
                    ["value"],
                    limit=1,
                    order=[("id", "DESC")],
                )[0]
                new = "novo." + mech["value"]
                c.write("party.contact_mechanism", [mech["id"]], {"value": new})
                done.append(f"an employee's e-mail: {mech['value']} → {new} (only the contact mechanism)")
            else:
                rows = c.search_read(
                    "product.product",
                    [("code", "like", "UA-%")],
                    ["code", "template", "gross_price_used"],
                    limit=1,
                    order=[("id", "ASC")],
                )
                for r in rows:
                    price = Decimal(str(r["gross_price_used"]))
                    new = (price * Decimal("1.1")).quantize(Decimal("0.01"))
                    c.write("product.template", [r["template"]], {"gross_price": new})
                    done.append(f"product {r['code']}: price {price} → {new} in Tryton")
    return done


def landed(server: Any) -> dict[str, int]:
    """What the inbound loop left in Tryton, for the narration and the tests."""
    from sync.clients.tryton.client import SyncTrytonClient

    out = {}
    with SyncTrytonClient(server.url, server.database, "epi", server.credentials("epi")[1]) as c:
        out["internal shipments done"] = c.search_count(
            "stock.shipment.internal", [("reference", "like", "erpsync:%"), ("state", "=", "done")]
        )
    with SyncTrytonClient(server.url, server.database, "kasa", server.credentials("kasa")[1]) as c:
        out["POS sales posted"] = c.search_count("sale.point.sale", [("state", "=", "posted")])
        out["cash sessions posted"] = c.search_count("sale.point.cash.session", [("state", "=", "posted")])
    return out


def run_tryton_tour(
    folder: Path | None = None, *, console: Console | None = None, size: str = "small"
) -> dict[str, Any]:
    """Run the Tryton demo; returns its figures (tests read them)."""
    require_tryton()
    from sync.demo.tour import console_edit, platform_activity, pull_into_sink
    from sync.demo.tryton_seed import TrytonServer
    from sync.engine.api import Engine
    from sync.playground import start_playground
    from sync.report import render_plan_terminal, render_run_terminal
    from sync.settings import load_settings

    out = console or Console()
    root = (folder or Path(tempfile.mkdtemp(prefix="erpsync-tryton-demo-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    figures: dict[str, Any] = {"folder": str(root)}
    out.print(Rule("[bold]erpsync demo --erp tryton"))
    out.print(f"Working folder: {root}  (ERP: Tryton 8.2 on SQLite, platforms: local sandboxes)")
    for name in ("state.db", "config.yaml"):
        (root / name).unlink(missing_ok=True)
    out.print("Building the Tryton database (field guide §4; kept for the next run)…")
    manifest = ensure_database(root / "tryton-seeded", size)
    figures["tryton_build"] = manifest.get("timings")
    with (
        TrytonServer(fresh_copy(root / "tryton-seeded", root / "tryton")) as server,
        start_playground(root, generate_erp=False) as pg,
    ):
        out.print(f"trytond at {server.url}, SmartEPI at {pg.epi_url}, SmartKasa at {pg.kasa_url}\n")
        engine = Engine(load_settings(write_config(pg, server)))
        from sync.engine.runs import run_dict

        for step, title in ((1, "First sync"), (2, "Changes in Tryton and in the console, then sync")):
            out.print(Rule(f"{step}. {title}"))
            if step == 2:
                for line in [*tryton_edits(server), console_edit(pg, engine)]:
                    out.print(f"  • {line}")
            for tenant in (EPI_TENANT, KASA_TENANT):
                plan = engine.plan(tenant)
                render_plan_terminal(plan, out, detail=step == 2)
                result = engine.apply(tenant)
                render_run_terminal(run_dict(engine, result.run_id), out)
                figures[f"apply_{step}_{tenant}"] = result.to_dict()
        figures["converged"] = all(engine.plan(t).is_empty() for t in (EPI_TENANT, KASA_TENANT))
        verdict = "empty: Tryton and both platforms agree" if figures["converged"] else "NOT empty"
        out.print(f"A third plan is {verdict}.")

        out.print(Rule("3. Transactions and sales back into Tryton"))
        out.print(f"  • {platform_activity(pg)}")
        figures["inbound"] = {t: pull_into_sink(engine, t, out) for t in (EPI_TENANT, KASA_TENANT)}
        figures["landed"] = landed(server)
        for what, n in figures["landed"].items():
            out.print(f"  • Tryton: {n} {what}")
        figures["seconds"] = round(time.monotonic() - started, 1)
        out.print(Rule())
        out.print(f"Done in {figures['seconds']} s. Everything is in {root}.")
    return figures
