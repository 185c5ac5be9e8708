"""The per-key throttle and the reconcile ledger, on real Redis (every transition is one Lua script)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sync.engine.throttle import KeyThrottle, ReconcileLedger, follow_up_id

pytestmark = pytest.mark.services


@pytest.fixture
def throttle(redis_client: Any, namespace: str) -> KeyThrottle:
    return KeyThrottle(redis_client, namespace=namespace, window=0.5, ttl=30)


def test_a_lone_event_is_sent_at_once(throttle: KeyThrottle) -> None:
    adm = throttle.admit("t", "employees", ["E1"])
    [(task_id, (keys, delay))] = adm.send.items()
    assert keys == ["E1"] and delay == 0
    assert adm.task_ids == {"E1": task_id} and adm.primary_task_id == task_id


def test_events_while_queued_are_absorbed_by_the_queued_task(throttle: KeyThrottle) -> None:
    first = throttle.admit("t", "employees", ["E1"])
    for _ in range(20):
        again = throttle.admit("t", "employees", ["E1"])
        assert again.send == {}
        assert again.primary_task_id == first.primary_task_id


def test_events_while_running_fold_into_one_follow_up_after_the_window(throttle: KeyThrottle) -> None:
    task_id = throttle.admit("t", "employees", ["E1", "E2"]).primary_task_id
    assert task_id
    throttle.begin("t", "employees", ["E1", "E2"], task_id)
    promised = {throttle.admit("t", "employees", ["E1"]).primary_task_id for _ in range(50)}
    assert promised == {follow_up_id(task_id)}  # the follow-up id is known before it exists
    follow = throttle.finish("t", "employees", ["E1", "E2"], task_id)
    assert follow is not None
    assert follow.task_id == follow_up_id(task_id) and follow.keys == ["E1"]
    assert 0.3 < follow.delay <= 0.5  # not before the window that started with the leading sync
    # E1 is now queued for the follow-up: more events are absorbed by it.
    assert throttle.admit("t", "employees", ["E1"]).send == {}
    # E2 was clean: it cools down, and an event now re-queues it for the end of the window.
    cooled = throttle.admit("t", "employees", ["E2"])
    [(fid, (keys, delay))] = cooled.send.items()
    assert fid == follow_up_id(task_id) and keys == ["E2"] and 0 < delay <= 0.5


def test_after_the_window_a_key_is_admitted_on_the_leading_edge_again(throttle: KeyThrottle) -> None:
    task_id = throttle.admit("t", "e", ["K"]).primary_task_id
    assert task_id
    throttle.begin("t", "e", ["K"], task_id)
    assert throttle.finish("t", "e", ["K"], task_id) is None
    time.sleep(0.6)
    [(new_id, (_, delay))] = throttle.admit("t", "e", ["K"]).send.items()
    assert new_id != task_id and delay == 0


def test_finish_by_a_task_that_does_not_own_the_key_changes_nothing(throttle: KeyThrottle) -> None:
    task_id = throttle.admit("t", "e", ["K"]).primary_task_id
    assert task_id
    throttle.begin("t", "e", ["K"], task_id)
    throttle.admit("t", "e", ["K"])  # dirty
    assert throttle.finish("t", "e", ["K"], "someone-else") is None
    follow = throttle.finish("t", "e", ["K"], task_id)
    assert follow is not None and follow.keys == ["K"]


def test_release_forgets_keys_queued_for_a_task_that_was_never_sent(throttle: KeyThrottle) -> None:
    task_id = throttle.admit("t", "e", ["K"]).primary_task_id
    assert task_id
    throttle.release("t", "e", ["K"], task_id)
    assert throttle.admit("t", "e", ["K"]).send  # admitted again, not absorbed by a ghost


def test_every_state_expires(throttle: KeyThrottle, redis_client: Any, namespace: str) -> None:
    throttle.admit("t", "e", ["K"])
    [key] = list(redis_client.scan_iter(f"{namespace}:throttle:*"))
    assert 0 < redis_client.pttl(key) <= 30_000


def test_concurrent_events_for_one_key_admit_exactly_one_sync(throttle: KeyThrottle) -> None:
    sent: list[str] = []
    lock = threading.Lock()

    def fire() -> None:
        adm = throttle.admit("t", "e", ["K"])
        with lock:
            sent.extend(adm.send)

    threads = [threading.Thread(target=fire) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 1


def test_window_must_be_shorter_than_ttl(redis_client: Any) -> None:
    with pytest.raises(ValueError):
        KeyThrottle(redis_client, window=5, ttl=5)


def test_ledger_a_trigger_is_covered_only_by_a_completed_run_that_started_after_it(
    redis_client: Any, namespace: str
) -> None:
    ledger = ReconcileLedger(redis_client, namespace=namespace)
    t0 = ledger.now_ms()
    assert not ledger.covered("a", "fast", t0)
    ledger.completed("a", "fast", t0 - 1)  # started before the trigger: does not cover it
    assert not ledger.covered("a", "fast", t0)
    ledger.completed("a", "fast", t0 + 5)
    assert ledger.covered("a", "fast", t0)
    assert not ledger.covered("a", "full", t0)  # a fast run does not satisfy a full trigger
    ledger.completed("a", "full", t0 + 10)
    assert ledger.covered("a", "full", t0) and ledger.covered("a", "fast", t0 + 7)
    ledger.completed("a", "full", t0)  # never moves back
    assert ledger.covered("a", "full", t0 + 10)
    assert not ledger.covered("b", "fast", t0)  # per tenant
