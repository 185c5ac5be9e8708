"""A real Tryton 8.2 for the tests: a seeded SQLite database built once, ``trytond`` on loopback.

The database is built by ``sync.demo.tryton_seed`` (field guide §4 conventions) once per machine and
seed-script version: it is cached under the temp dir, keyed by the script's hash, and copied for
each server so the cache is never mutated. ``tryton`` is one server for the session (tests that only
read, or that write rows no other test looks at); ``tryton_fresh`` is a server over a fresh copy for
a test that mutates shared data or kills the server. ``tryton_module`` / ``tryton_module_fresh`` are
the same over a database with the ``erpsync_tryton`` module activated.

Tests skip when trytond is not importable (install ``.[tryton]``), except when
``ERPSYNC_TEST_REQUIRE_TRYTON=1`` (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE = os.environ.get("ERPSYNC_TEST_REQUIRE_TRYTON") == "1"
SIZE = os.environ.get("ERPSYNC_TEST_TRYTON_SIZE", "tiny")
BUILD_TIMES: dict[str, float] = {}


def _require_trytond() -> None:
    missing = [m for m in ("trytond", "trytond.modules.sale_point") if _spec(m) is None]
    if not missing:
        return
    message = (
        "trytond 8.2 is not installed in this venv: run `pip install -e '.[dev,tryton]'` to run the "
        "Tryton tests"
    )
    if REQUIRE:
        pytest.fail(message + " (ERPSYNC_TEST_REQUIRE_TRYTON=1)")
    pytest.skip(message)


def _spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None


def module_available() -> bool:
    """The optional erpsync_tryton module is installed (``pip install -e tryton_modules/erpsync_tryton``)."""
    from importlib.metadata import entry_points

    return any(ep.name == "erpsync_tryton" for ep in entry_points(group="trytond.modules"))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cache_root() -> Path:
    return Path(os.environ.get("ERPSYNC_TRYTON_CACHE", Path(tempfile.gettempdir()) / "erpsync-tryton"))


def built_database(with_module: bool) -> Path:
    """The cached seeded database directory (built on first use, by one process at a time)."""
    from sync.demo import tryton_seed

    key = f"{tryton_seed.script_hash()}-{SIZE}" + ("-module" if with_module else "")
    if with_module:
        key += "-" + _module_hash()
    target = _cache_root() / key
    with _locked(_cache_root() / f"{key}.lock"):
        if (target / "seed.json").exists():
            return target
        staging = _cache_root() / f"{key}.building"
        shutil.rmtree(staging, ignore_errors=True)
        started = time.monotonic()
        if with_module:
            base = built_database(False)
            shutil.copytree(base, staging)
            tryton_seed.activate(staging, tryton_seed.DATABASE, ["erpsync_tryton"])
        else:
            tryton_seed.build(staging, SIZE)
        BUILD_TIMES[key] = time.monotonic() - started
        staging.rename(target)
    return target


def _module_hash() -> str:
    import hashlib

    root = Path(__file__).resolve().parents[2] / "tryton_modules" / "erpsync_tryton"
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".cfg", ".xml"}:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _server_over_copy(source: Path, into: Path) -> Any:
    from sync.demo.tryton_seed import TrytonServer

    shutil.copytree(source, into, ignore=shutil.ignore_patterns("trytond.log", "*.lock"))
    return TrytonServer(into).start()


class TrytonHandle:
    """What a test gets: where the server is, how to log in, and how to crash it."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.manifest: dict[str, Any] = server.manifest
        self.database: str = server.database
        self.user = "epi"
        self.password = server.credentials("epi")[1]

    @property
    def url(self) -> str:
        return str(self.server.url)

    @property
    def db_path(self) -> Path:
        return Path(self.server.db_path)

    def credentials(self, login: str) -> tuple[str, str]:
        return tuple(self.server.credentials(login))  # type: ignore[return-value]

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server.restart()

    def start(self) -> None:
        self.server.start()


@pytest.fixture(scope="session")
def tryton_database() -> Path:
    _require_trytond()
    return built_database(False)


@pytest.fixture(scope="session")
def tryton(tryton_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonHandle]:
    server = _server_over_copy(tryton_database, tmp_path_factory.mktemp("tryton") / "db")
    try:
        yield TrytonHandle(server)
    finally:
        server.stop()


@pytest.fixture
def tryton_fresh(tryton_database: Path, tmp_path: Path) -> Iterator[TrytonHandle]:
    server = _server_over_copy(tryton_database, tmp_path / "tryton")
    try:
        yield TrytonHandle(server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tryton_module_database() -> Path:
    _require_trytond()
    if not module_available():
        message = "the erpsync_tryton module is not installed: `pip install -e tryton_modules/erpsync_tryton`"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    return built_database(True)


@pytest.fixture
def tryton_module_fresh(tryton_module_database: Path, tmp_path: Path) -> Iterator[TrytonHandle]:
    server = _server_over_copy(tryton_module_database, tmp_path / "tryton")
    try:
        yield TrytonHandle(server)
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for key, seconds in BUILD_TIMES.items():
        terminalreporter.write_line(f"tryton: built database {key} in {seconds:.1f}s")
