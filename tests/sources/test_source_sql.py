"""SqlSource against a real SQLite database: tables, queries, incremental reads, write-back."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from sync.errors import ConfigError, SourceError
from sync.sources import Source, SourceConfig, SqlSourceConfig, open_source
from sync.sources.sql import SqlSource


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "erp.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE funcionarios (matricula INTEGER PRIMARY KEY, nome TEXT, email TEXT, updated_at TEXT);
        CREATE TABLE produtos (codigo TEXT PRIMARY KEY, nome TEXT, preco TEXT, updated_at TEXT);
        """
    )
    conn.executemany(
        "INSERT INTO funcionarios VALUES (?, ?, ?, ?)",
        [(i, f"Pessoa {i}", f"p{i}@acme.com", f"2024-01-{i:02d} 10:00:00") for i in range(1, 11)],
    )
    conn.executemany(
        "INSERT INTO produtos VALUES (?, ?, ?, ?)", [("P1", "Luva", "12.50", "2024-02-01 00:00:00")]
    )
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def source(url: str, **entities: dict[str, object]) -> SqlSource:
    config = SqlSourceConfig.model_validate({"url": url, "entities": entities, "batch_size": 3})
    src = open_source(config)
    assert isinstance(src, SqlSource) and isinstance(src, Source)
    return src


def test_read_table_streams_rows_with_text_keys(db: str) -> None:
    src = source(db, employees={"table": "funcionarios", "key": "matricula", "updated_at": "updated_at"})
    rows = src.read("employees")
    first = next(rows)
    assert first == {
        "matricula": "1",
        "nome": "Pessoa 1",
        "email": "p1@acme.com",
        "updated_at": "2024-01-01 10:00:00",
    }
    assert len(list(rows)) == 9
    assert src.count("employees") == 10
    src.close()


def test_unlisted_entity_defaults_to_table_of_same_name(db: str) -> None:
    src = source(db)
    assert [r["codigo"] for r in src.read("produtos")] == ["P1"]
    assert src.max_updated_at("produtos") is None  # no updated_at column configured


def test_incremental_read_is_inclusive_and_max_updated_at(db: str) -> None:
    src = source(db, employees={"table": "funcionarios", "key": "matricula", "updated_at": "updated_at"})
    since = dt.datetime(2024, 1, 8, 10, 0, tzinfo=dt.UTC)
    assert [r["matricula"] for r in src.read("employees", since=since)] == ["8", "9", "10"]
    # an aware timestamp in another zone means the same instant
    local = since.astimezone(dt.timezone(dt.timedelta(hours=-3)))
    assert [r["matricula"] for r in src.read("employees", since=local)] == ["8", "9", "10"]
    assert src.max_updated_at("employees") == dt.datetime(2024, 1, 10, 10, 0, tzinfo=dt.UTC)
    with pytest.raises(ConfigError):
        src.read("produtos", since=since)


def test_query_entity(db: str) -> None:
    query = "SELECT matricula AS id, upper(nome) AS nome, updated_at FROM funcionarios WHERE matricula <= 3"
    src = source(db, staff={"query": query, "key": "id", "updated_at": "updated_at"})
    assert [r["nome"] for r in src.read("staff")] == ["PESSOA 1", "PESSOA 2", "PESSOA 3"]
    assert src.count("staff") == 3
    assert [r["id"] for r in src.read_keys("staff", ["2", "3", "7"])] == ["2", "3"]
    with pytest.raises(ConfigError):
        src.write_back("staff", "id", "2", {"nome": "x"})


def test_read_keys_with_integer_column_and_many_keys(db: str) -> None:
    src = source(db, employees={"table": "funcionarios", "key": "matricula"})
    keys = [str(i) for i in range(0, 1200)] + ["abc"]
    assert sorted(int(r["matricula"]) for r in src.read_keys("employees", keys)) == list(range(1, 11))
    assert next(source(db).read_keys("produtos", ["P1"], key_field="codigo"))["nome"] == "Luva"
    with pytest.raises(ConfigError):
        list(source(db).read_keys("produtos", ["P1"]))


def test_write_back_only_where_writable(db: str) -> None:
    src = source(
        db,
        employees={"table": "funcionarios", "key": "matricula", "writable": True},
        products={"table": "produtos", "key": "codigo", "writable": True},
    )
    assert src.write_back("employees", "matricula", "3", {"email": "novo@acme.com"}) == 1
    assert src.write_back("employees", "matricula", "99", {"email": "x@acme.com"}) == 0
    assert src.write_back("products", "codigo", "P1", {"preco": Decimal("13.9")}) == 1
    assert next(src.read_keys("employees", ["3"]))["email"] == "novo@acme.com"
    assert next(src.read_keys("products", ["P1"]))["preco"] == "13.9"
    with pytest.raises(ConfigError):
        source(db).write_back("produtos", "codigo", "P1", {"nome": "x"})


def test_errors_are_source_errors_without_the_password(tmp_path: Path) -> None:
    src = source(f"sqlite:///{tmp_path}/erp.db")
    with pytest.raises(SourceError) as exc:
        list(src.read("missing_table"))
    assert "missing_table" in str(exc.value)
    pg = SqlSourceConfig(url="postgresql://erp:hunter22@localhost:1/erp")
    assert "hunter22" not in repr(pg) and "hunter22" not in repr(open_source(pg))


def test_config_union_and_validation() -> None:
    adapter: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfig)
    sql = adapter.validate_python({"kind": "sql", "url": "sqlite://", "entities": {"e": {"table": "t"}}})
    assert isinstance(sql, SqlSourceConfig)
    for bad in (
        {"kind": "sql", "url": "not a url"},
        {"kind": "sql", "url": "sqlite://", "entities": {"e": {"table": "t", "query": "select 1"}}},
        {"kind": "sql", "url": "sqlite://", "entities": {"e": {"query": "select 1", "writable": True}}},
        {"kind": "ftp", "url": "x"},
        {"kind": "files", "directory": ".", "entities": {"e": {"path": "e.csv", "encoding": "klingon"}}},
    ):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


@pytest.mark.parametrize("key", ["²", "¹²", "٣", "３", "03", "+3", " 3", "3 ", "-", ""])
def test_only_ascii_integer_keys_name_a_row_of_an_integer_column(db: str, key: str) -> None:
    """``"²".isdigit()`` is True (int() then raised) and Arabic-Indic "٣" read row 3."""
    src = source(db, employees={"table": "funcionarios", "key": "matricula", "writable": True})
    assert list(src.read_keys("employees", [key])) == []
    assert [r["matricula"] for r in src.read_keys("employees", [key, "2"])] == ["2"]
    assert src.write_back("employees", "matricula", key, {"email": "x@acme.com"}) == 0
    assert next(src.read_keys("employees", ["3"]))["email"] == "p3@acme.com"


class _CountingCursor(sqlite3.Cursor):
    fetches: list[int | None] = []

    def fetchmany(self, size: int | None = None) -> list[object]:  # type: ignore[override]
        rows = super().fetchmany() if size is None else super().fetchmany(size)
        _CountingCursor.fetches.append(len(rows))
        return rows


class _CountingConnection(sqlite3.Connection):
    def cursor(self, factory: object = _CountingCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(_CountingCursor)


def test_a_read_fetches_batch_size_rows_per_round_trip(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``batch_size`` rows per fetch (the DB-API default, one row, made a fetch per row)."""
    import sqlite3.dbapi2  # what SQLAlchemy's pysqlite dialect connects through

    connect = sqlite3.dbapi2.connect

    def counting(*args: object, **kw: object) -> sqlite3.Connection:
        return connect(*args, **{**kw, "factory": _CountingConnection})  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3.dbapi2, "connect", counting)
    _CountingCursor.fetches = []
    src = source(db, employees={"table": "funcionarios", "key": "matricula"})  # batch_size 3
    assert len(list(src.read("employees"))) == 10
    src.close()
    assert _CountingCursor.fetches == [3, 3, 3, 1, 0]
