"""Read an ERP export: one CSV or JSONL file per entity, in one directory.

CSV cells are text (empty cells read as ``None``); JSONL numbers are parsed as
``Decimal``, never float. Files are read-only: ``write_back`` is refused.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sync.errors import ConfigError, SourceError
from sync.sources.base import key_str, try_timestamp
from sync.sources.config import FileEntityConfig, FileSourceConfig


class FileSource:
    def __init__(self, config: FileSourceConfig) -> None:
        self.config = config
        self.directory = Path(config.directory)

    def __repr__(self) -> str:
        return f"FileSource({str(self.directory)!r})"

    def close(self) -> None:
        return None

    def entity_config(self, entity: str) -> FileEntityConfig:
        return self.config.entities.get(entity) or FileEntityConfig(path=f"{entity}.csv")

    def _path(self, entity: str, ec: FileEntityConfig) -> Path:
        path = Path(ec.path)
        return path if path.is_absolute() else self.directory / path

    def _raw(self, entity: str) -> Iterator[dict[str, Any]]:
        ec = self.entity_config(entity)
        path = self._path(entity, ec)
        try:
            handle = path.open(encoding=ec.encoding, newline="" if ec.format == "csv" else None)
        except OSError as exc:
            raise SourceError(f"ERP entity {entity!r}: cannot open {path}: {exc.strerror or exc}") from None
        with handle:
            try:
                if ec.format == "csv":
                    for row in csv.DictReader(handle, delimiter=ec.delimiter):
                        yield {k: (v if v != "" else None) for k, v in row.items() if k is not None}
                else:
                    for lineno, line in enumerate(handle, start=1):
                        if not line.strip():
                            continue
                        try:
                            obj = json.loads(line, parse_float=Decimal)
                        except json.JSONDecodeError as exc:
                            raise SourceError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
                        if not isinstance(obj, dict):
                            raise SourceError(f"{path}:{lineno}: each line must be a JSON object")
                        yield obj
            except UnicodeDecodeError:
                raise SourceError(f"ERP entity {entity!r}: {path} is not {ec.encoding} text") from None
            except csv.Error as exc:
                raise SourceError(f"ERP entity {entity!r}: {path}: {exc}") from None

    def _keyed(
        self, entity: str, rows: Iterable[dict[str, Any]], key: str | None
    ) -> Iterator[dict[str, Any]]:
        for row in rows:
            if key is not None and key in row:
                row[key] = key_str(row[key])
            yield row

    def read(self, entity: str, *, since: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
        ec = self.entity_config(entity)
        rows = self._keyed(entity, self._raw(entity), ec.key)
        if since is None:
            return rows
        if ec.updated_at is None:
            raise ConfigError(f"ERP entity {entity!r} has no updated_at column: incremental read impossible")
        column = ec.updated_at
        threshold = since if since.tzinfo else since.replace(tzinfo=dt.UTC)

        def newer() -> Iterator[dict[str, Any]]:
            for row in rows:
                stamp = try_timestamp(row.get(column))
                if stamp is None or stamp >= threshold:  # unknown age: read it
                    yield row

        return newer()

    def read_keys(
        self, entity: str, keys: Iterable[str], *, key_field: str | None = None
    ) -> Iterator[dict[str, Any]]:
        ec = self.entity_config(entity)
        column = ec.key or key_field
        if column is None:
            raise ConfigError(f"ERP entity {entity!r} has no key column (set erp.entities.{entity}.key)")
        wanted = set(keys)
        return (row for row in self._keyed(entity, self._raw(entity), column) if row.get(column) in wanted)

    def count(self, entity: str) -> int:
        return sum(1 for _ in self._raw(entity))

    def change_column(self, entity: str) -> str | None:
        return self.entity_config(entity).updated_at

    def max_updated_at(self, entity: str) -> dt.datetime | None:
        ec = self.entity_config(entity)
        if ec.updated_at is None:
            return None
        stamps = (try_timestamp(row.get(ec.updated_at)) for row in self._raw(entity))
        return max((s for s in stamps if s is not None), default=None)

    def write_back(self, entity: str, erp_key_field: str, key: str, fields: Mapping[str, Any]) -> int:
        raise ConfigError(f"ERP entity {entity!r} comes from a file export, which is read-only")
