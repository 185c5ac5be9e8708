"""Engine, sessions and migrations of the state store.

SQLite is the embedded default (WAL so readers never block the writer, a busy timeout so
concurrent workers wait instead of failing, foreign keys on); PostgreSQL is chosen by URL.

The SQLite file holds session tokens (encrypted), payloads and the inbox, so it is created
owner-only (0600; SQLite gives its ``-wal``/``-shm`` files the same mode) and an existing
group- or world-readable file is tightened. ``synchronous=FULL``: the webhook route answers
2xx once an event is committed to the inbox, and under WAL ``NORMAL`` may lose the last
commits on a power failure (not on a process crash); an acknowledged event must survive
both, so every commit waits for its WAL fsync.
The schema is owned by Alembic (``erpsync db upgrade``); ``ensure_schema`` runs the same
migrations for embedded uses (demo, tests), never ``create_all``, so both paths agree.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session, create_engine

from sync.errors import StateError
from sync.redact import scrub

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def private_file(path: Path) -> None:
    """Create ``path`` owner-only (0600), or tighten it (and its SQLite side files) if others can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        _tighten(file)


def _tighten(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        path.chmod(mode & 0o700)
    except OSError as exc:  # not our file: say so, do not fail the start
        log.warning("%s is readable by other users (%o) and cannot be tightened: %s", path, mode, exc)
        return
    log.info("tightened %s from %o to %o (it holds session tokens and payloads)", path, mode, mode & 0o700)


def make_engine(url: str, *, private: bool = True) -> Engine:
    """A new engine for ``url`` (see ``_make_engine``); a URL no dialect takes is a StateError.

    ``private``: a SQLite file is created owner-only or tightened (the state store holds
    session tokens). False for a database erpsync does not own (the ERP's, as a sink): its
    permissions are the ERP's business."""
    try:
        return _make_engine(url, private)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        why = "its driver is not installed" if isinstance(exc, ImportError) else "not a database URL"
        raise StateError(
            f"state_url {scrub(scheme)!r}: {why}",
            hint="use e.g. sqlite:///erpsync-state.db or postgresql+psycopg://USER@HOST:5432/DB",
        ) from None


def _make_engine(url: str, private: bool = True) -> Engine:
    """A new engine for ``url`` with the dialect settings above.

    ``hide_parameters``: a database error must not print the values it was writing, and
    some are secrets (SmartKasa session tokens in ``platform_tokens``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if private and database and database != ":memory:" and not database.startswith("file:"):
            private_file(Path(database))
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True)


def get_engine(url: str, *, private: bool = True) -> Engine:
    """One shared engine per URL and process (``private``: see ``make_engine``)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url, private=private)
        return engine


def dispose_engines() -> None:
    """Forget pooled connections (after fork, between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(url_or_engine: str | Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    engine = get_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``erpsync db upgrade``)."""
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise StateError(f"cannot migrate the state store: {scrub(str(exc.orig))}") from None


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def ensure_schema(url: str) -> None:
    """Migrate when behind; cheap when already at head."""
    try:
        if current_revision(url) == head_revision():
            return
    except OperationalError as exc:
        raise StateError(f"cannot open the state store: {scrub(str(exc.orig))}") from None
    upgrade(url)
