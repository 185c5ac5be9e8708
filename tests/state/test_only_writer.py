"""The state store is the only writer of its tables (#15 item 6): a static check of ``sync/``.

Outside ``sync/state`` no module may
- open a state session (``<x>.session()``, or build a ``Session``/``sessionmaker`` itself);
- run ``insert``/``update``/``delete`` on a state table (its model, ``Model.__table__``, or SQL
  text naming the table);
- open a write transaction on the store's engine (``store.engine.begin()``);
- use the session ``StateStore.transaction()`` yields other than by handing it to store
  methods (``session=s``): no ``s.add(...)``, ``s.execute(...)``, ``s.commit()``...

Building a model instance as a value for a store method (``RunItem(...)`` for
``add_run_items``) is allowed: the store writes it. Read-only connections
(``store.engine.connect()`` for a health probe or the metrics scrape) are not writes and are
not flagged. The checker is tested on snippets that break each rule, so it cannot pass
vacuously.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sqlmodel import SQLModel

import sync.state.models  # noqa: F401  (registers the tables)

ROOT = Path(__file__).resolve().parents[2]
SYNC = ROOT / "sync"
STATE = SYNC / "state"

TABLES = {name: table for name, table in SQLModel.metadata.tables.items()}
MODELS = {
    mapper.class_.__name__
    for mapper in SQLModel._sa_registry.mappers  # the table models of sync.state.models
    if mapper.class_.__module__ == "sync.state.models"
}
DML = {"insert", "update", "delete"}
SQL_WRITE = re.compile(
    r"\b(?:insert\s+into|update|delete\s+from)\s+\"?(" + "|".join(sorted(TABLES)) + r")\b", re.I
)


def _source(node: ast.AST) -> str:
    return ast.unparse(node)


def _is_state_table(node: ast.AST, aliases: frozenset[str] = frozenset()) -> bool:
    """``Model`` or ``Model.__table__`` (or ``models.Model``) of a state table, or a name
    assigned one of those (``table = InboundRecord.__table__``)."""
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        node = node.value
    if isinstance(node, ast.Name):
        return node.id in MODELS or node.id in aliases
    return isinstance(node, ast.Attribute) and node.attr in MODELS


def violations(source: str, name: str = "<snippet>") -> list[str]:
    """Every breach of the rules in the module docstring, as ``name:line: what``."""
    tree = ast.parse(source)
    out: list[str] = []
    orm_names: set[str] = set()  # Session / sessionmaker imported from sqlmodel or sqlalchemy
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "sqlmodel",
            "sqlalchemy",
        ):
            orm_names.update(a.asname or a.name for a in node.names if a.name in ("Session", "sessionmaker"))
    aliases = frozenset(
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _is_state_table(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    )
    tx_uses: list[ast.Attribute] = []  # ``s.<anything>`` inside ``with <x>.transaction() as s:``
    for node in ast.walk(tree):
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "transaction"
                    and isinstance(item.optional_vars, ast.Name)
                ):
                    tx = item.optional_vars.id
                    tx_uses.extend(
                        sub
                        for stmt in node.body
                        for sub in ast.walk(stmt)
                        if isinstance(sub, ast.Attribute)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id == tx
                    )

    def say(node: ast.AST, what: str) -> None:
        out.append(f"{name}:{getattr(node, 'lineno', 0)}: {what}: {_source(node)[:80]}")

    for use in tx_uses:
        say(use, "uses the store's transaction session directly (pass it as session= to a store method)")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "session" and not node.args and not node.keywords:
            say(node, "opens a state session")
        if isinstance(func, ast.Name) and func.id in orm_names:
            say(node, "builds an ORM session")
        if isinstance(func, ast.Name | ast.Attribute):
            fname = func.id if isinstance(func, ast.Name) else func.attr
            if fname in DML and node.args and _is_state_table(node.args[0], aliases):
                say(node, f"{fname} on a state table")
            if (
                isinstance(func, ast.Attribute)
                and fname in DML
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "__table__"
                and _is_state_table(func.value, aliases)
            ):
                say(node, f"{fname} on a state table")
            if (
                isinstance(func, ast.Attribute)
                and fname == "begin"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "engine"
                and "store" in _source(func.value.value).lower()
            ):
                say(node, "opens a write transaction on the state store's engine")
            if fname in ("text", "exec_driver_sql") and node.args:
                arg = node.args[0]
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and SQL_WRITE.search(arg.value)
                ):
                    say(node, "SQL text that writes a state table")
    return out


def test_the_checker_knows_the_state_tables() -> None:
    assert {"Binding", "InboundEvent", "InboundRecord", "Cursor", "Intent", "RunItem"} <= MODELS
    assert {"bindings", "inbound_events", "inbound_records", "cursors"} <= set(TABLES)


def test_the_checker_finds_each_kind_of_direct_write() -> None:
    snippet = """
from sqlalchemy import insert, update, delete, text
from sqlmodel import Session
from sync.state.models import InboundEvent, InboundRecord, Cursor

def a(store):
    with store.session() as s:
        s.add(Cursor(tenant="t", platform="p", stream="s", value="1"))

def b(store, engine):
    with store.engine.begin() as conn:
        conn.execute(insert(InboundEvent.__table__).values(tenant="t"))
    Session(engine)

def c(session):
    session.execute(update(InboundRecord).values(content_hash="x"))
    session.execute(delete(Cursor))
    session.execute(InboundRecord.__table__.insert())
    session.execute(text("DELETE FROM inbound_events WHERE id = 1"))
    table = InboundEvent.__table__
    session.execute(insert(table).values(tenant="t"))

def d(store):
    with store.transaction() as s:
        s.add(Cursor(tenant="t", platform="p", stream="s", value="1"))
        store.set_cursor("t", "p", "s", "1", session=s)
"""
    found = violations(snippet)
    text = "\n".join(found)
    assert "opens a state session" in text
    assert "opens a write transaction on the state store's engine" in text
    assert "builds an ORM session" in text
    assert "insert on a state table" in text
    assert "update on a state table" in text
    assert "delete on a state table" in text
    assert "SQL text that writes a state table" in text
    assert "uses the store's transaction session directly" in text
    assert "insert on a state table: insert(table)" in text  # through a name bound to the table
    # handing the transaction's session to a store method is the allowed use
    assert not any("set_cursor" in v for v in found), found


def test_reads_and_other_databases_are_not_flagged() -> None:
    snippet = """
from sqlalchemy import insert, select, text
from sync.state.models import RunItem

def ok(store, erp_engine, table):
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with erp_engine.begin() as conn:
        conn.execute(insert(table).values(x=1))
        conn.execute(table.insert().values(x=1))
    store.add_run_items([RunItem(run_id=1, platform="p", entity="e", erp_key="k", action="a", outcome="ok")])
"""
    assert violations(snippet) == []


def test_no_module_outside_sync_state_writes_the_state_tables() -> None:
    found: list[str] = []
    checked = 0
    for path in sorted(SYNC.rglob("*.py")):
        if STATE in path.parents:
            continue
        checked += 1
        found.extend(violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))))
    assert checked > 50  # the walk really saw the package
    assert found == [], "write the state tables only through StateStore:\n" + "\n".join(found)
