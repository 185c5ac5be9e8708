"""Read an ERP from any SQLAlchemy database: per entity a table or a query.

Rows stream through server-side cursors (``stream_results`` + ``yield_per``), so a
million-row table never sits in memory. Incremental reads use the entity's
``updated_at`` column and are inclusive (``>= since``): re-reading the boundary rows is
harmless, missing a row written in the same second is not.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync.errors import ConfigError, SourceError
from sync.redact import register_secret, scrub
from sync.sources.base import key_str, try_timestamp
from sync.sources.config import SqlEntityConfig, SqlSourceConfig

_IN_CHUNK = 500
_EPOCH_TEXT = re.compile(r"[0-9]{9,}(?:\.[0-9]*)?")  # epoch seconds as text (see parse_timestamp)
# An ERP key read from an integer column, as ``key_str`` writes it: ASCII digits, no
# leading zero or plus. ``str.isdigit`` also accepts "²" (int() then raises) and other
# scripts' digits ("١٢" is int 12), which would read another row than the key names.
_INT_KEY = re.compile(r"-?(?:0|[1-9][0-9]*)")


class _EpochText(float):
    """Epoch seconds compared with a text column that holds them."""


def int_key(key: str) -> int | None:
    """The integer an ERP key names in an integer key column, or None if it names no row."""
    return int(key) if _INT_KEY.fullmatch(key) else None


class SqlSource:
    """``Source`` over SQLAlchemy; the engine (and its pool) is created on first use."""

    def __init__(self, config: SqlSourceConfig) -> None:
        self.config = config
        self._engine: Engine | None = None
        self._int_keys: dict[str, bool] = {}
        url = sa.engine.make_url(config.url.get_secret_value())
        register_secret(url.password)

    def __repr__(self) -> str:
        url = sa.engine.make_url(self.config.url.get_secret_value())
        return f"SqlSource({url.render_as_string(hide_password=True)})"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.config.url.get_secret_value())
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # --- helpers ---------------------------------------------------------------------

    def entity_config(self, entity: str) -> SqlEntityConfig:
        return self.config.entities.get(entity) or SqlEntityConfig(table=entity)

    def _q(self, name: str) -> str:
        prep = self.engine.dialect.identifier_preparer
        return ".".join(prep.quote(part) for part in name.split("."))

    def _from(self, entity: str, ec: SqlEntityConfig) -> str:
        if ec.query is not None:
            return f"({ec.query}) AS erp_q"
        return self._q(ec.table or entity)

    def _fail(self, entity: str, exc: SQLAlchemyError) -> SourceError:
        orig = getattr(exc, "orig", None) or exc
        detail = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        return SourceError(scrub(f"ERP entity {entity!r}: {type(orig).__name__}: {detail}"))

    def _since_param(self, entity: str, ec: SqlEntityConfig, column: str, since: dt.datetime) -> Any:
        """``since`` in the form the change column stores, so the database compares like
        with like: epoch seconds for a numeric column, ISO text (with the ERP's own ``T`` or
        space) for a text column, a UTC datetime for a SQL datetime column.

        The form is read from one stored value (SQLite columns have no fixed type, and a
        query's columns none that can be inspected); an empty table falls back to the
        dialect's usual form."""
        stamp = since.astimezone(dt.UTC) if since.tzinfo else since.replace(tzinfo=dt.UTC)
        col: sa.ColumnClause[Any] = sa.literal_column(self._q(column))
        first = sa.select(col).select_from(sa.text(self._from(entity, ec))).where(col.is_not(None)).limit(1)
        try:  # the dialect spells the limit (LIMIT, TOP, FETCH FIRST)
            with self.engine.connect() as conn:
                sample = conn.execute(first).scalar()
        except SQLAlchemyError as exc:
            raise self._fail(entity, exc) from None
        if isinstance(sample, int | float | Decimal) and not isinstance(sample, bool):
            return stamp.timestamp()
        if isinstance(sample, str) and not _EPOCH_TEXT.fullmatch(sample.strip()):
            sep = "T" if sample.strip()[10:11] == "T" else " "
            return stamp.replace(tzinfo=None).isoformat(sep=sep)
        if isinstance(sample, str):  # epoch seconds kept as text: compare as numbers
            return _EpochText(stamp.timestamp())
        if sample is None and self.engine.dialect.name == "sqlite":
            return stamp.replace(tzinfo=None).isoformat(sep=" ")
        if isinstance(sample, dt.datetime) and sample.tzinfo is None:
            return stamp.replace(tzinfo=None)  # a naive column holds UTC (parse_timestamp)
        return stamp

    def _rows(
        self, entity: str, sql: str, params: Mapping[str, Any], key: str | None
    ) -> Iterator[dict[str, Any]]:
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(
                    stream_results=True, yield_per=self.config.batch_size
                ).execute(sa.text(sql), dict(params))
                columns = tuple(result.keys())
                if len(set(columns)) != len(columns):  # ambiguous names: let RowMapping say so
                    for mapping in result.mappings():
                        out = dict(mapping)
                        if key is not None and key in out:
                            out[key] = key_str(out[key])
                        yield out
                    return
                fix_key = key is not None and key in columns
                # Whole batches (fetchmany) and one dict per row, built straight from the tuple.
                for part in result.partitions(self.config.batch_size):
                    for row in part:
                        out = dict(zip(columns, row, strict=True))
                        if fix_key:
                            out[key] = key_str(out[key])
                        yield out
        except SQLAlchemyError as exc:
            raise self._fail(entity, exc) from None

    # --- Source ----------------------------------------------------------------------

    def read(self, entity: str, *, since: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
        ec = self.entity_config(entity)
        sql = f"SELECT * FROM {self._from(entity, ec)}"
        params: dict[str, Any] = {}
        if since is not None:
            if ec.updated_at is None:
                raise ConfigError(
                    f"ERP entity {entity!r} has no updated_at column: incremental read impossible",
                    hint=f"set erp.entities.{entity}.updated_at to the column that dates a row's last change",
                )
            param = self._since_param(entity, ec, ec.updated_at, since)
            target = self._q(ec.updated_at)
            if isinstance(param, _EpochText):  # compare numbers, not text ("999…" > "1000…")
                param = float(param)
                target = f"CAST({target} AS DOUBLE PRECISION)"
            sql += f" WHERE {target} >= :since"
            params["since"] = param
        return self._rows(entity, sql, params, ec.key)

    def change_column(self, entity: str) -> str | None:
        return self.entity_config(entity).updated_at

    def _key_column(self, entity: str, ec: SqlEntityConfig, key_field: str | None) -> str:
        column = ec.key or key_field
        if column is None:
            raise ConfigError(f"ERP entity {entity!r} has no key column (set erp.entities.{entity}.key)")
        return column

    def _keys_are_int(self, entity: str, ec: SqlEntityConfig, column: str) -> bool:
        if ec.query is not None:
            return False
        table = ec.table or entity
        if table not in self._int_keys:
            schema, _, name = table.rpartition(".")
            try:
                columns = sa.inspect(self.engine).get_columns(name, schema=schema or None)
            except SQLAlchemyError as exc:
                raise self._fail(entity, exc) from None
            types = {c["name"]: c["type"] for c in columns}
            self._int_keys[table] = isinstance(types.get(column), sa.Integer)
        return self._int_keys[table]

    def read_keys(
        self, entity: str, keys: Iterable[str], *, key_field: str | None = None
    ) -> Iterator[dict[str, Any]]:
        ec = self.entity_config(entity)
        column = self._key_column(entity, ec, key_field)
        wanted = sorted({k for k in keys if k is not None})
        if self._keys_are_int(entity, ec, column):
            values: list[Any] = [n for n in map(int_key, wanted) if n is not None]
            target = self._q(column)
        else:
            values = wanted
            target = f"CAST({self._q(column)} AS VARCHAR(255))" if ec.query is not None else self._q(column)
        sql = f"SELECT * FROM {self._from(entity, ec)} WHERE {target} IN :keys"
        stmt_keys: sa.BindParameter[Any] = sa.bindparam("keys", expanding=True)

        def rows() -> Iterator[dict[str, Any]]:
            for start in range(0, len(values), _IN_CHUNK):
                chunk = values[start : start + _IN_CHUNK]
                try:
                    with self.engine.connect() as conn:
                        result = conn.execute(sa.text(sql).bindparams(stmt_keys), {"keys": chunk})
                        for row in result.mappings():
                            out = dict(row)
                            out[column] = key_str(out.get(column))
                            yield out
                except SQLAlchemyError as exc:
                    raise self._fail(entity, exc) from None

        return rows()

    def _scalar(self, entity: str, sql: str) -> Any:
        try:
            with self.engine.connect() as conn:
                return conn.execute(sa.text(sql)).scalar()
        except SQLAlchemyError as exc:
            raise self._fail(entity, exc) from None

    def count(self, entity: str) -> int:
        ec = self.entity_config(entity)
        return int(self._scalar(entity, f"SELECT COUNT(*) FROM {self._from(entity, ec)}") or 0)

    def max_updated_at(self, entity: str) -> dt.datetime | None:
        ec = self.entity_config(entity)
        if ec.updated_at is None:
            return None
        value = self._scalar(entity, f"SELECT MAX({self._q(ec.updated_at)}) FROM {self._from(entity, ec)}")
        return try_timestamp(value)

    def write_back(self, entity: str, erp_key_field: str, key: str, fields: Mapping[str, Any]) -> int:
        ec = self.entity_config(entity)
        if not ec.writable or ec.query is not None:
            raise ConfigError(
                f"ERP entity {entity!r} is not writable (set erp.entities.{entity}.writable: true on a table)"
            )
        if not fields:
            return 0
        sqlite = self.engine.dialect.name == "sqlite"
        assignments, params = [], {}
        for i, (column, value) in enumerate(fields.items()):
            assignments.append(f"{self._q(column)} = :p{i}")
            params[f"p{i}"] = str(value) if sqlite and isinstance(value, Decimal) else value
        column = ec.key or erp_key_field
        if self._keys_are_int(entity, ec, column):
            if int_key(key) is None:
                return 0  # no integer key is spelled this way: no row to update
            params["key"] = int_key(key)
        else:
            params["key"] = key
        table = self._q(ec.table or entity)
        sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {self._q(column)} = :key"
        try:
            with self.engine.begin() as conn:
                return int(conn.execute(sa.text(sql), params).rowcount or 0)
        except SQLAlchemyError as exc:
            raise self._fail(entity, exc) from None
