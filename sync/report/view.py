"""Plain view models shared by the terminal and HTML reports: formatted, redacted strings.

Reports never show a sensitive value: fields marked ``sensitive`` in the mapping (carried
by ``Plan.sensitive``) and secret-looking names are masked; free text is scrubbed of
registered secrets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sync.core.normalize import canonical_json
from sync.core.plan import ACTION_KINDS, Action, Plan
from sync.redact import MASK, is_secret_key, scrub

EMPTY = "∅"


def fmt(value: Any) -> str:
    """Compact human form of a normalized value."""
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return scrub(value)
    return scrub(canonical_json(value))


def shown(field: str, value: Any, sensitive: frozenset[str]) -> str:
    if value is not None and (field in sensitive or is_secret_key(field)):
        return MASK
    return fmt(value)


@dataclass(frozen=True, slots=True)
class ChangeRow:
    field: str
    kind: str
    resolution: str
    base: str
    erp: str
    remote: str
    old: str
    new: str

    @property
    def arrow(self) -> str:
        return "≠" if self.resolution == "report" else "→"


@dataclass(frozen=True, slots=True)
class ActionRow:
    kind: str
    platform: str
    entity: str
    erp_key: str
    remote_id: str
    reason: str
    changes: list[ChangeRow]
    flags: frozenset[str]  # "drift", "conflict": for highlighting and filtering
    local_only: bool


def action_row(plan: Plan, a: Action) -> ActionRow:
    secret = plan.sensitive_fields(a.platform, a.entity)
    rows: list[ChangeRow] = []
    for c in a.changes:
        # "old" is what the side being written held before: the platform, or the ERP for a pull.
        # (a fast plan never read the platform: its last known value is the base).
        # A reported conflict writes nothing: old/new then show ERP ≠ platform.
        old_value = c.erp if c.to_erp else (c.base if plan.mode == "fast" else c.remote)
        if c.resolution == "report":
            old_value = c.erp
        rows.append(
            ChangeRow(
                field=c.field,
                kind=c.kind,
                resolution=c.resolution or "",
                base=shown(c.field, c.base, secret),
                erp=shown(c.field, c.erp, secret),
                remote=shown(c.field, c.remote, secret),
                old=shown(c.field, old_value, secret),
                new=shown(c.field, c.new, secret),
            )
        )
    if a.kind == "create" and not a.changes:
        rows = [
            ChangeRow(k, "push", "", EMPTY, shown(k, v, secret), EMPTY, EMPTY, shown(k, v, secret))
            for k, v in a.payload.items()
        ] + [
            ChangeRow(k, "push", "", EMPTY, fmt(v), EMPTY, EMPTY, fmt(v)) for k, v in a.children.items() if v
        ]
    flags = frozenset(c.kind for c in a.changes if c.kind in ("drift", "conflict"))
    return ActionRow(
        kind=a.kind,
        platform=a.platform,
        entity=a.entity,
        erp_key=scrub(a.erp_key),
        remote_id=a.remote_id or "",
        reason=scrub(a.reason),
        changes=rows,
        flags=flags,
        local_only=a.local_only,
    )


@dataclass(frozen=True, slots=True)
class SummaryRow:
    platform: str
    entity: str
    counts: dict[str, int]
    total: int


def summary(plan: Plan) -> tuple[list[str], list[SummaryRow]]:
    """Action kinds present (in canonical order) and one row per (platform, entity)."""
    present = [k for k in ACTION_KINDS if any(kind == k for (_, _, kind) in plan.counts)]
    by_entity: dict[tuple[str, str], dict[str, int]] = {}
    for (platform, entity, kind), n in plan.counts.items():
        by_entity.setdefault((platform, entity), {})[kind] = n
    rows = [SummaryRow(p, e, counts, sum(counts.values())) for (p, e), counts in sorted(by_entity.items())]
    return present, rows


def run_counts(counts: Any) -> list[tuple[str, str, str, str, int]]:
    """Accept ``{"p/e/action/outcome": n}``, ``{(p, e, action, outcome): n}`` or a list of dicts."""
    out: list[tuple[str, str, str, str, int]] = []
    if isinstance(counts, Mapping):
        for key, n in counts.items():
            parts = key.split("/") if isinstance(key, str) else list(key)
            parts = [*parts, "", "", "", ""][:4]
            out.append((parts[0], parts[1], parts[2], parts[3], int(n)))
    elif isinstance(counts, Iterable):
        for row in counts:
            out.append(
                (
                    row.get("platform", ""),
                    row.get("entity", ""),
                    row.get("action", ""),
                    row.get("outcome", ""),
                    int(row.get("count", 0)),
                )
            )
    return sorted(out)


def when(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def duration(seconds: Any) -> str:
    if seconds is None:
        return EMPTY
    s = float(seconds)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"
