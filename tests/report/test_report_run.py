"""Run summaries and `erpsync why` rendering."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console

from sync.redact import register_secret
from sync.report import explain_record, render_run_html, render_run_terminal

TOKEN = "tok-ABCDEF123456"


def _run() -> dict[str, Any]:
    register_secret(TOKEN)
    start = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
    return {
        "run_id": 42,
        "tenant": "acme",
        "kind": "apply",
        "mode": "full",
        "status": "partial",
        "started_at": start,
        "finished_at": start + dt.timedelta(seconds=12.5),
        "duration": 12.5,
        "counts": {
            "smartepi/employees/create/ok": 10,
            "smartepi/employees/update/failed": 1,
            "smartkasa/products/create/quarantined": 2,
        },
        "requests": {"smartepi": 14, "smartkasa": 3},
        "error": None,
        "items": [
            {
                "platform": "smartepi",
                "entity": "employees",
                "erp_key": "E7",
                "action": "update",
                "outcome": "failed",
                "remote_id": "r7",
                "request_id": "req-1",
                "detail": f"422 [name] blank (sent with {TOKEN})",
            }
        ],
    }


def test_run_terminal_shows_status_counts_requests_and_errors() -> None:
    console = Console(record=True, width=200, color_system=None)
    render_run_terminal(_run(), console)
    out = console.export_text()
    assert "Run 42" in out and "partial" in out and "12.5 s" in out
    assert "2 rejected" in out and "smartkasa" in out
    assert "422 [name] blank" in out and "req-1" in out
    assert TOKEN not in out
    assert "14" in out and "3" in out


def test_run_counts_accept_tuple_keys() -> None:
    run = _run()
    run["counts"] = {("smartepi", "sectors", "adopt", "ok"): 3}
    console = Console(record=True, width=200, color_system=None)
    render_run_terminal(run, console)
    assert "adopt" in console.export_text()


def test_run_html_is_self_contained_and_scrubbed() -> None:
    html = render_run_html(_run())
    assert "http://" not in html and "https://" not in html
    assert TOKEN not in html
    assert "422 [name] blank" in html and "req-1" in html
    assert ">rejected<" in html and ">partial<" in html


def test_missing_run_is_reported() -> None:
    console = Console(record=True, width=120, color_system=None)
    render_run_terminal({}, console)
    assert "No such run" in console.export_text()


def test_explain_shows_sides_differences_and_history() -> None:
    info = {
        "tenant": "acme",
        "platform": "smartepi",
        "entity": "employees",
        "erp_key": "E1",
        "binding": {"remote_id": "r1", "version": "etag-3"},
        "base": {"name": "Ana", "identification": "***"},
        "remote": {"name": "Ana [ops]", "identification": "***"},
        "remote_error": None,
        "last_action": {"run_id": 7, "action": "update", "outcome": "ok", "detail": "", "request_id": "q9"},
        "quarantine": [
            {"stage": "apply", "rule": "422", "field": "email", "message": "invalid", "value": None}
        ],
        "open_intents": [{"id": 3, "state": "unknown", "attempts": 2, "error": "timeout"}],
    }
    console = Console(record=True, width=160, color_system=None)
    explain_record(info, console)
    out = console.export_text()
    assert "bound to remote r1, version etag-3" in out
    assert "Ana [ops]" in out  # brackets in data are text, not markup
    assert "last action: update → ok (run 7) request q9" in out
    assert "quarantined (apply) field 'email': 422: invalid" in out
    assert "open intent 3 unknown after 2 attempt(s): timeout" in out


def test_explain_unbound_record() -> None:
    console = Console(record=True, width=160, color_system=None)
    explain_record(
        {"tenant": "acme", "platform": "smartkasa", "entity": "products", "erp_key": "K1", "binding": None},
        console,
    )
    out = console.export_text()
    assert "not bound" in out and "last action: ∅" in out
