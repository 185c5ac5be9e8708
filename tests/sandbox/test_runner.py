"""The in-thread server runner and the ``erpsync sandbox`` command, over real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from fastapi import FastAPI

from sync.sandbox.faults import FaultConfig
from sync.sandbox.runner import serve_in_thread, serve_sandboxes


def tiny_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": threading.current_thread().name}

    return app


def test_serve_in_thread_binds_a_free_port_and_stops():
    before = threading.active_count()
    with serve_in_thread(tiny_app()) as handle:
        assert handle.port > 0 and handle.url == f"http://127.0.0.1:{handle.port}"
        assert handle.running
        r = httpx.get(f"{handle.url}/ping")
        assert r.status_code == 200
    assert not handle.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{handle.url}/ping", timeout=1)
    assert threading.active_count() <= before


def test_port_in_use_raises_and_explicit_port_is_honoured():
    with serve_in_thread(tiny_app()) as first, pytest.raises(OSError):
        serve_in_thread(tiny_app(), port=first.port)
    with serve_in_thread(tiny_app(), port=first.port) as again:  # freed on stop
        assert again.port == first.port and httpx.get(f"{again.url}/ping").status_code == 200


def test_serve_sandboxes_starts_both_with_per_platform_faults():
    faults = {"smartkasa": FaultConfig(p_429=1.0)}
    with serve_sandboxes(faults=faults) as pair:
        assert pair.smartepi.port != pair.smartkasa.port
        kasa = httpx.get(f"{pair.smartkasa.url}/api/v1/rsn/shops")
        assert kasa.status_code == 429 and kasa.json() == {"message": "Too Many Requests"}
        epi = httpx.get(f"{pair.smartepi.url}/v1/job-roles")
        assert epi.status_code == 401  # no key, and no faults configured for SmartEPI
    assert not pair.smartepi.running and not pair.smartkasa.running


def test_cli_serves_both_until_interrupted():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "sync",
        "sandbox",
        "--smartepi-port",
        "0",
        "--smartkasa-port",
        "0",
        "--tenant-key",
        "cli-key-0123456789",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline() for _ in range(3)] if proc.stdout else []
        assert "SmartEPI sandbox:" in lines[0] and "SmartKasa sandbox:" in lines[1], lines
        assert "cli-key" not in "".join(lines)  # keys are never printed
        kasa = lines[1].split()[-1]
        login = httpx.post(
            f"{kasa}/auth/sessions",
            headers={"X-API-KEY": "cli-key-0123456789"},
            json={"session": {"phone_number": "380960000006", "password": "123456789"}},
        )
        assert login.status_code == 201
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
