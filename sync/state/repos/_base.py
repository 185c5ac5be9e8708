"""What every repository of the state store shares: the engine, the pinned connection of a
run, short transactions, and the encoding of stored values."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from sync.core.codec import decode_compact, decode_compact_text, encode_compact
from sync.errors import StateError
from sync.state.db import ensure_schema, get_engine

T = TypeVar("T")

# The state store's encoding of values (sync.core.codec, compact): decimals are tagged
# ("\x1fd:1.5") so that a loaded base compares equal to freshly normalized ERP data.
encode_value = encode_compact
decode_value = decode_compact
decode_text = decode_compact_text


def row_id(value: int | None) -> int:
    """The id the database gave a new row (model ids are ``int | None`` only before the insert)."""
    if value is None:
        raise StateError(
            "the state store returned no id for a new row", hint="check the database's sequences"
        )
    return value


def iter_chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (IN lists and batched inserts stay bounded)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class StoreBase:
    """The engine of one state store and the transaction helpers its repositories use."""

    engine: Engine

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        if migrate:
            ensure_schema(url)
        self.engine = get_engine(url)
        self._local = threading.local()

    def session(self) -> Session:
        conn = self._pinned()
        return Session(self.engine if conn is None else conn, expire_on_commit=False)

    # --- one connection for a run -------------------------------------------------

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Serve this thread's store calls from one pooled connection until the block ends.

        Each call stays its own short transaction; what is saved is a pool checkout (with
        its pre-ping round trip) and a reset per call: a change event makes about ten
        calls. Nested blocks share the outer connection. Per thread, never shared."""
        if self._pinned() is not None:
            yield
            return
        with self.engine.connect() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    def _pinned(self) -> Connection | None:
        conn: Connection | None = getattr(self._local, "conn", None)
        return conn

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection for reads: the pinned one (its read transaction ended after), or a pooled one."""
        conn = self._pinned()
        if conn is None:
            with self.engine.connect() as fresh:
                yield fresh
            return
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A connection in a transaction that commits at the end of the block (or rolls back)."""
        conn = self._pinned()
        if conn is None:
            with self.engine.begin() as fresh:
                yield fresh
            return
        if conn.in_transaction():
            conn.rollback()
        with conn.begin():
            yield conn


__all__ = ["StoreBase", "decode_text", "decode_value", "encode_value", "iter_chunks", "row_id"]
