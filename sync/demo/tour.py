"""``erpsync demo``: the whole loop on a generated ERP against both local sandboxes.

Nothing to install or start by hand: the sandboxes run in-process on free ports, the ERP
is a seeded SQLite file and the state store is SQLite, all in one temporary folder. The
tour plans, applies, then changes a few ERP rows and edits one record in a sandbox
"console" as a person would, plans again (showing exactly those changes and the drift),
applies, brings platform transactions and sales back into the ERP, and writes an HTML
report.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from sync.core.plan import Plan
from sync.engine.api import Engine
from sync.playground import Playground, start_playground


def erp_edits(erp_path: Path) -> list[str]:
    """A few changes an ERP user would make; returns what was done, for the narration."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    done = []
    with sqlite3.connect(erp_path) as conn:
        code, name = conn.execute("SELECT codigo, nome FROM cargos ORDER BY codigo LIMIT 1").fetchone()
        conn.execute(
            "UPDATE cargos SET nome = ?, updated_at = ? WHERE codigo = ?", (name + " Sênior", now, code)
        )
        done.append(f"job role {code}: renamed to {name + ' Sênior'!r}")
        for sku, price in conn.execute(
            "SELECT sku, price FROM kasa_products ORDER BY sku LIMIT 2"
        ).fetchall():
            new = f"{float(price) * 1.1:.2f}"
            conn.execute("UPDATE kasa_products SET price = ?, updated_at = ? WHERE sku = ?", (new, now, sku))
            done.append(f"product {sku}: price {price} → {new}")
        row = conn.execute(
            "SELECT setor, centro_custo, cargo, grupo FROM funcionarios ORDER BY matricula LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO funcionarios (matricula, nome, cpf, email, setor, centro_custo, centro_custo_2,"
            " cargo, grupo, data_admissao, situacao, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            ("DEMO-9001", "Joana Demonstração", None, None, *row[:2], None, *row[2:], "01/10/2026", "A", now),
        )
        done.append("employee DEMO-9001: hired (no CPF, no e-mail: gets a derived identification)")
    return done


def console_edit(pg: Playground, engine: Engine) -> str:
    """Someone edits an employee's job role in the SmartEPI web console (mapped `both`)."""
    store = engine.store
    employees = store.bindings(pg.tenant, "smartepi", "employees")
    roles = store.bindings(pg.tenant, "smartepi", "job_roles")
    erp_key, remote_id = sorted(employees.items())[1]
    base = store.binding(pg.tenant, "smartepi", "employees", erp_key)
    current = base.fields.get("jobRoleId") if base else None
    role_key, role_id = next((k, r) for k, r in sorted(roles.items()) if k != current)
    pg.epi_admin("PUT", f"/tenants/{pg.tenant}/records/employees/{remote_id}", json={"jobRoleId": role_id})
    return f"employee {erp_key}: job role changed to {role_key} in the SmartEPI console"


def platform_activity(pg: Playground) -> str:
    """PPE withdrawals at the machines and a day of sales at the tills."""
    pg.epi_admin(
        "POST", f"/tenants/{pg.tenant}/generate", json={"kind": "withdrawals", "count": 25, "seed": 7}
    )
    pg.epi_admin("POST", f"/tenants/{pg.tenant}/generate", json={"kind": "returns", "count": 5, "seed": 8})
    pg.kasa_admin("POST", "/generate/day", json={"seed": 9, "receipts": 20})
    return "25 withdrawals and 5 returns at the PPE machines; a day of sales at the tills"


# What a demo run writes into its folder; a second run in the same folder starts from scratch
# (a state store left by an earlier run binds records of sandboxes that no longer exist).
DEMO_FILES = ("erp.db", "erp-inbound.db", "state.db", "config.yaml", "reports/plan.html", "reports/run.html")


def reset_folder(root: Path) -> list[str]:
    """Remove the files an earlier demo left in ``root`` (only those); returns their names."""
    from sync.state.db import dispose_engines

    removed = []
    for name in DEMO_FILES:
        path = root / name
        for extra in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")):
            if extra.is_file():
                extra.unlink()
                if extra == path:
                    removed.append(name)
    if removed:
        dispose_engines()  # pooled SQLite connections would keep reading the removed state file
    return removed


def run_tour(
    folder: Path | None = None, *, console: Console | None = None, employees: int = 120
) -> dict[str, Any]:
    """Run the demo; returns the figures it printed (tests read them)."""
    from sync.engine.runs import run_dict
    from sync.report import render_plan_html, render_plan_terminal, render_run_html, render_run_terminal
    from sync.report.progress import progress_bars

    out = console or Console()
    root = folder or Path(tempfile.mkdtemp(prefix="erpsync-demo-"))
    started = time.monotonic()
    figures: dict[str, Any] = {"folder": str(root)}
    out.print(Rule("[bold]erpsync demo"))
    out.print(f"Working folder: {root}  (ERP: SQLite, state store: SQLite, platforms: local sandboxes)")
    replaced = reset_folder(root)
    if replaced:
        out.print(f"(files of an earlier demo replaced: {', '.join(replaced)})")
    with start_playground(root, employees=employees) as pg:
        out.print(f"SmartEPI sandbox at {pg.epi_url}, SmartKasa sandbox at {pg.kasa_url}\n")
        engine = Engine(pg.settings())
        reports = root / "reports"
        reports.mkdir(exist_ok=True)

        out.print(Rule("1. Plan: what the first sync would do (dry run)"))
        plan = engine.plan()
        render_plan_terminal(plan, out)
        figures["first_plan"] = _counts(plan)

        out.print(Rule("2. Apply"))
        with progress_bars(True, out) as (on_plan, advance):
            first = engine.apply(progress=advance, on_plan=on_plan)
        render_run_terminal(run_dict(engine, first.run_id), out)
        figures["first_apply"] = first.to_dict()

        out.print(Rule("3. Changes on both sides"))
        for line in [*erp_edits(pg.erp_path), console_edit(pg, engine)]:
            out.print(f"  • {line}")

        out.print(Rule("4. Plan again: exactly those changes, and the console edit coming back"))
        second_plan = engine.plan()
        render_plan_terminal(second_plan, out, detail=True)
        plan_html = reports / "plan.html"
        plan_html.write_text(render_plan_html(second_plan), encoding="utf-8")
        figures["second_plan"] = _counts(second_plan)

        out.print(Rule("5. Apply the changes"))
        with progress_bars(True, out) as (on_plan, advance):
            second = engine.apply(progress=advance, on_plan=on_plan)
        run = run_dict(engine, second.run_id)
        render_run_terminal(run, out)
        run_html = reports / "run.html"
        run_html.write_text(render_run_html(run), encoding="utf-8")
        figures["second_apply"] = second.to_dict()
        figures["converged"] = engine.plan().is_empty()
        out.print(f"A third plan is {'empty: both sides agree' if figures['converged'] else 'NOT empty'}.")

        out.print(Rule("6. Data back into the ERP"))
        out.print(f"  • {platform_activity(pg)}")
        figures["inbound"] = pull_into_sink(engine, pg.tenant, out)

        figures["seconds"] = round(time.monotonic() - started, 1)
        out.print(Rule())
        out.print(f"Plan report: [bold]{plan_html}[/]\nRun report:  [bold]{run_html}[/]")
        out.print(f"Done in {figures['seconds']} s. Everything is in {root}.")
    return figures


def pull_into_sink(engine: Engine, tenant_id: str, out: Console) -> dict[str, Any]:
    """Pull the tenant's platform records into its ERP sink (the runtime's clients, shared by
    the sink), print one line per stream, and return the figures (both demos use it)."""
    from sync.engine.pull import pull
    from sync.sinks import open_sink

    tenant = engine.settings.tenants[tenant_id]
    clients = engine.runtime(tenant_id).new_client
    sink = open_sink(tenant, tenant_id=tenant_id, store=engine.store, clients=clients)
    try:
        summary = pull(engine.store, tenant_id, tenant, sink, clients=clients)
    finally:
        sink.close()
    data: dict[str, Any] = {"fetched": summary.fetched, "written": summary.written, "streams": {}}
    for result in summary.streams:
        data["streams"][result.stream] = result.written
        out.print(
            f"  • {result.platform} {result.stream}: {result.fetched} fetched, {result.written} written"
        )
    return data


def _counts(plan: Plan) -> dict[str, int]:
    return {"/".join(k): v for k, v in sorted(plan.counts.items())}
