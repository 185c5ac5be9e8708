"""Benchmark of the Celery service: event latency, scale-out, and a shared request quota.

    python bench/service.py [--redis redis://127.0.0.1:6379/15] [--events 1000] [--json out.json]

Real Redis, real worker processes (``celery -A worker_app worker``, prefork), never eager
mode. The engine is the test suite's instrumented ``FakeEngine`` (tests/service): its
"sandbox" is a Redis hash, so what is measured is the service layer (intake, throttle,
broker, worker, task) plus the sandbox latency we dial in, not the planner or HTTP.

1. event → sandbox write latency, p50/p95 over N events (distinct keys, one every
   20 ms), one warm worker, zero-latency sandbox. Times are the Redis server's clock
   at submit and at the write, so client and worker clocks do not matter.
2. throughput of 1 worker vs 2 workers (4 processes each) draining 400 one-key
   events against a 50 ms sandbox; the bound is processes / 50 ms.
3. the highest per-second request rate 2 workers reach when they share a 50 req/s
   quota through the Redis governor (``sync.clients.governor.RedisGovernor``): the
   quota, not the worker count, must be the ceiling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "service"))

import redis as redis_lib  # noqa: E402
from fake_engine import FakeWorld  # noqa: E402
from processes import Proc, running, service_env, start_worker, wait_until  # noqa: E402
from service_helpers import service_config, write_config  # noqa: E402

from sync import celery_app, tasks  # noqa: E402
from sync.settings import Settings  # noqa: E402

ENTITY = "employees"
TENANT = "acme"


class Bench:
    def __init__(self, redis_url: str, root: Path) -> None:
        import os

        self.root = root
        self.namespace = f"erpsync-bench-{uuid.uuid4().hex[:8]}"
        os.environ["ERPSYNC_NAMESPACE"] = self.namespace
        data = service_config(
            redis_url, f"sqlite:///{root}/state.db", [TENANT], task_time_limit=120, visibility_timeout=180
        )
        self.config = write_config(root / "config.yaml", data)
        self.settings = Settings(**data)
        celery_app.configure(self.settings)
        tasks.configure_runtime()
        self.redis = redis_lib.Redis.from_url(redis_url)
        self.world = FakeWorld(self.redis, self.namespace)
        self.env = service_env(self.config, self.namespace)

    def workers(self, n: int, concurrency: int) -> list[Proc]:
        tag = uuid.uuid4().hex[:4]
        return [
            start_worker(
                self.env, self.root / f"w{i}-{tag}.log", name=f"bench{i}-{tag}", concurrency=concurrency
            )
            for i in range(n)
        ]

    def now_ms(self) -> int:
        sec, usec = self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def fresh_keys(self, n: int, prefix: str) -> list[str]:
        keys = [f"{prefix}{i:05d}" for i in range(n)]
        self.world.set_erp(TENANT, ENTITY, {k: "v" for k in keys})
        return keys

    def cleanup(self) -> None:
        for key in self.redis.scan_iter(f"{self.namespace}:*", count=1000):
            self.redis.delete(key)


def latency(b: Bench, events: int) -> dict[str, Any]:
    keys = b.fresh_keys(events, "L")
    with running(*b.workers(1, 2)):
        warm = b.fresh_keys(20, "warm")
        for k in warm:
            tasks.submit_keys(TENANT, ENTITY, [k])
        wait_until(lambda: len(b.world.written_at(TENANT, ENTITY)) >= 20, 30)
        sent: dict[str, int] = {}
        for k in keys:
            sent[k] = b.now_ms()
            tasks.submit_keys(TENANT, ENTITY, [k])
            time.sleep(0.02)
        wait_until(lambda: all(k in b.world.written_at(TENANT, ENTITY) for k in keys), 60, interval=0.2)
    written = b.world.written_at(TENANT, ENTITY)
    lat = sorted(written[k] - sent[k] for k in keys if k in written)
    q = statistics.quantiles(lat, n=100)
    return {"events": events, "delivered": len(lat), "p50_ms": q[49], "p95_ms": q[94], "max_ms": lat[-1]}


def throughput(b: Bench, n_workers: int, events: int = 400, concurrency: int = 4) -> dict[str, Any]:
    b.world.set_delay(TENANT, 0.05)
    keys = b.fresh_keys(events, f"T{n_workers}-")
    with running(*b.workers(n_workers, concurrency)):
        start = time.monotonic()
        for k in keys:
            tasks.submit_keys(TENANT, ENTITY, [k])
        wait_until(lambda: all(k in b.world.written_at(TENANT, ENTITY) for k in keys), 120, interval=0.1)
        elapsed = time.monotonic() - start
    b.world.set_delay(TENANT, 0)
    bound = events * 0.05 / (n_workers * concurrency)
    return {
        "workers": n_workers,
        "processes": n_workers * concurrency,
        "events": events,
        "seconds": round(elapsed, 2),
        "events_per_s": round(events / elapsed, 1),
        "ratio_to_bound": round(elapsed / bound, 2),
    }


def shared_quota(b: Bench, quota: float = 50.0, events: int = 500) -> dict[str, Any]:
    b.world.set_quota(quota)  # read by each FakeEngine at start: set before the workers start
    keys = b.fresh_keys(events, "Q")
    with running(*b.workers(2, 4)):
        for k in keys:
            tasks.submit_keys(TENANT, ENTITY, [k])
        wait_until(lambda: all(k in b.world.written_at(TENANT, ENTITY) for k in keys), 120, interval=0.2)
    written = b.world.written_at(TENANT, ENTITY)
    per_second = Counter(written[k] // 1000 for k in keys if k in written)
    full = sorted(per_second.items())[1:-1] or sorted(per_second.items())  # drop partial edge seconds
    rates = [n for _, n in full]
    return {
        "quota_rps": quota,
        "workers": 2,
        "max_rps": max(rates),
        "mean_rps": round(statistics.mean(rates), 1),
        "max_over_quota": round(max(rates) / quota, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="erpsync-bench-") as tmp:
        b = Bench(args.redis, Path(tmp))
        try:
            results = {"latency": latency(b, args.events)}
            print("latency", results["latency"], flush=True)
            one, two = throughput(b, 1), throughput(b, 2)
            results["throughput"] = {
                "one": one,
                "two": two,
                "speedup": round(two["events_per_s"] / one["events_per_s"], 2),
            }
            print("throughput", results["throughput"], flush=True)
            results["quota"] = shared_quota(b)
            print("quota", results["quota"], flush=True)
        finally:
            b.cleanup()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
