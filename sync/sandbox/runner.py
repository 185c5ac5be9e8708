"""Run a sandbox app on a real socket in a background thread (tests, the CLI, demos).

``serve_in_thread`` binds the socket itself (so ``port=0`` yields a free port known before the first
request), runs ``uvicorn.Server`` in a daemon thread without signal handlers (uvicorn installs them only
on the main thread), and returns once the server accepts connections. ``stop()`` asks for a graceful
exit and forces it if in-flight requests do not finish within the timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn

from sync.sandbox.faults import FaultConfig

START_TIMEOUT_S = 10.0


class ServerHandle:
    """A running server: ``url``, ``port``, ``stop()``; a context manager that stops on exit."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerHandle(url={self.url!r}, running={self.running})"


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Start ``app`` on ``host:port`` (0 = any free port) and wait until it accepts connections."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"sandbox-{host}:{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(1.0)
            raise RuntimeError(f"sandbox server on {host}:{bound} did not start") from (
                errors[0] if errors else None
            )
        time.sleep(0.005)
    return ServerHandle(server, thread, host, bound)


@dataclass
class SandboxPair:
    """Both platform sandboxes, started together; stops both on exit."""

    smartepi: ServerHandle
    smartkasa: ServerHandle

    def stop(self) -> None:
        self.smartkasa.stop()
        self.smartepi.stop()

    def __enter__(self) -> SandboxPair:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_sandboxes(
    smartepi_port: int = 0,
    smartkasa_port: int = 0,
    faults: dict[str, FaultConfig] | None = None,
    *,
    host: str = "127.0.0.1",
    smartepi_config: Any = None,
    smartkasa_config: Any = None,
) -> SandboxPair:
    """Start the SmartEPI and SmartKasa sandboxes (faults keyed by platform name)."""
    from sync.sandbox.smartepi.app import create_app as create_smartepi
    from sync.sandbox.smartkasa.app import create_app as create_smartkasa

    faults = faults or {}
    epi = serve_in_thread(create_smartepi(smartepi_config, faults.get("smartepi")), host, smartepi_port)
    try:
        kasa = serve_in_thread(
            create_smartkasa(smartkasa_config, faults.get("smartkasa")), host, smartkasa_port
        )
    except BaseException:
        epi.stop()
        raise
    return SandboxPair(smartepi=epi, smartkasa=kasa)
