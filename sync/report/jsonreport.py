"""JSON report of a plan: the plan file's structure with sensitive values masked.

The saved plan (``Plan.to_json``) already leaves sensitive values out (``{"$masked": true}``,
filled again at apply); the report also masks secret-looking field names, scrubs registered
secrets from text, shows masked values as ``***`` and adds the plan hash.
"""

from __future__ import annotations

import json
from typing import Any

from sync.core.plan import Plan
from sync.redact import MASK, is_secret_key, redact
from sync.report.outcomes import plan_outcomes


def _mask(fields: Any, secret: frozenset[str]) -> Any:
    if not isinstance(fields, dict):
        return fields
    return {
        k: (MASK if (k in secret or is_secret_key(k)) and v is not None else v) for k, v in fields.items()
    }


def _plain_masks(value: Any) -> Any:
    """The plan file's ``{"$masked": true}`` shown as ``***``."""
    if isinstance(value, dict):
        if value == {"$masked": True}:
            return MASK
        return {k: _plain_masks(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_masks(v) for v in value]
    return value


def plan_report_dict(plan: Plan) -> dict[str, Any]:
    data = plan.to_dict()
    for action in data["actions"]:
        secret = plan.sensitive_fields(action["platform"], action["entity"])
        action["payload"] = _mask(action["payload"], secret)
        action["agreed"] = _mask(action["agreed"], secret)
        for change in action["changes"]:
            if change["field"] in secret or is_secret_key(change["field"]):
                for side in ("base", "erp", "remote", "new"):
                    if change[side] is not None:
                        change[side] = MASK
    redacted: dict[str, Any] = _plain_masks(redact(data))
    redacted["plan_hash"] = plan.hash
    held = plan_outcomes(plan.quarantine)
    redacted["outcomes"] = held.to_dict()  # the rows held back, by class (sync.report.outcomes)
    redacted["next_steps"] = held.next_steps()
    return redacted


def render_plan_json(plan: Plan, indent: int | None = 2) -> str:
    return json.dumps(plan_report_dict(plan), ensure_ascii=False, indent=indent)
