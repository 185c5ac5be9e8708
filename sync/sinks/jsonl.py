"""JSONL sink: one append-only file per stream, one record per line, each version written once.

Exactly-once without a database on the ERP side: the state store records, per file, the
byte offset up to which lines are committed (a ``Cursor`` row keyed by the file, not the
tenant, so two tenants pointed at one folder cannot fight over it), together with the
``InboundRecord`` markers of the lines. One write is::

    lock the folder → read markers, skip what is written → cut any uncommitted tail
    → append + fsync → markers and new offset in one state transaction → unlock

A crash after appending but before that commit leaves a tail the state store does not
know; it is cut before the next append (and when the sink opens), and its records, still
unmarked, are written again. So the file only ever grows by committed lines, and a replay
of the same records appends nothing. The folder lock (``flock``) serialises writers on one
host; readers never need it, but should read only whole lines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel import Session

from sync.errors import SinkError, utcnow
from sync.sinks.base import InboundRow, SinkRowError, check_stream, dedupe
from sync.state.store import StateStore

log = logging.getLogger(__name__)

_OFFSET_TENANT = "_sink"
_OFFSET_PLATFORM = "jsonl"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__}")


class JsonlSink:
    """Inbound records of one tenant as JSON lines under ``directory/<stream>.jsonl``."""

    def __init__(self, directory: str | Path, *, tenant: str, store: StateStore) -> None:
        self.directory = Path(directory)
        self.tenant = tenant
        self.store = store
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create the sink folder {self.directory}: {exc.strerror}") from None
        self.recover()

    def __repr__(self) -> str:
        return f"JsonlSink(tenant={self.tenant!r}, directory={str(self.directory)!r})"

    def path(self, stream: str) -> Path:
        return self.directory / f"{stream}.jsonl"

    def _key(self, stream: str) -> str:
        return hashlib.sha256(str(self.path(stream).resolve()).encode()).hexdigest()[:48]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".erpsync.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _committed(self, session: Session, stream: str) -> int | None:
        """The committed length of the stream's file (its offset cursor), if it has one."""
        value = self.store.get_cursor(_OFFSET_TENANT, _OFFSET_PLATFORM, self._key(stream), session=session)
        return None if value is None else int(value)

    def _cut_tail(self, stream: str, committed: int) -> None:
        path = self.path(stream)
        size = path.stat().st_size if path.exists() else 0
        if size > committed:
            log.warning(
                "%s: cutting %d uncommitted bytes left by an interrupted write", path, size - committed
            )
            with open(path, "r+b") as fh:
                fh.truncate(committed)
                os.fsync(fh.fileno())

    def recover(self) -> None:
        """Cut uncommitted tails of every known stream file (after a crash)."""
        with self._locked(), self.store.transaction() as s:
            for path in self.directory.glob("*.jsonl"):
                committed = self._committed(s, path.stem)
                if committed is not None:
                    self._cut_tail(path.stem, committed)

    def write(self, stream: str, records: Sequence[InboundRow]) -> int:
        return self.write_many({stream: records})

    def write_many(self, batches: Mapping[str, Sequence[InboundRow]]) -> int:
        for stream in batches:
            check_stream(stream)
        written = 0
        with self._locked(), self.store.transaction() as s:
            todo: dict[str, tuple[list[InboundRow], dict[str, Any]]] = {}
            for stream, rows in batches.items():
                fresh, found = self.store.inbound_unwritten(self.tenant, stream, dedupe(rows), session=s)
                if fresh:
                    todo[stream] = (fresh, found)
            if not todo:
                return 0
            now = utcnow().isoformat()
            for stream, (rows, found) in todo.items():
                offset = self._append(s, stream, rows, now)
                # the new offset and the markers commit together (``transaction`` ends the block)
                self.store.set_cursor(
                    _OFFSET_TENANT, _OFFSET_PLATFORM, self._key(stream), str(offset), session=s
                )
                self.store.inbound_mark(self.tenant, stream, rows, found, session=s)
                written += len(rows)
        return written

    def _append(self, session: Session, stream: str, rows: Sequence[InboundRow], now: str) -> int:
        path = self.path(stream)
        committed = self._committed(session, stream) or 0
        size = path.stat().st_size if path.exists() else 0
        if size < committed:
            log.warning("%s is shorter than its committed length (rotated?); appending at its end", path)
        else:
            self._cut_tail(stream, committed)
        lines = []
        for row in rows:
            record: dict[str, Any] = {
                "tenant": self.tenant,
                "platform": row.platform,
                "stream": stream,
                "remote_id": row.remote_id,
            }
            record.update(row.fields)
            record.update(content_hash=row.chash, synced_at=now, payload=row.payload)
            try:
                lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_default))
            except (TypeError, ValueError) as exc:
                raise SinkRowError(f"cannot write {stream} {row.remote_id[:80]!r} as JSON: {exc}") from None
        try:
            data = ("\n".join(lines) + "\n").encode()
        except UnicodeEncodeError as exc:  # a lone surrogate: not UTF-8 text
            raise SinkRowError(f"cannot encode {stream} rows as UTF-8: {exc.reason}") from None
        try:
            with open(path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                return fh.tell()
        except OSError as exc:
            raise SinkError(f"cannot append to {path}: {exc.strerror}") from None

    def rows(self, stream: str) -> list[dict[str, Any]]:
        """Every line of one stream written for this tenant (tests and status)."""
        path = self.path(stream)
        if not path.exists():
            return []
        with open(path, encoding="utf-8") as fh:
            out = [json.loads(line) for line in fh if line.strip()]
        return [r for r in out if r.get("tenant") == self.tenant]

    def close(self) -> None:
        """Nothing stays open between writes."""
