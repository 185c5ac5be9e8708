"""1,000 webhook events from the sandbox emitter, with duplicates, shuffling, forged and stale signatures,
and the receiver restarted mid-stream: every bad delivery rejected, every event exactly once in the sink."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter

from epi_env import EpiEnv
from fastapi import FastAPI
from inbound_helpers import SECRET, free_port, settings_with, tenant_settings

from sync.engine.inbound import process_inbox, relay
from sync.sandbox.smartepi.admin import emit
from sync.sandbox.smartepi.generators import generate
from sync.sinks.sql import SqlSink
from sync.state.store import StateStore
from sync.web.webhooks import make_webhook_router

EVENTS = 1000


class Worker:
    """Stands in for the Celery task: applies enqueued inbox rows in batches."""

    def __init__(self, store: StateStore, tenant: str, sink: SqlSink) -> None:
        self.store, self.tenant, self.sink = store, tenant, sink
        self.queue: queue.Queue[list[int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def enqueue(self, tenant: str, ids: list[int]) -> None:
        assert tenant == self.tenant
        self.queue.put(ids)

    def run(self) -> None:
        settings = tenant_settings()
        while (ids := self.queue.get()) is not None:
            batch = list(ids)
            while len(batch) < 200:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                batch.extend(more)
            process_inbox(self.store, self.tenant, settings, self.sink, batch)

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(30)


def test_thousand_deliveries_exactly_once(
    store: StateStore, tenant_id: str, sql_sink: SqlSink, serve
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_with(tenant_id, tenant_settings(secrets=[SECRET]))
    worker = Worker(store, tenant_id, sql_sink)
    app = FastAPI()
    app.include_router(make_webhook_router(lambda: settings, lambda: store, worker.enqueue))
    port = free_port()
    receiver = serve(app, port)
    env = EpiEnv(
        webhook_url=f"{receiver.url}/webhooks/smartepi/{tenant_id}",
        secret=SECRET,
        seed=42,
        p_duplicate=0.1,
        reorder=True,
        p_bad_signature=0.05,
        p_stale_timestamp=0.05,
        stale_by_s=3600,
        max_attempts=20,
        backoff_s=0.02,
        backoff_factor=2.0,
        backoff_max_s=0.3,
        timeout_s=5,
    )
    env.bind_all(store, tenant_id)
    emitter = env.sandbox.emitter
    try:
        records = generate(env.sandbox.store, env.tenant, "withdrawals", EVENTS, seed=3)
        assert emit(env.sandbox, env.tenant, "withdrawals", records) == EVENTS
        deadline = time.monotonic() + 60
        while len(emitter.status()["log"]) < 450 and time.monotonic() < deadline:
            time.sleep(0.01)
        receiver.stop()  # the receiver goes down mid-stream...
        restarted_at = time.time()
        time.sleep(0.3)
        receiver.start()  # ...and comes back on the same port
        assert emitter.flush(timeout=90), "deliveries did not finish"
    finally:
        emitter.stop()
    log = emitter.status()["log"]
    worker.stop()
    for tenant, ids in relay(store, 0):  # anything stored but never enqueued (the restart)
        if tenant == tenant_id:
            process_inbox(store, tenant_id, tenant_settings(), sql_sink, ids)

    bad = [e for e in log if (e["forged"] or e["stale"]) and isinstance(e["status"], int)]
    assert len(bad) > 50 and all(e["status"] in (400, 401) for e in bad)  # every forged/stale one rejected
    down = [e for e in log if not isinstance(e["status"], int)]  # refused while the receiver was down
    assert down and all(restarted_at - 1 < e["at"] < restarted_at + 1 for e in down)
    assert any(e["forged"] for e in bad) and any(e["stale"] for e in bad)
    good = [e for e in log if not e["forged"] and not e["stale"] and isinstance(e["status"], int)]
    assert all(e["status"] == 200 for e in good)
    assert sum(e["duplicate"] for e in log if e["ok"]) > 50
    assert not any(e["gave_up"] for e in log)
    assert any(e["at"] < restarted_at for e in log) and any(e["at"] > restarted_at + 0.3 for e in log)

    rows = sql_sink.rows("withdrawals")
    counts = Counter(r["remote_id"] for r in rows)
    assert set(counts) == {r.id for r in records} and set(counts.values()) == {1}
    assert all(r["employee_key"] and r["product_key"] for r in rows)
    assert tenant_id not in dict(relay(store, 0))
