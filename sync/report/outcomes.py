"""What happened to each row: one classification for the terminal, ``--json``, the run record
and the HTML report.

A row of a plan or a run ends in exactly one of these classes:

========== ============================================================= =====================
class      meaning                                                       what happens next
========== ============================================================= =====================
written    created, updated, adopted, pulled, deactivated or deleted     nothing to do
skipped    nothing to write (the plan said so)                           nothing to do
conflict   both sides changed a field; reported per the field's policy   see the plan's detail
quarantined the ERP row is invalid (found when planning, nothing sent)    fix the ERP row
rejected   the platform refused the row (HTTP 422) or a record it        retried by itself when
           references                                                    its ERP row or the
                                                                         mapping changes;
                                                                         ``erpsync retry-failed``
                                                                         retries now
deferred   a transient failure (timeout, 5xx, rate limit, a reference    the next run retries
           not created yet)
failed     the platform answered an error that is not the row's fault    the next run retries;
                                                                         the detail says why
held       a create may have landed and no lookup can find it            ``erpsync resolve``
========== ============================================================= =====================

A run is ``ok`` when no row is quarantined, rejected, deferred, failed or held in it,
``partial`` otherwise (``failed`` when the run itself stopped). Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# In the order reports show them.
CLASSES = ("written", "skipped", "conflict", "quarantined", "rejected", "deferred", "failed", "held")
ATTENTION = ("quarantined", "rejected", "deferred", "failed", "held")

# The raw outcome a run records per row (``run_items.outcome``, the run's counts) -> class.
_RUN_OUTCOME = {
    "ok": "written",
    "skipped": "skipped",
    "conflict": "conflict",
    "quarantined": "rejected",  # quarantined while applying: the platform refused it
    "rejected": "rejected",
    "deferred": "deferred",
    "failed": "failed",
    "held": "held",
}

MEANING = {
    "written": "written to the platform",
    "skipped": "nothing to write",
    "conflict": "both sides changed a field; reported",
    "quarantined": "invalid ERP row, not sent",
    "rejected": "rejected by the platform",
    "deferred": "not written yet (transient)",
    "failed": "the platform answered an error",
    "held": "held for a person",
}

NEXT_STEP = {
    "quarantined": "fix the ERP rows (the rule and column are shown); they leave quarantine by themselves",
    "rejected": (
        "retried by themselves when their ERP row or the mapping changes; "
        "`erpsync retry-failed` retries them now"
    ),
    "deferred": "the next run (or `erpsync apply`) retries them",
    "failed": "the next run retries them; the detail says what the platform answered",
    "held": "`erpsync why ENTITY KEY` shows the record; settle it with `erpsync resolve`",
}


def classify(outcome: str, stage: str | None = None) -> str:
    """The class of one row: a run outcome (``ok``, ``quarantined``, ...) or, with ``stage``,
    a quarantine entry (``validate``: quarantined at plan; ``apply``: rejected earlier)."""
    if stage is not None:
        return "rejected" if stage == "apply" else "quarantined"
    return _RUN_OUTCOME.get(outcome, "failed")


@dataclass(frozen=True)
class Outcomes:
    """Rows per class (all classes present, zero included)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))

    @property
    def attention(self) -> int:
        """Rows a person should know about (quarantined, rejected, deferred, failed, held)."""
        return sum(self.counts[c] for c in ATTENTION)

    @property
    def status(self) -> str:
        return "ok" if self.attention == 0 else "partial"

    def to_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def nonzero(self, classes: Iterable[str] = CLASSES) -> list[tuple[str, int]]:
        return [(c, self.counts[c]) for c in classes if self.counts.get(c)]

    def line(self) -> str:
        """``3 written, 1 rejected`` (``nothing`` when empty)."""
        return ", ".join(f"{n} {c}" for c, n in self.nonzero()) or "nothing"

    def next_steps(self) -> list[str]:
        """One sentence per class that needs attention: how many and what to do."""
        return [f"{n} {c}: {NEXT_STEP[c]}" for c, n in self.nonzero(ATTENTION)]


def _tally(pairs: Iterable[tuple[str, int]]) -> Outcomes:
    counts = dict.fromkeys(CLASSES, 0)
    for cls, n in pairs:
        counts[cls] += int(n)
    return Outcomes(counts)


def run_outcomes(counts: Mapping[str, int] | Iterable[Mapping[str, Any]]) -> Outcomes:
    """Classes of a run's counts: ``{"platform/entity/action/outcome": n}`` (the run record and
    ``apply --json``) or a list of ``{"outcome": ..., "count": n}``."""
    if isinstance(counts, Mapping):
        return _tally((classify(str(k).rsplit("/", 1)[-1]), n) for k, n in counts.items())
    return _tally((classify(str(r.get("outcome", ""))), int(r.get("count", 0))) for r in counts)


def outcome_counts(counts: Mapping[tuple[str, str, str, str], int]) -> Outcomes:
    """Classes of an executor's counts keyed ``(platform, entity, action, outcome)``."""
    return _tally((classify(k[3]), n) for k, n in counts.items())


def run_status(counts: Mapping[tuple[str, str, str, str], int]) -> str:
    """``ok`` or ``partial`` for a run that finished (the run record's status)."""
    return outcome_counts(counts).status


def plan_outcomes(quarantine: Iterable[Any]) -> Outcomes:
    """Classes of a plan's held rows (``QuarantineEntry``: ``validate`` -> quarantined at plan,
    ``apply`` -> rejected by the platform earlier and waiting). Counted once per record."""
    seen: dict[tuple[str, str, str], str] = {}
    for q in quarantine:
        key = (q.platform, q.entity, q.erp_key)
        cls = classify("", getattr(q, "stage", "validate") or "validate")
        if seen.get(key) != "rejected":  # a record both rejected and invalid counts as rejected
            seen[key] = cls
    return _tally(Counter(seen.values()).items())


# Exit codes of the commands (docs/exit-codes.md shows the same table).
EXIT_CODES = (
    (0, "success: `plan` has nothing to write; `apply` wrote every row (status ok)"),
    (1, "error: bad configuration or input, an unreachable platform, a run that stopped"),
    (
        2,
        "`plan`: there are changes to apply; any command: a usage error "
        "(an unknown option, a bad option value)",
    ),
    (
        3,
        "`apply`, `retry-failed`: the run finished, but rows were quarantined, rejected, deferred, "
        "failed or held (status partial); the report lists them with what to do",
    ),
)
