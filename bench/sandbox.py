"""Sandbox throughput: requests/s for a simple list and a simple create, per platform.

Each sandbox runs in its own process (``uvicorn --factory``, the way a test campaign or the CLI would
run it); this process drives it with a few threads, each with its own keep-alive ``httpx.Client`` (the
cheapest client per request on this machine, design §4). Target: ≥ 1,000 requests/s per scenario on two
cores; the server's CPU per request is printed too, since other load on the machine moves req/s.
Usage: ``python bench/sandbox.py [--seconds 3] [--threads 4] [--platform smartkasa]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import FACTORIES, start_sandbox

KEY = "bench-api-key-0123456789abcdef"
TARGET_RPS = 1000.0


@dataclass
class Result:
    platform: str
    scenario: str
    requests: int
    errors: int
    seconds: float
    server_cpu_ms: float  # server process CPU per request: robust to other load on the machine

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def drive(
    server: psutil.Process,
    url: str,
    headers: dict[str, str],
    send: Callable[[httpx.Client, int], httpx.Response],
    seconds: float,
    threads: int,
) -> tuple[int, int, float, float]:
    counter = itertools.count()
    done = [0] * threads
    errors = [0] * threads
    stop = threading.Event()

    def worker(slot: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            while not stop.is_set():
                response = send(client, next(counter))
                if response.is_success:
                    done[slot] += 1
                else:
                    errors[slot] += 1

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    cpu = server.cpu_times()
    began = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    after = server.cpu_times()
    used_ms = (after.user + after.system - cpu.user - cpu.system) * 1000
    return sum(done), sum(errors), elapsed, used_ms / max(1, sum(done) + sum(errors))


def bench_smartkasa(server: psutil.Process, url: str, seconds: float, threads: int) -> list[Result]:
    httpx.post(f"{url}/_admin/tenants", json={"api_key": KEY}).raise_for_status()
    login = httpx.post(
        f"{url}/api/v1/auth/sessions",
        headers={"X-API-KEY": KEY},
        json={"session": {"phone_number": "380960000006", "password": "123456789"}},
    )
    login.raise_for_status()
    headers = {"X-API-KEY": KEY, "Authorization": login.json()["data"]["access"]}
    seed = [{"title": f"Seed {i}", "price": 10 + i, "number": f"48{i:011d}"} for i in range(100)]
    httpx.post(
        f"{url}/api/v1/inventory/products/batch", headers=headers, json={"batch": {"products": seed}}
    ).raise_for_status()

    def list_(c: httpx.Client, i: int) -> httpx.Response:
        return c.get("/api/v1/inventory/products", params={"page": 1 + i % 4})

    def create(c: httpx.Client, i: int) -> httpx.Response:
        return c.post(
            "/api/v1/inventory/products",
            json={"product": {"title": f"Bench {i}", "price": 71.89, "number": f"99{i:011d}"}},
        )

    out = []
    for name, fn in (("list products (25/page)", list_), ("create product", create)):
        out.append(Result("smartkasa", name, *drive(server, url, headers, fn, seconds, threads)))
    return out


def bench_smartepi(server: psutil.Process, url: str, seconds: float, threads: int) -> list[Result]:
    httpx.post(f"{url}/_admin/tenants", json={"api_key": KEY}).raise_for_status()
    headers = {"Authorization": f"Bearer {KEY}"}
    for i in range(30):
        httpx.post(f"{url}/v1/job-roles", headers=headers, json={"name": f"Seed role {i}"}).raise_for_status()

    def list_(c: httpx.Client, i: int) -> httpx.Response:
        return c.get("/v1/job-roles")

    def create(c: httpx.Client, i: int) -> httpx.Response:
        return c.post("/v1/job-roles", json={"name": f"Bench role {i}"})

    out = []
    for name, fn in (("list job-roles", list_), ("create job-role", create)):
        out.append(Result("smartepi", name, *drive(server, url, headers, fn, seconds, threads)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--platform", choices=[*FACTORIES, "all"], default="all")
    args = parser.parse_args()
    runners = {"smartepi": bench_smartepi, "smartkasa": bench_smartkasa}
    load_before = os.getloadavg()[0]
    results: list[Result] = []
    for platform in FACTORIES if args.platform == "all" else [args.platform]:
        sandbox = start_sandbox(platform)
        proc, url = sandbox.proc, sandbox.url
        try:
            results += runners[platform](psutil.Process(proc.pid), url, args.seconds, args.threads)
        finally:
            proc.terminate()
            proc.wait(10)
    load = os.getloadavg()[0]
    print(f"load average before the run: {load_before:.2f}, after: {load:.2f} (on {os.cpu_count()} cores)")
    head = f"{'platform':<10} {'scenario':<26} {'req/s':>8} {'requests':>9} {'errors':>7} {'srv ms/req':>10}"
    print(f"{head}  target {TARGET_RPS:.0f}/s")
    for r in results:
        flag = "ok" if r.rps >= TARGET_RPS and not r.errors else "BELOW"
        print(
            f"{r.platform:<10} {r.scenario:<26} {r.rps:>8.0f} {r.requests:>9} {r.errors:>7} "
            f"{r.server_cpu_ms:>10.3f}  {flag}"
        )
    return 0 if all(r.rps >= TARGET_RPS and not r.errors for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
