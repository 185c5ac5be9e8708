"""The store methods that took over the writes and reads other modules made themselves
(#15 item 6): the inbox insert, the sink transaction, markers, and the sinks' intent reads."""

from __future__ import annotations

import pytest

from sync.sinks.base import InboundRow
from sync.state.store import StateStore


@pytest.fixture
def store(state_url: str) -> StateStore:
    return StateStore(state_url)


def _row(remote_id: str, qty: int = 1) -> InboundRow:
    return InboundRow.make("smartepi", remote_id, {"qty": qty}, {"id": remote_id})


def test_inbox_insert_returns_the_id_once_and_none_for_a_duplicate(store: StateStore, tenant_id: str) -> None:
    first = store.inbox_insert(tenant_id, "smartepi", "ev-1", "withdrawal.created", {"id": "w-1"})
    assert isinstance(first, int)
    assert store.inbox_insert(tenant_id, "smartepi", "ev-1", "withdrawal.created", {"id": "w-1"}) is None
    held = store.inbox_insert(tenant_id, "smartepi", "ev-2", "x", {}, status="failed", error="bad")
    assert held is not None
    # only rows still waiting to be applied load, in id order
    assert [e.event_id for e in store.inbox_load(tenant_id, [held, first])] == ["ev-1"]
    assert store.inbox_load(tenant_id, []) == []
    assert store.inbox_load("another-tenant", [first]) == []


def test_a_transaction_commits_the_cursor_and_the_markers_together_or_neither(
    store: StateStore, tenant_id: str
) -> None:
    rows = [_row("w-1"), _row("w-2")]
    with pytest.raises(RuntimeError), store.transaction() as s:
        fresh, found = store.inbound_unwritten(tenant_id, "withdrawals", rows, session=s)
        store.set_cursor(tenant_id, "jsonl", "withdrawals", "100", session=s)
        store.inbound_mark(tenant_id, "withdrawals", fresh, found, session=s)
        raise RuntimeError("crash before the commit")
    assert store.get_cursor(tenant_id, "jsonl", "withdrawals") is None
    assert store.inbound_seen(tenant_id, "smartepi", "withdrawals", ["w-1", "w-2"]) == set()

    with store.transaction() as s:
        fresh, found = store.inbound_unwritten(tenant_id, "withdrawals", rows, session=s)
        store.set_cursor(tenant_id, "jsonl", "withdrawals", "100", session=s)
        store.inbound_mark(tenant_id, "withdrawals", fresh, found, session=s)
        assert store.get_cursor(tenant_id, "jsonl", "withdrawals", session=s) == "100"
    assert store.get_cursor(tenant_id, "jsonl", "withdrawals") == "100"
    assert store.inbound_seen(tenant_id, "smartepi", "withdrawals", ["w-1", "w-2"]) == {"w-1", "w-2"}


def test_markers_skip_what_is_written_and_take_a_new_version(store: StateStore, tenant_id: str) -> None:
    assert store.inbound_mark_delivered(tenant_id, {"stock": [_row("c-1"), _row("c-2")]})
    changed = _row("c-2", qty=5)
    fresh, found = store.inbound_unwritten(tenant_id, "stock", [_row("c-1"), changed, _row("c-3")])
    assert [r.remote_id for r in fresh] == ["c-2", "c-3"]
    assert set(found) == {"smartepi\x00c-2"}  # the marker to move to the new hash
    assert store.inbound_mark_delivered(tenant_id, {"stock": [changed]})
    assert store.inbound_marked(tenant_id, "smartepi", "stock", ["c-2"])["c-2"].content_hash == changed.chash


def test_sink_intent_reads(store: StateStore, tenant_id: str) -> None:
    got = store.open_intents_many(tenant_id, "tryton", "sink.moves", [("k1", {}, 1), ("k2", {}, 2)])
    store.set_intent(got["k1"], "done", remote_id="41")
    assert store.done_remote_ids(tenant_id, "tryton", "sink.moves", ["41", "42"]) == {"41"}
    assert store.done_remote_ids(tenant_id, "tryton", "sink.moves", []) == set()
    assert [i.erp_key for i in store.intents_for_keys(tenant_id, "tryton", "sink.moves", ["k1", "k2"])] == [
        "k1",
        "k2",
    ]
    assert [
        i.erp_key
        for i in store.intents_for_keys(tenant_id, "tryton", "sink.moves", ["k1", "k2"], states=["done"])
    ] == ["k1"]


def test_get_run(store: StateStore, tenant_id: str) -> None:
    run_id = store.start_run(tenant_id, "plan")
    run = store.get_run(run_id)
    assert run is not None and run.tenant == tenant_id and run.status == "running"
    assert store.get_run(run_id + 10_000) is None
