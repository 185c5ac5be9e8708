"""Plan reports: terminal summary and detail, JSON, self-contained HTML; redaction everywhere."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import pytest
from rich.console import Console

from sync.core.plan import Plan
from sync.core.planner import EntityInputs, make_plan
from sync.core.records import Base, Desired, EntityPolicy, FieldPolicy, QuarantineEntry, Remote
from sync.report import render_plan_html, render_plan_json, render_plan_terminal

SECRET = "CPF-999.888"

POLICY = EntityPolicy(
    platform="smartepi",
    entity="employees",
    level=2,
    natural_key=("identification",),
    fields={
        "name": FieldPolicy("name"),
        "identification": FieldPolicy("identification", sensitive=True),
        "email": FieldPolicy("email", direction="both"),
        "notes": FieldPolicy("notes", conflict="report"),
        "salary": FieldPolicy("salary"),
    },
)


def _plan() -> Plan:
    base_fields = {
        "name": "Ana",
        "identification": "111",
        "email": "a@x.io",
        "notes": "n",
        "salary": Decimal(10),
    }
    desired = [
        # ERP changed the name and the sensitive identification
        Desired(
            "smartepi", "employees", "E1", {**base_fields, "name": "Ana Maria", "identification": SECRET}
        ),
        # remote drifted on a push-only field, and both changed notes (reported conflict)
        Desired("smartepi", "employees", "E2", {**base_fields, "notes": "erp note"}),
        Desired(
            "smartepi", "employees", "E3", {**base_fields, "identification": "333", "name": "<b>Bold</b>"}
        ),
    ]
    bases = {"E1": Base("E1", "r1", dict(base_fields)), "E2": Base("E2", "r2", dict(base_fields))}
    remotes = {
        "r1": Remote("smartepi", "employees", "r1", dict(base_fields)),
        "r2": Remote(
            "smartepi", "employees", "r2", {**base_fields, "salary": Decimal(99), "notes": "remote note"}
        ),
    }
    q = QuarantineEntry("smartepi", "employees", "E9", "email", "format", "not an e-mail address", value="x@")
    inputs = {("smartepi", "employees"): EntityInputs(desired, bases, remotes, quarantine=[q])}
    return make_plan("acme", [POLICY], inputs, mode="full", now=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))


def _console() -> Console:
    return Console(record=True, width=200, color_system=None)


def test_terminal_summary_counts_and_estimate() -> None:
    console = _console()
    plan = _plan()
    render_plan_terminal(plan, console)
    out = console.export_text()
    assert "tenant acme" in out and plan.hash[:12] in out
    row = next(line for line in out.splitlines() if "employees" in line and "smartepi" in line)
    # update E1, conflict E2, create E3 → counts 1/1/1 and total 3
    assert re.search(r"1\s.*1\s.*1\s.*3", row), row
    assert "Request estimate" in out
    assert re.search(r"smartepi\s*│\s*4", out), out  # 1 list page + 1 create + 2 updates
    assert "Rows held back (1), by rule" in out and "not an e-mail address" in out
    assert "Ana Maria" not in out  # no detail unless asked


def test_terminal_detail_shows_diffs_and_redacts() -> None:
    console = _console()
    render_plan_terminal(_plan(), console, detail=True)
    out = console.export_text()
    assert "name: Ana → Ana Maria" in out
    assert "salary: 99 → 10" in out and "[drift]" in out
    assert "notes: erp note ≠ remote note  [conflict, report]" in out
    assert "identification: *** → ***" in out
    assert SECRET not in out
    assert "<b>Bold</b>" in out  # data is shown as text, never as markup


def test_empty_plan_says_nothing_to_do() -> None:
    inputs = {("smartepi", "employees"): EntityInputs([], {}, {})}
    plan = make_plan("acme", [POLICY], inputs, mode="full")
    console = _console()
    render_plan_terminal(plan, console, detail=True)
    assert "Nothing to do" in console.export_text()
    assert "Nothing to do" in render_plan_html(plan)


def test_html_is_self_contained_with_diffs_highlighted_and_redacted() -> None:
    html = render_plan_html(_plan())
    assert html.startswith("<!doctype html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html and "https://" not in html
    assert "<style>" in html and "<script>" in html
    assert SECRET not in html
    assert "Ana Maria" in html and "Ana → Ana Maria" in html
    assert 'class="drift"' in html and 'class="conflict"' in html
    assert "not an e-mail address" in html
    assert "&lt;b&gt;Bold&lt;/b&gt;" in html and "<b>Bold</b>" not in html  # escaped
    assert 'data-kind="create"' in html and 'data-kind="conflict"' in html


def test_json_report_is_the_plan_with_secrets_masked() -> None:
    plan = _plan()
    data = json.loads(render_plan_json(plan))
    assert SECRET not in json.dumps(data)
    assert data["plan_hash"] == plan.hash
    update = next(a for a in data["actions"] if a["erp_key"] == "E1")
    assert update["payload"]["identification"] == "***"
    assert update["payload"]["name"] == "Ana Maria"
    assert "{'$masked'" not in json.dumps(data) and '"$masked"' not in json.dumps(data)


def test_saved_plan_leaves_sensitive_values_out_and_apply_fills_them_in() -> None:
    plan = _plan()
    saved = plan.to_json(indent=2)
    assert SECRET not in saved and "111" not in saved  # new, base and remote sides
    loaded = Plan.from_json(saved)
    assert loaded.hash == plan.hash and loaded.has_masked()
    fresh = _plan()  # what apply recomputes from the same inputs
    ready = loaded.unmasked(fresh)
    e1 = next(a for a in ready.actions if a.erp_key == "E1")
    assert e1.payload["identification"] == SECRET and e1.payload["name"] == "Ana Maria"
    assert e1.agreed == next(a for a in fresh.actions if a.erp_key == "E1").agreed
    assert [(a.payload, a.agreed, a.natural_key) for a in ready.actions] == [
        (a.payload, a.agreed, a.natural_key) for a in fresh.actions
    ]
    assert not ready.has_masked()


def test_a_masked_value_the_fresh_plan_lacks_makes_the_saved_plan_stale() -> None:
    from sync.errors import StalePlan

    loaded = Plan.from_json(_plan().to_json())
    fresh = _plan()
    fresh.actions = [a for a in fresh.actions if a.erp_key != "E1"]
    with pytest.raises(StalePlan, match="make a new plan"):
        loaded.unmasked(fresh)


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_html_renders_every_action_kind(mode: str) -> None:
    policy = EntityPolicy(
        "smartkasa", "products", 1, ("number",), {"number": FieldPolicy("number")}, delete="delete"
    )
    rows = [Desired("smartkasa", "products", f"K{i}", {"number": str(i)}) for i in range(1, 6)]
    bases = {f"K{i}": Base(f"K{i}", f"u{i}", {"number": str(i)}) for i in range(6)}
    remotes = {f"u{i}": Remote("smartkasa", "products", f"u{i}", {"number": str(i)}) for i in range(6)}
    inputs = {("smartkasa", "products"): EntityInputs(rows, bases, remotes if mode == "full" else None)}
    plan = make_plan("acme", [policy], inputs, mode=mode, force=True)  # type: ignore[arg-type]
    assert [a.kind for a in plan.actions] == ["delete"]
    assert 'data-kind="delete"' in render_plan_html(plan)
