"""Renderings of plans, runs and ``erpsync why``: terminal (Rich), JSON and HTML."""

from sync.report.html import render_plan_html, render_run_html
from sync.report.jsonreport import plan_report_dict, render_plan_json
from sync.report.terminal import render_explain, render_plan_terminal, render_run_terminal

explain_record = render_explain  # the name the issue uses for `erpsync why` rendering

__all__ = [
    "explain_record",
    "plan_report_dict",
    "render_explain",
    "render_plan_html",
    "render_plan_json",
    "render_plan_terminal",
    "render_run_html",
    "render_run_terminal",
]
