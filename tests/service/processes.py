"""Start and stop real Celery worker and beat processes for the integration tests and bench."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELERY = str(Path(sys.executable).with_name("celery"))


def service_env(config: Path, namespace: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ERPSYNC_CONFIG": str(config),
        "ERPSYNC_NAMESPACE": namespace,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    env.update(extra)
    return env


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            args, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(HERE)
        )
        self._out.close()  # the child holds its own copy of the descriptor

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited ({self.popen.returncode}):\n{self.text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{needle!r} not seen in {self.log}:\n{self.text()[-3000:]}")

    def kill9(self) -> None:
        """kill -9 the whole process group (the worker and its pool): a lost machine."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()
            except ProcessLookupError:
                pass
        self._out.close()


def start_worker(
    env: dict[str, str],
    log: Path,
    *,
    name: str,
    concurrency: int = 2,
    queues: str = "events,reconcile,inbound",
) -> Proc:
    proc = Proc(
        [
            CELERY,
            "-A",
            "worker_app",
            "worker",
            f"--hostname={name}@%h",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            "--pool=prefork",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        log,
    )
    try:
        proc.wait_for(" ready.")
    except Exception:
        proc.stop()
        raise
    return proc


def start_beat(env: dict[str, str], log: Path, schedule: Path) -> Proc:
    proc = Proc([CELERY, "-A", "worker_app", "beat", f"--schedule={schedule}", "--loglevel=INFO"], env, log)
    proc.wait_for("beat: Starting")
    return proc


@contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return bool(predicate())  # type: ignore[operator]
