"""A stale write re-plans with the planner's own three-way rule (issue #15 item 2).

The executor used to re-implement the rule: for ``remote_wins`` on a field that does not
flow back to the ERP, the planner reports a conflict (nothing written either way) while the
executor's copy pulled the platform's value into the ERP. Now both call ``decide_field``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sync.core.plan import Action, FieldChange, Plan
from sync.core.planner import MISSING, decide_field
from sync.core.records import EntityPolicy, FieldPolicy
from sync.engine.adapters.base import CreateItem, RawRemote, Written
from sync.engine.apply import ApplyContext, Executor
from sync.errors import StaleVersion
from sync.state.store import StateStore


class _StaleOnce:
    """A platform whose record was edited in its console between plan and apply."""

    platform = "smartepi"

    def __init__(self, console_value: str) -> None:
        self.sent: list[dict[str, Any]] = []
        self.console_value = console_value

    async def update(
        self,
        entity: str,
        remote_id: str,
        payload: Mapping[str, Any],
        children: Mapping[str, list[dict[str, Any]]],
        *,
        version: str | None,
    ) -> Written:
        if version == "v1":
            raise StaleVersion("version moved on", status=409)
        self.sent.append(dict(payload))
        return Written(remote_id, "v3")

    async def get(self, entity: str, remote_id: str) -> RawRemote | None:
        return RawRemote(remote_id, {"name": "Sector A", "code": self.console_value}, {}, "v2")

    def batch_size(self, entity: str) -> int:
        return 1

    async def create(self, entity: str, items: Sequence[CreateItem], *, marker: str | None = None) -> list:
        raise AssertionError("no create in this test")


def _run(tmp_path: Path, conflict: str, direction: str) -> tuple[_StaleOnce, list[Any], Executor]:
    policy = EntityPolicy(
        platform="smartepi",
        entity="sectors",
        level=0,
        natural_key=("name",),
        fields={
            "name": FieldPolicy("name"),
            "code": FieldPolicy("code", direction=direction, conflict=conflict),  # type: ignore[arg-type]
        },
        writable=True,
    )
    adapter = _StaleOnce("CONSOLE")
    written_back: list[Any] = []

    def write_back(p: EntityPolicy, key: str, fields: dict[str, Any], why: str) -> bool:
        written_back.append((key, fields))
        return True

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    ctx = ApplyContext(
        tenant="t",
        store=store,
        adapters={"smartepi": adapter},  # type: ignore[dict-item]
        policies={("smartepi", "sectors"): policy},
        concurrency={"smartepi": 2},
        to_remote=lambda p, raw, rev: dict(raw.fields),
        write_back=write_back,
    )
    action = Action(
        kind="update",
        platform="smartepi",
        entity="sectors",
        erp_key="S1",
        remote_id="r1",
        level=0,
        changes=[FieldChange("code", "OLD", "NEW", "OLD", "NEW", "push")],
        payload={"code": "NEW"},
        base_version="v1",
        agreed={"name": "Sector A", "code": "NEW"},
    )
    ex = Executor(ctx)
    asyncio.run(ex.run(Plan("t", "full", dt.datetime.now(dt.UTC), actions=[action])))
    return adapter, written_back, ex


def test_remote_wins_on_a_push_only_field_is_reported_not_pulled(tmp_path: Path) -> None:
    fp = FieldPolicy("code", direction="push", conflict="remote_wins")
    planned = decide_field(fp, "NEW", "OLD", "CONSOLE", writable=True)
    assert planned is not None and (planned.kind, planned.resolution) == ("conflict", "report")

    adapter, written_back, _ = _run(tmp_path, "remote_wins", "push")
    assert written_back == []  # the ERP is not written: the field does not flow back
    assert all("code" not in p for p in adapter.sent)  # nor is the platform's edit overwritten


def test_remote_wins_on_a_field_that_flows_back_is_pulled(tmp_path: Path) -> None:
    adapter, written_back, _ = _run(tmp_path, "remote_wins", "both")
    assert written_back == [("S1", {"code": "CONSOLE"})]
    assert all("code" not in p for p in adapter.sent)


def test_erp_wins_resends_after_the_stale_read(tmp_path: Path) -> None:
    adapter, written_back, _ = _run(tmp_path, "erp_wins", "push")
    assert written_back == []
    assert adapter.sent == [{"code": "NEW"}]


def test_decide_field_missing_base_pushes() -> None:
    change = decide_field(FieldPolicy("code"), "NEW", MISSING, "X", writable=True)
    assert change is not None and change.kind == "push"
