"""The SQL source reads a change column of any name in each form ERPs store (#16.1)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sync.sources.base import parse_timestamp, try_timestamp
from sync.sources.config import SqlEntityConfig, SqlSourceConfig
from sync.sources.sql import SqlSource

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
STAMPS = [T0 - dt.timedelta(days=400), T0 - dt.timedelta(seconds=1), T0, T0 + dt.timedelta(seconds=1)]

FORMS: dict[str, tuple[str, Any]] = {
    "iso-t": ("TEXT", lambda t: t.isoformat()),
    "iso-space": ("TEXT", lambda t: t.strftime("%Y-%m-%d %H:%M:%S")),
    "epoch-int": ("INTEGER", lambda t: int(t.timestamp())),
    "epoch-text": ("TEXT", lambda t: str(int(t.timestamp()))),
    "epoch-real": ("REAL", lambda t: t.timestamp()),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_incremental_read_by_a_change_column_of_any_name_and_form(tmp_path: Path, form: str) -> None:
    sql_type, render = FORMS[form]
    db = tmp_path / "erp.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TABLE itens (cod TEXT PRIMARY KEY, alterado_em {sql_type})")
        conn.executemany(
            "INSERT INTO itens VALUES (?, ?)", [(f"K{i}", render(t)) for i, t in enumerate(STAMPS)]
        )
    conf = SqlSourceConfig(
        url=f"sqlite:///{db}", entities={"itens": SqlEntityConfig(key="cod", updated_at="alterado_em")}
    )
    source = SqlSource(conf)
    try:
        assert source.change_column("itens") == "alterado_em"
        assert sorted(r["cod"] for r in source.read("itens", since=T0)) == ["K2", "K3"]  # inclusive
        assert source.max_updated_at("itens") == STAMPS[-1]
        assert {parse_timestamp(r["alterado_em"]) for r in source.read("itens")} == set(STAMPS)
    finally:
        source.close()


def test_timestamps_that_are_no_timestamps_are_none_not_a_crash() -> None:
    assert parse_timestamp("1772366400") == T0  # epoch seconds as text
    assert parse_timestamp("2026-03-01T15:00:00+03:00") == T0
    assert try_timestamp("not a date") is None and try_timestamp("") is None
