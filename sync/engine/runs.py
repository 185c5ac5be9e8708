"""A run as plain data (terminal, JSON and HTML reports, the demo)."""

from __future__ import annotations

from typing import Any


def run_dict(engine: Any, run_id: int) -> dict[str, Any]:
    """A run as plain data for the reports."""
    run, items = engine.store.run(run_id)
    if run is None:
        return {}
    return {
        "run_id": run.id,
        "tenant": run.tenant,
        "kind": run.kind,
        "mode": run.mode,
        "status": run.status,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration": (run.finished_at - run.started_at).total_seconds() if run.finished_at else None,
        "counts": run.counts,
        "requests": run.requests,
        "error": run.error,
        "items": [
            {
                "platform": i.platform,
                "entity": i.entity,
                "erp_key": i.erp_key,
                "action": i.action,
                "outcome": i.outcome,
                "remote_id": i.remote_id,
                "request_id": i.request_id,
                "detail": i.detail,
            }
            for i in items
            if i.outcome != "ok" or i.detail
        ],
    }
