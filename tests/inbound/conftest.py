"""Fixtures of the inbound tests: a migrated state store, an SQL sink, served apps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from inbound_helpers import ServerThread

from sync.sinks.sql import SqlSink
from sync.state.store import StateStore


@pytest.fixture
def store(state_url: str) -> StateStore:
    return StateStore(state_url)


@pytest.fixture
def sql_sink(store: StateStore, tenant_id: str) -> SqlSink:
    sink = SqlSink(store.url, tenant=tenant_id, store=store)
    sink.ensure_tables()
    return sink


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ServerThread] = []

    def start(app: Any, port: int | None = None) -> ServerThread:
        server = ServerThread(app, port).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
