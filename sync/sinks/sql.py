"""SQL sink: one table per stream in the ERP database, upserted by (tenant, platform, remote_id).

Tables are ours (``<prefix><stream>``, created by ``ensure_tables``) or the ERP's own, named
per stream in the configuration; an existing table needs the key columns under a unique
constraint, and only the columns it has are written.

Why a versioned ``CREATE … IF NOT EXISTS`` step and not Alembic: the sink writes into the
*customer's* database, whose schema and migration history belong to the ERP. An Alembic
environment there would add an ``alembic_version`` table that collides with the ERP's own
(same default name) and would claim ownership of a schema we only add a few tables to. A
one-row version table under our prefix records what we created, each step is idempotent,
and a future column is one more numbered step.

Exactly-once: the upsert is the idempotency (a replay rewrites the same values), so the
ERP write and the state-store markers need not share a transaction, and usually cannot (two
databases). Order: filter by markers, upsert and commit the ERP rows, then commit markers.
A crash in between only makes the next delivery upsert the same rows again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

from sync.errors import ConfigError, SinkError, utcnow
from sync.redact import scrub
from sync.sinks.base import (
    KEY_COLUMNS,
    STREAMS,
    ColumnType,
    InboundRow,
    SinkRowError,
    check_stream,
    dedupe,
)
from sync.state.db import get_engine
from sync.state.store import StateStore

log = logging.getLogger(__name__)

# 1: the tables; 2: free-text columns are TEXT (a 300-character device id must fit)
SCHEMA_VERSION = 2
DEFAULT_PREFIX = "erpsync_"


class DecimalColumn(TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC where the database has it, text on SQLite (whose NUMERIC is a float)."""

    impl = Numeric(20, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        # SQLite has no exact decimal: text keeps every digit.
        column: TypeEngine[Any] = String(40) if dialect.name == "sqlite" else Numeric(20, 6)
        described: TypeEngine[Any] = dialect.type_descriptor(column)
        return described

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else Decimal(str(value))

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(str(value))


_SQL_TYPES: dict[ColumnType, Any] = {
    "str": lambda: Text(),  # free text from the platforms: no length to overflow
    "int": lambda: Integer(),
    "dec": lambda: DecimalColumn(),
    "bool": lambda: Boolean(),
}


def _own_table(md: MetaData, name: str, stream: str) -> Table:
    columns = [Column(col, _SQL_TYPES[kind]()) for col, kind in STREAMS[stream].items()]
    return Table(
        name,
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("tenant", String(64), nullable=False),
        Column("platform", String(16), nullable=False),
        Column("remote_id", String(255), nullable=False),
        *columns,
        Column("content_hash", String(64), nullable=False),
        Column("payload", Text, nullable=False),
        Column("synced_at", DateTime(timezone=False), nullable=False),
        UniqueConstraint(*KEY_COLUMNS, name=f"uq_{name}_remote"),
    )


def _reason(exc: SQLAlchemyError) -> str:
    """The database's own message (parameters are hidden by the engine: no values leak)."""
    orig = getattr(exc, "orig", None) or exc
    return scrub(str(orig)).strip().splitlines()[0][:300] if str(orig).strip() else type(orig).__name__


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")


class SqlSink:
    """Inbound records of one tenant into SQL tables (SQLite, PostgreSQL; others by update-then-insert)."""

    def __init__(
        self,
        url: str,
        *,
        tenant: str,
        store: StateStore,
        prefix: str = DEFAULT_PREFIX,
        tables: Mapping[str, str] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.tenant = tenant
        self.store = store
        self.prefix = prefix
        self.engine = engine or get_engine(url, private=False)  # the ERP's file: not ours to chmod
        self.existing = dict(tables or {})
        for stream in self.existing:
            check_stream(stream)
        self._md = MetaData()
        self._version = Table(
            f"{prefix}sink_schema",
            self._md,
            Column("component", String(32), primary_key=True),
            Column("version", Integer, nullable=False),
        )
        self._own = {s: _own_table(self._md, f"{prefix}{s}", s) for s in STREAMS if s not in self.existing}
        self._tables: dict[str, Table] = dict(self._own)
        self._ready = False

    def __repr__(self) -> str:
        return (
            f"SqlSink(tenant={self.tenant!r}, url={self.engine.url.render_as_string(hide_password=True)!r})"
        )

    def table_name(self, stream: str) -> str:
        return self.existing.get(stream) or f"{self.prefix}{stream}"

    # --- schema --------------------------------------------------------------------

    def ensure_tables(self) -> int:
        """Create our tables (idempotent), record the schema version, check configured tables."""
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    self._version.create(conn, checkfirst=True)
                    current = conn.execute(
                        select(self._version.c.version).where(self._version.c.component == "tables")
                    ).scalar_one_or_none()
                    if current is None or current < SCHEMA_VERSION or not self._all_own_exist(conn):
                        self._md.create_all(conn, tables=list(self._own.values()), checkfirst=True)
                        if current is not None and current < 2:
                            self._widen_text(conn)
                        if current is None:
                            conn.execute(
                                self._version.insert().values(component="tables", version=SCHEMA_VERSION)
                            )
                        else:
                            conn.execute(
                                update(self._version)
                                .where(self._version.c.component == "tables")
                                .values(version=SCHEMA_VERSION)
                            )
                break
            except (IntegrityError, OperationalError, ProgrammingError) as exc:
                # two processes creating the tables at once: the loser retries and finds them
                if attempt:
                    raise SinkError(f"cannot create the sink tables: {scrub(str(exc.orig))}") from None
        self._reflect_existing()
        self._ready = True
        return SCHEMA_VERSION

    def _widen_text(self, conn: Connection) -> None:
        """Step 2: VARCHAR(255) free-text columns of version-1 tables become TEXT.

        SQLite ignores declared lengths, so only PostgreSQL needs the change; other
        databases keep what they have and a too-long value fails that row alone."""
        if conn.dialect.name != "postgresql":
            return
        for stream, table in self._own.items():
            for col, kind in STREAMS[stream].items():
                if kind == "str":
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ALTER COLUMN "{col}" TYPE TEXT')

    def _all_own_exist(self, conn: Connection) -> bool:
        names = set(inspect(conn).get_table_names())
        return all(t.name in names for t in self._own.values())

    def _reflect_existing(self) -> None:
        for stream, name in self.existing.items():
            try:
                table = Table(name, MetaData(), autoload_with=self.engine)
            except SQLAlchemyError:
                raise ConfigError(
                    f"sink.tables.{stream}: table {name!r} does not exist in the sink database"
                ) from None
            missing = [c for c in (*KEY_COLUMNS, "content_hash") if c not in table.c]
            if missing:
                raise ConfigError(
                    f"sink.tables.{stream}: table {name!r} lacks column(s) {', '.join(missing)}"
                )
            if not self._has_unique_key(name):
                raise ConfigError(
                    f"sink.tables.{stream}: table {name!r} needs a unique constraint on"
                    " (tenant, platform, remote_id)"
                )
            self._tables[stream] = table

    def _has_unique_key(self, name: str) -> bool:
        insp = inspect(self.engine)
        wanted: set[str | None] = set(KEY_COLUMNS)
        uniques: list[set[str | None]] = [set(u["column_names"]) for u in insp.get_unique_constraints(name)]
        uniques += [set(i["column_names"]) for i in insp.get_indexes(name) if i.get("unique")]
        pk = insp.get_pk_constraint(name).get("constrained_columns") or []
        return any(u == wanted for u in uniques) or set(pk) == wanted

    # --- writes --------------------------------------------------------------------

    def write(self, stream: str, records: Sequence[InboundRow]) -> int:
        return self.write_many({stream: records})

    def write_many(self, batches: Mapping[str, Sequence[InboundRow]]) -> int:
        if not self._ready:
            self.ensure_tables()
        for stream in batches:
            check_stream(stream)
        todo: dict[str, list[InboundRow]] = {}
        for stream, rows in batches.items():
            fresh, _ = self.store.inbound_unwritten(self.tenant, stream, dedupe(rows))
            if fresh:
                todo[stream] = fresh
        if not todo:
            return 0
        try:
            with self.engine.begin() as conn:
                for stream, rows in todo.items():
                    self._upsert(conn, self._tables[stream], rows)
        except (DataError, IntegrityError) as exc:  # the rows' fault: a value, a constraint
            raise SinkRowError(f"the ERP refused the row: {_reason(exc)}") from None
        except (ValueError, TypeError) as exc:  # a value the driver cannot bind or encode
            raise SinkRowError(
                f"the ERP refused the row: {type(exc).__name__}: {scrub(str(exc))[:300]}"
            ) from None
        except StatementError as exc:  # bind processing failed on a value, or the database is away
            if isinstance(exc.orig, ValueError | TypeError):
                raise SinkRowError(f"the ERP refused the row: {_reason(exc)}") from None
            raise SinkError(f"sink write failed: {_reason(exc)}") from None
        except SQLAlchemyError as exc:
            raise SinkError(f"sink write failed: {_reason(exc)}") from None
        self._mark(todo)
        return sum(len(rows) for rows in todo.values())

    def _mark(self, todo: Mapping[str, Sequence[InboundRow]]) -> None:
        if not self.store.inbound_mark_delivered(self.tenant, todo):
            raise SinkError("could not record the delivered rows in the state store")

    def _payload(self, row: InboundRow) -> str:
        return json.dumps(
            row.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_value
        )

    def _upsert(self, conn: Connection, table: Table, rows: Sequence[InboundRow]) -> None:
        now = utcnow().replace(tzinfo=None)
        cols = set(table.c.keys())
        sqlite_db = conn.dialect.name == "sqlite"

        def plain(name: str, value: Any) -> Any:
            # sqlite3 cannot bind a Decimal: an ERP table's own NUMERIC/TEXT column gets text
            if sqlite_db and isinstance(value, Decimal) and not isinstance(table.c[name].type, DecimalColumn):
                return str(value)
            return value

        values = []
        for row in rows:
            record: dict[str, Any] = {
                "tenant": self.tenant,
                "platform": row.platform,
                "remote_id": row.remote_id,
            }
            record.update({k: plain(k, v) for k, v in row.fields.items() if k in cols})
            record["content_hash"] = row.chash
            if "payload" in cols:
                record["payload"] = self._payload(row)
            if "synced_at" in cols:
                record["synced_at"] = now
            values.append(record)
        # every dict needs the same keys for executemany
        keys = sorted({k for v in values for k in v})
        values = [{k: v.get(k) for k in keys} for v in values]
        updatable = [k for k in keys if k not in KEY_COLUMNS]
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            ins = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
            stmt = ins.on_conflict_do_update(
                index_elements=list(KEY_COLUMNS), set_={k: ins.excluded[k] for k in updatable}
            )
            for i in range(0, len(values), 500):
                conn.execute(stmt, values[i : i + 500])
            return
        for record in values:  # generic SQL: update, else insert
            where = [table.c[k] == record[k] for k in KEY_COLUMNS]
            done = conn.execute(
                update(table).where(*where).values({k: record[k] for k in updatable})
            ).rowcount
            if not done:
                conn.execute(table.insert().values(record))

    def rows(self, stream: str) -> list[dict[str, Any]]:
        """Every row of one stream for this tenant (tests, ``erpsync status``)."""
        if not self._ready:
            self.ensure_tables()
        table = self._tables[stream]
        with self.engine.connect() as conn:
            result = conn.execute(
                select(table).where(table.c.tenant == self.tenant).order_by(table.c.remote_id)
            )
            return [dict(r._mapping) for r in result]

    def close(self) -> None:
        """Nothing to release: the engine is shared per URL (``sync.state.db.get_engine``)."""
