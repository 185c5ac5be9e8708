"""SmartEPI pulls: gap filling after a webhook outage, cursor safety across crashes, parked records."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from epi_env import EpiEnv
from inbound_helpers import tenant_settings

from sync.engine import pull as pull_mod
from sync.engine.inbound import EVENT_STREAMS, inbox_insert, process_inbox
from sync.engine.pull import iso, pull_async
from sync.sinks.base import InboundRow
from sync.sinks.sql import SqlSink
from sync.state.store import StateStore

STREAMS = ("withdrawals", "returns", "exchanges", "training_records")


def run(store: StateStore, tenant: str, sink: Any, env: EpiEnv, **kw: Any) -> pull_mod.PullSummary:
    async def go() -> pull_mod.PullSummary:
        client = env.client()
        try:
            return await pull_async(
                store, tenant, tenant_settings(), sink, epi_client=client, streams=STREAMS, **kw
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def landed(sink: SqlSink) -> Counter[tuple[str, str]]:
    return Counter((s, r["remote_id"]) for s in STREAMS for r in sink.rows(s))


def expected(env: EpiEnv) -> set[tuple[str, str]]:
    out = set()
    for stream in STREAMS:
        for rec in env.tenant.tables[stream.replace("_", "-")].records.values():
            out.add((stream, rec.id))
    return out


def test_webhooks_off_then_pull_fills_every_gap_once(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    env = EpiEnv()
    env.bind_all(store, tenant_id)
    withdrawals = env.generate("withdrawals", 250, seed=1)
    env.generate("returns", 30, seed=2)
    env.generate("exchanges", 20, seed=3)
    env.generate("training-records", 10, seed=4)
    # the first 100 withdrawals did arrive as webhooks before the outage
    state = {r["id"]: r for r in _dump(env, "withdrawals")}
    for wid in withdrawals[:100]:
        ev = {
            "id": f"evt_withdrawal_created_{wid}",
            "type": "withdrawal.created",
            "createdAt": 0,
            "data": state[wid],
        }
        inbox_insert(store, tenant_id, "smartepi", ev["id"], ev["type"], ev)
    assert process_inbox(store, tenant_id, tenant_settings(), sql_sink).written == 100

    summary = run(store, tenant_id, sql_sink, env)
    assert summary.fetched == 310 and summary.written == 210
    counts = landed(sql_sink)
    assert set(counts) == expected(env) and set(counts.values()) == {1}
    pages = sum(-(-n // 100) for n in (250, 30, 20, 10))
    assert summary.requests["smartepi"] == pages

    again = run(store, tenant_id, sql_sink, env)
    assert again.written == 0 and landed(sql_sink) == counts
    for result in again.streams:
        assert result.cursor_after is not None and result.cursor_before is not None


def _dump(env: EpiEnv, stream: str) -> list[dict[str, Any]]:
    from sync.sandbox.smartepi.schema import SPECS
    from sync.sandbox.smartepi.store import dto

    resource = stream.replace("_", "-")
    return [dto(SPECS[resource], r) for r in env.tenant.tables[resource].records.values()]


class Killed(BaseException):
    """A process kill: not an error a stream's boundary may catch (a real kill catches nothing)."""


class KillingSink:
    """Commits ``commits`` batches, then dies on the next: before (``after=False``) or after its commit."""

    def __init__(self, inner: SqlSink, commits: int, *, after: bool) -> None:
        self.inner, self.commits, self.after = inner, commits, after

    def write_many(self, batches: Mapping[str, Sequence[InboundRow]]) -> int:
        if self.commits == 0:
            if self.after:
                self.inner.write_many(batches)
            raise Killed
        self.commits -= 1
        return self.inner.write_many(batches)

    def write(self, stream: str, records: Sequence[InboundRow]) -> int:
        return self.write_many({stream: records})

    def close(self) -> None:
        pass


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
def test_killed_between_fetch_and_commit_then_rerun(
    store: StateStore, tenant_id: str, sql_sink: SqlSink, monkeypatch: pytest.MonkeyPatch, after: bool
) -> None:
    monkeypatch.setattr(pull_mod, "FLUSH_ROWS", 50)
    env = EpiEnv()
    env.bind_all(store, tenant_id)
    env.generate("withdrawals", 230, seed=5)
    env.generate("returns", 40, seed=6)
    with pytest.raises(Killed):
        run(store, tenant_id, KillingSink(sql_sink, 2, after=after), env)
    assert store.get_cursor(tenant_id, "smartepi", "withdrawals") is None  # never passed uncommitted data
    # killed before the 3rd commit: 2 pages in; killed after it: all in, yet the cursor did not move
    assert len(sql_sink.rows("withdrawals")) == (230 if after else 200)
    # a second crash in the next stream: withdrawals are complete and their cursor moves, returns' does not
    with pytest.raises(Killed):
        run(store, tenant_id, KillingSink(sql_sink, 3, after=after), env)
    assert store.get_cursor(tenant_id, "smartepi", "withdrawals") is not None
    assert store.get_cursor(tenant_id, "smartepi", "returns") is None
    assert len(sql_sink.rows("withdrawals")) == 230
    summary = run(store, tenant_id, sql_sink, env)
    counts = landed(sql_sink)
    assert set(counts) == expected(env) and set(counts.values()) == {1}
    assert summary.fetched == 270


def test_cursor_never_passes_run_start_and_overlap_catches_late_records(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    env = EpiEnv()
    env.bind_all(store, tenant_id)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    env.generate("withdrawals", 5, start=t0 - dt.timedelta(hours=1), spacing_s=60)
    later = env.generate(
        "withdrawals", 3, start=t0 + dt.timedelta(seconds=5), spacing_s=1
    )  # after the run start
    first = run(store, tenant_id, sql_sink, env, now=t0)
    assert store.get_cursor(tenant_id, "smartepi", "withdrawals") == iso(t0)
    assert {r["remote_id"] for r in sql_sink.rows("withdrawals")}.isdisjoint(later)
    assert first.written == 5
    # a record stamped before the cursor that only became visible now (device clock, replication lag)
    late = env.generate("withdrawals", 1, start=t0 - dt.timedelta(minutes=4), seed=9)
    second = run(
        store, tenant_id, sql_sink, env, now=t0 + dt.timedelta(minutes=1), overlap=dt.timedelta(minutes=10)
    )
    got = {r["remote_id"] for r in sql_sink.rows("withdrawals")}
    assert set(late) <= got and set(later) <= got and second.written == 4


def test_backfill_since_and_windows(store: StateStore, tenant_id: str, sql_sink: SqlSink) -> None:
    env = EpiEnv()
    env.bind_all(store, tenant_id)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    env.generate("withdrawals", 10, start=t0 - dt.timedelta(days=10), spacing_s=86400)
    summary = run(
        store,
        tenant_id,
        sql_sink,
        env,
        since=t0 - dt.timedelta(days=3, hours=1),
        now=t0,
        window=dt.timedelta(days=1),
    )
    assert summary.written == 3  # days -3, -2, -1
    assert summary.requests["smartepi"] == 4 * len(STREAMS)  # one page per one-day window per stream


def test_unbound_records_are_parked_and_land_when_bound(
    store: StateStore, tenant_id: str, sql_sink: SqlSink
) -> None:
    env = EpiEnv()
    env.bind_all(store, tenant_id, skip=("e-0",))
    env.generate("withdrawals", 60, seed=11)
    by_employee = Counter(r["employeeId"] for r in _dump(env, "withdrawals"))
    assert by_employee["e-0"] > 0
    summary = run(store, tenant_id, sql_sink, env)
    parked = sum(s.parked for s in summary.streams)
    assert parked == by_employee["e-0"]
    assert summary.inbox is not None and summary.inbox.waiting == parked
    assert store.get_cursor(tenant_id, "smartepi", "withdrawals") is not None  # parked = durably held
    assert len(store.quarantined(tenant_id, stage="inbound")) == parked
    # its webhook arriving later is a duplicate of the parked event
    wid = next(r["id"] for r in _dump(env, "withdrawals") if r["employeeId"] == "e-0")
    assert (
        inbox_insert(store, tenant_id, "smartepi", f"evt_withdrawal_created_{wid}", "withdrawal.created", {})
        is None
    )

    store.save_base(tenant_id, "smartepi", "employees", "EMP-e-0", "e-0", {})
    assert process_inbox(store, tenant_id, tenant_settings(), sql_sink).events == 0  # backing off
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=31)
    done = process_inbox(store, tenant_id, tenant_settings(), sql_sink, now=later)
    assert done.done == parked and done.released == parked
    assert len(sql_sink.rows("withdrawals")) == 60
    assert EVENT_STREAMS["withdrawal.created"] == "withdrawals"
