"""The alert conditions of one tenant, as a pure function of plain data.

``evaluate(facts, thresholds)`` returns the conditions firing now; ``transitions`` compares
them with what already fired (the state store's ``alert_states``) and says which messages
are due. No I/O here: ``sync.alerts.service`` gathers the facts and sends the messages.

Conditions (each a stable key, so a condition sends one message until it clears):

- ``failed_run:<kind>``: the latest finished run of that kind ended ``failed``; clears
  when a later run of the kind does not fail;
- ``rejected_rows``: more rows held in quarantine (every stage) than the threshold;
- ``stale_reconcile``: no reconcile ended ``ok`` or ``partial`` for ``stale_intervals``
  reconcile intervals (counted from when alerts first watched the tenant if none ever did);
- ``webhook_failures``: that many webhook signature checks failed in a row (a verified
  webhook clears it);
- ``inbox_backlog``: an inbox event waits unprocessed longer than ``backlog_minutes``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sync.alerts.settings import AlertThresholds

RUN_KIND_NAMES = {
    "reconcile": "Reconcile",
    "sync_keys": "Change-event sync",
    "apply": "Apply",
    "pull": "Pull",
    "inbound": "Inbound apply",
    "plan": "Plan",
    "resolve_intents": "Intent resolution",
}


@dataclass(frozen=True, slots=True)
class RunFacts:
    run_id: int
    kind: str
    status: str
    error: str | None = None
    finished_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class TenantFacts:
    tenant: str
    now: dt.datetime
    watch_since: dt.datetime  # when alerts first looked at this tenant
    reconcile_interval_seconds: int
    last_runs: Mapping[str, RunFacts] = field(default_factory=dict)  # latest finished run per kind
    last_reconcile_ok: dt.datetime | None = None  # end of the latest ok/partial reconcile
    quarantined: int = 0
    webhook_failures: int = 0
    oldest_pending: dt.datetime | None = None  # oldest inbox event not applied yet


@dataclass(frozen=True, slots=True)
class Firing:
    key: str
    title: str
    detail: str  # what happened and what to do next
    run_id: int | None = None


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def evaluate(facts: TenantFacts, thresholds: AlertThresholds) -> list[Firing]:
    """The conditions firing now, in a stable order."""
    out: list[Firing] = []
    t = facts.tenant
    if thresholds.failed_run:
        for kind in sorted(facts.last_runs):
            run = facts.last_runs[kind]
            if run.status != "failed":
                continue
            name = RUN_KIND_NAMES.get(kind, kind)
            out.append(
                Firing(
                    f"failed_run:{kind}",
                    f"{name} run {run.run_id} failed",
                    f"{(run.error or 'no reason recorded').strip()[:500]}. "
                    f"See `erpsync runs show {run.run_id}` or its report; the alert clears when a "
                    f"later {kind} run of {t} does not fail.",
                    run.run_id,
                )
            )
    if facts.quarantined > thresholds.rejected_rows:
        out.append(
            Firing(
                "rejected_rows",
                f"{facts.quarantined} rows rejected (held in quarantine)",
                f"more than the threshold of {thresholds.rejected_rows}. Run `erpsync status --tenant {t}` "
                "to see each row's rule and reason, fix them in the ERP (the next run releases them), "
                "or raise alerts.thresholds.rejected_rows.",
            )
        )
    limit = thresholds.stale_intervals * facts.reconcile_interval_seconds
    reference = facts.last_reconcile_ok or facts.watch_since
    age = (facts.now - reference).total_seconds()
    if age > limit:
        since = (
            f"the last one ended {_ago(age)} ago"
            if facts.last_reconcile_ok
            else f"none since alerts started watching {_ago(age)} ago"
        )
        out.append(
            Firing(
                "stale_reconcile",
                f"no successful reconcile for {_ago(age)}",
                f"{since} (limit: {thresholds.stale_intervals} intervals of "
                f"{facts.reconcile_interval_seconds} s). Check that `erpsync beat` and a worker "
                "consuming the reconcile queue run, and the latest reconcile's error.",
            )
        )
    if facts.webhook_failures >= thresholds.webhook_failures:
        out.append(
            Firing(
                "webhook_failures",
                f"{facts.webhook_failures} webhook signature checks failed in a row",
                "SmartEPI webhooks are being rejected (wrong signature or clock). Check that "
                "smartepi.webhook_secrets matches the secret in SmartEPI and the server clock; "
                "the alert clears at the next verified webhook.",
            )
        )
    if facts.oldest_pending is not None:
        waited = (facts.now - facts.oldest_pending).total_seconds()
        if waited > thresholds.backlog_minutes * 60:
            out.append(
                Firing(
                    "inbox_backlog",
                    f"inbox backlog: an event has waited {_ago(waited)}",
                    f"longer than {thresholds.backlog_minutes} min. Check that a worker consumes the "
                    f"inbound queue and the ERP sink accepts writes (`erpsync status --tenant {t}` "
                    "shows the inbox).",
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class Known:
    """A condition with a row in the state store."""

    alert_id: int
    key: str
    state: str  # firing | resolved (its resolved message not delivered yet)
    announced: bool  # its firing message was delivered


@dataclass
class Transitions:
    open: list[Firing] = field(default_factory=list)  # new: insert, then announce
    resolve: list[int] = field(default_factory=list)  # firing → resolved
    refire: list[int] = field(default_factory=list)  # resolved (not yet announced) → firing again


def transitions(firing: Iterable[Firing], known: Iterable[Known]) -> Transitions:
    now = {f.key: f for f in firing}
    rows = {k.key: k for k in known}
    out = Transitions()
    for key, f in now.items():
        row = rows.get(key)
        if row is None:
            out.open.append(f)
        elif row.state == "resolved":
            out.refire.append(row.alert_id)
    for key, row in rows.items():
        if key not in now and row.state == "firing":
            out.resolve.append(row.alert_id)
    return out
