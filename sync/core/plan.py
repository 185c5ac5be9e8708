"""The plan: a typed, ordered list of actions computed by the planner, saved as JSON.

A plan is both the dry-run report and the exact input of ``apply``. Values stay in
ERP-key space (references hold ERP keys); the executor resolves them through the
bindings when it sends. ``fingerprints`` identify the inputs the plan was computed from,
so ``apply`` can refuse a stale plan and say which input moved (``Plan.stale_inputs``).

A saved plan holds no value of a field marked ``sensitive``: the file form writes
``{"$masked": true}`` in its place (payload, agreed values, field changes, natural key).
Apply of a saved plan recomputes the plan anyway to check it is fresh; that fresh plan,
made from the same inputs, supplies the masked values (``Plan.unmasked``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sync.core.codec import MASKED, decode_tagged, encode_tagged, is_masked
from sync.core.normalize import content_hash
from sync.core.records import ConflictPolicy, Platform, QuarantineEntry
from sync.errors import PlanError, StalePlan

PLAN_VERSION = 1


ActionKind = Literal["create", "adopt", "update", "pull", "conflict", "deactivate", "delete", "skip"]
ChangeKind = Literal["push", "pull", "drift", "conflict"]
PlanMode = Literal["fast", "full"]

ACTION_KINDS: tuple[str, ...] = get_args(ActionKind)


@dataclass(slots=True)
class FieldChange:
    """One field (or child collection) that differs between ERP, base and remote.

    ``new`` is the value the platform holds after apply; for a pull it is also the value
    written back to the ERP. A ``report`` conflict writes nothing (``new`` = remote value).
    """

    field: str
    base: Any
    erp: Any
    remote: Any
    new: Any
    kind: ChangeKind
    resolution: ConflictPolicy | None = None

    @property
    def to_erp(self) -> bool:
        """True when apply writes ``new`` back into the ERP (sink)."""
        return self.kind == "pull" or (self.kind == "conflict" and self.resolution == "remote_wins")


@dataclass(slots=True)
class Action:
    """What apply does for one record.

    ``payload`` holds the fields to send (all desired push fields for a create, only the
    changed ones for an update); ``children`` the child collections to send whole.
    ``agreed``/``agreed_children`` are the values both sides hold after a successful
    apply: the executor stores them as the new base (echo suppression). A ``local_only``
    action sends nothing: the platform already matches and only the state store changes
    (a ``delete`` then just drops the binding).
    """

    kind: ActionKind
    platform: Platform
    entity: str
    erp_key: str
    remote_id: str | None
    level: int
    changes: list[FieldChange] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reason: str = ""
    natural_key: tuple[str, str] | None = None
    base_version: str | None = None
    agreed: dict[str, Any] = field(default_factory=dict)
    agreed_children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    local_only: bool = False  # the platform already matches: apply only updates the state store

    def sort_key(self) -> tuple[int, int, str, str, str]:
        """Dependency order: referenced entities first; deletes last, dependants first."""
        if self.kind == "delete":
            return (1, -self.level, self.entity, self.platform, self.erp_key)
        return (0, self.level, self.entity, self.platform, self.erp_key)

    def pulled(self) -> dict[str, Any]:
        """Field values apply writes back into the ERP."""
        return {c.field: c.new for c in self.changes if c.to_erp}


@dataclass(slots=True)
class Plan:
    """A complete plan for one tenant (see module docstring)."""

    tenant: str
    mode: PlanMode
    created_at: dt.datetime
    actions: list[Action] = field(default_factory=list)
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    request_estimate: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    # "platform/entity" -> sensitive field names, so reports can redact without the mapping.
    sensitive: dict[str, list[str]] = field(default_factory=dict)
    version: int = PLAN_VERSION

    # --- queries -------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when apply would do nothing (skips only inform)."""
        return all(a.kind == "skip" for a in self.actions)

    def sensitive_fields(self, platform: str, entity: str) -> frozenset[str]:
        return frozenset(self.sensitive.get(f"{platform}/{entity}", ()))

    def stale_inputs(self, current: dict[str, str]) -> list[str]:
        """Fingerprint names whose value differs from ``current`` (or is missing from it)."""
        names = sorted(set(self.fingerprints) | set(current))
        return [n for n in names if self.fingerprints.get(n) != current.get(n)]

    def check_fresh(self, current: dict[str, str]) -> None:
        """Raise ``StalePlan`` naming every input that changed since the plan was made."""
        stale = self.stale_inputs(current)
        if stale:
            raise StalePlan(f"plan {self.hash[:12]} is stale: changed since planning: {', '.join(stale)}")

    @property
    def hash(self) -> str:
        """Content hash of the plan (``created_at`` excluded: same inputs, same hash)."""
        data = self.to_dict()
        del data["created_at"]
        return content_hash(data)

    # --- JSON ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; typed values (Decimal, date, datetime) are tagged to survive."""
        return {
            "version": self.version,
            "tenant": self.tenant,
            "mode": self.mode,
            "created_at": self.created_at.isoformat(),
            "counts": [
                {"platform": p, "entity": e, "kind": k, "count": n}
                for (p, e, k), n in sorted(self.counts.items())
            ],
            "request_estimate": dict(sorted(self.request_estimate.items())),
            "fingerprints": dict(sorted(self.fingerprints.items())),
            "sensitive": {k: sorted(v) for k, v in sorted(self.sensitive.items())},
            "quarantine": [_quarantine_to_dict(q) for q in self.quarantine],
            "actions": [
                _action_to_dict(a, self.sensitive_fields(a.platform, a.entity)) for a in self.actions
            ],
        }

    def has_masked(self) -> bool:
        """True for a plan read from a file whose sensitive values were left out."""
        return any(_masked_fields(a) for a in self.actions)

    def unmasked(self, fresh: Plan) -> Plan:
        """This plan with its masked sensitive values taken from ``fresh``, the plan computed
        from the same inputs (call after ``check_fresh``); raises ``StalePlan`` if one is missing."""
        if not self.has_masked():
            return self
        index = {(a.kind, a.platform, a.entity, a.erp_key): a for a in fresh.actions}
        for action in self.actions:
            if not _masked_fields(action):
                continue
            source = index.get((action.kind, action.platform, action.entity, action.erp_key))
            if source is None or not _fill_masked(action, source):
                raise StalePlan(
                    f"plan {self.hash[:12]} no longer matches the data: {action.kind} of {action.entity} "
                    f"{action.erp_key!r} is not planned now",
                    hint="make a new plan (`erpsync plan --out FILE`)",
                )
        return self

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent, sort_keys=indent is not None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        version = data.get("version")
        if version != PLAN_VERSION:
            raise PlanError(
                f"unsupported plan file version {version!r} (this erpsync reads version {PLAN_VERSION})",
                hint="re-create the plan with this erpsync version (`erpsync plan`)",
            )
        try:
            return cls(
                version=version,
                tenant=data["tenant"],
                mode=data["mode"],
                created_at=dt.datetime.fromisoformat(data["created_at"]),
                counts={(c["platform"], c["entity"], c["kind"]): c["count"] for c in data["counts"]},
                request_estimate=dict(data["request_estimate"]),
                fingerprints=dict(data["fingerprints"]),
                sensitive={k: list(v) for k, v in data.get("sensitive", {}).items()},
                quarantine=[_quarantine_from_dict(q) for q in data["quarantine"]],
                actions=[_action_from_dict(a) for a in data["actions"]],
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise PlanError(f"malformed plan file: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan file is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise PlanError("plan file is not a JSON object")
        return cls.from_dict(data)


def count_actions(actions: list[Action]) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    for a in actions:
        key = (a.platform, a.entity, a.kind)
        counts[key] = counts.get(key, 0) + 1
    return counts


# --- typed value encoding ----------------------------------------------------------


encode_value = encode_tagged  # the plan file's encoding (sync.core.codec)
decode_value = decode_tagged


def _hide(value: Any, secret: bool) -> Any:
    return MASKED if secret and value is not None else value


def _change_to_dict(c: FieldChange, secret: bool = False) -> dict[str, Any]:
    return {
        "field": c.field,
        "base": encode_value(_hide(c.base, secret)),
        "erp": encode_value(_hide(c.erp, secret)),
        "remote": encode_value(_hide(c.remote, secret)),
        "new": encode_value(_hide(c.new, secret)),
        "kind": c.kind,
        "resolution": c.resolution,
    }


def _hide_fields(fields: dict[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    if not secret or not secret & fields.keys():
        return fields
    return {k: _hide(v, k in secret) for k, v in fields.items()}


def _action_to_dict(a: Action, secret: frozenset[str] = frozenset()) -> dict[str, Any]:
    nk = a.natural_key
    return {
        "kind": a.kind,
        "platform": a.platform,
        "entity": a.entity,
        "erp_key": a.erp_key,
        "remote_id": a.remote_id,
        "level": a.level,
        "changes": [_change_to_dict(c, c.field in secret) for c in a.changes],
        "payload": encode_value(_hide_fields(a.payload, secret)),
        "children": encode_value(a.children),
        "reason": a.reason,
        "natural_key": [nk[0], encode_value(_hide(nk[1], nk[0] in secret))] if nk else None,
        "base_version": a.base_version,
        "agreed": encode_value(_hide_fields(a.agreed, secret)),
        "agreed_children": encode_value(a.agreed_children),
        "local_only": a.local_only,
    }


def _masked_fields(a: Action) -> bool:
    return (
        any(v is MASKED for v in a.payload.values())
        or any(v is MASKED for v in a.agreed.values())
        or any(MASKED in (c.base, c.erp, c.remote, c.new) for c in a.changes)
        or (a.natural_key is not None and is_masked(a.natural_key[1]))
    )


def _fill_masked(action: Action, source: Action) -> bool:
    """Copy the values ``action`` had masked from ``source``; False when one is not there."""
    for mine, theirs in ((action.payload, source.payload), (action.agreed, source.agreed)):
        for k, v in mine.items():
            if v is MASKED:
                if k not in theirs:
                    return False
                mine[k] = theirs[k]
    changes = {c.field: c for c in source.changes}
    for c in action.changes:
        if MASKED in (c.base, c.erp, c.remote, c.new):
            other = changes.get(c.field)
            if other is None:
                return False
            for side in ("base", "erp", "remote", "new"):
                if getattr(c, side) is MASKED:
                    setattr(c, side, getattr(other, side))
    if action.natural_key is not None and is_masked(action.natural_key[1]):
        if source.natural_key is None or source.natural_key[0] != action.natural_key[0]:
            return False
        action.natural_key = source.natural_key
    return not _masked_fields(action)


def _action_from_dict(d: dict[str, Any]) -> Action:
    if d["kind"] not in ACTION_KINDS:
        raise ValueError(f"unknown action kind {d['kind']!r}")
    nk = d.get("natural_key")
    return Action(
        kind=d["kind"],
        platform=d["platform"],
        entity=d["entity"],
        erp_key=d["erp_key"],
        remote_id=d.get("remote_id"),
        level=int(d["level"]),
        changes=[
            FieldChange(
                field=c["field"],
                base=decode_value(c["base"]),
                erp=decode_value(c["erp"]),
                remote=decode_value(c["remote"]),
                new=decode_value(c["new"]),
                kind=c["kind"],
                resolution=c.get("resolution"),
            )
            for c in d.get("changes", [])
        ],
        payload=decode_value(d.get("payload", {})),
        children=decode_value(d.get("children", {})),
        reason=d.get("reason", ""),
        natural_key=(nk[0], decode_value(nk[1])) if nk else None,
        base_version=d.get("base_version"),
        agreed=decode_value(d.get("agreed", {})),
        agreed_children=decode_value(d.get("agreed_children", {})),
        local_only=bool(d.get("local_only", False)),
    )


_QUARANTINE_FIELDS = (
    "platform",
    "entity",
    "erp_key",
    "field",
    "rule",
    "message",
    "value",
    "erp_hash",
    "stage",
    "request_id",
    "column",
)


def _quarantine_to_dict(q: QuarantineEntry) -> dict[str, Any]:
    return {name: getattr(q, name) for name in _QUARANTINE_FIELDS}


def _quarantine_from_dict(d: dict[str, Any]) -> QuarantineEntry:
    return QuarantineEntry(**{name: d[name] for name in _QUARANTINE_FIELDS if name in d})
