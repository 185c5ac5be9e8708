"""A brand-new state store facing platforms that already hold records says so before adopting.

A state store with no binding for a tenant, whose plan adopts records the platforms already
hold, is either a first sync against accounts someone filled by hand, or a lost or wrong
``state_url`` (a relative SQLite path read from another folder, a new database). Both are
safe (adoption binds the existing record by natural key, it never creates a second one), but
the user should hear it before it happens: one warning line with the counts.
"""

from __future__ import annotations

import logging
from collections import Counter

from sync.core.plan import Plan
from sync.state.store import StateStore

log = logging.getLogger("erpsync.engine")


def first_adoption_warning(store: StateStore, tenant: str, plan: Plan) -> str | None:
    """The warning for ``plan`` when the store knows nothing of ``tenant`` yet (else None)."""
    adopts = Counter(f"{a.platform} {a.entity}" for a in plan.actions if a.kind == "adopt")
    if not adopts or any(store.count_bindings(tenant).values()):
        return None
    total = sum(adopts.values())
    detail = ", ".join(f"{n} {what}" for what, n in sorted(adopts.items()))
    return (
        f"the state store has no record of tenant {tenant!r} yet, but the platforms already hold "
        f"{total} record(s) matching ERP rows ({detail}): they will be adopted (bound by natural "
        "key), not duplicated. If this tenant was synced before, check that state_url points at "
        "its state store"
    )


def warn_first_adoption(store: StateStore, tenant: str, plan: Plan) -> None:
    message = first_adoption_warning(store, tenant, plan)
    if message:
        log.warning("%s", message)
