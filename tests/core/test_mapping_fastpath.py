"""The generated fast path of ``map_rows`` gives exactly what the per-field path gives."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sync.core.mapping import EntityMapping, MapContext, MapResult, load_mapping_texts, load_mappings
from sync.demo import erpgen

REPO = Path(__file__).resolve().parents[2]

EMPLOYEE_COLUMNS = (
    "matricula",
    "nome",
    "cpf",
    "email",
    "setor",
    "centro_custo",
    "centro_custo_2",
    "cargo",
    "grupo",
    "data_admissao",
    "situacao",
    "updated_at",
)


def _both(em: EntityMapping, rows: list[dict[str, Any]], ctx: MapContext | None) -> tuple[MapResult, ...]:
    assert em.fastpath
    fast = em.map_rows(iter(rows), ctx)
    em.fastpath = False
    try:
        slow = em.map_rows(iter(rows), ctx)
    finally:
        em.fastpath = True
    return fast, slow


def _same(fast: MapResult, slow: MapResult) -> None:
    assert (fast.rows, fast.filtered) == (slow.rows, slow.filtered)
    assert fast.desired == slow.desired
    # field order too (reports and JSON follow it) and the exact value types
    assert [list(d.fields.items()) for d in fast.desired] == [list(d.fields.items()) for d in slow.desired]
    assert [[type(v) for v in d.fields.values()] for d in fast.desired] == [
        [type(v) for v in d.fields.values()] for d in slow.desired
    ]
    assert fast.quarantine == slow.quarantine


def _employees(n: int) -> list[dict[str, Any]]:
    rows = [dict(zip(EMPLOYEE_COLUMNS, r, strict=True)) for r in erpgen._employees(n, 7)]
    rng = random.Random(3)
    breakers: list[dict[str, Any]] = [
        {"matricula": None},  # missing key
        {"matricula": "  "},
        {"matricula": "X\x01Y"},  # control chars in the key
        {"matricula": 4711},  # non-text key
        {"matricula": " 0000001 "},  # duplicate of row 1 once trimmed
        {"nome": None},  # required
        {"nome": "   "},
        {"nome": "A" * 151},  # max_length
        {"nome": "Ana\x00Silva"},  # control chars
        {"nome": "Ana\tSilva"},  # not printable but valid
        {"nome": "Zoë  Müller "},  # non-ASCII text goes through the closure
        {"nome": b"bytes"},  # type error
        {"nome": 12345},  # a number as text
        {"cpf": None, "email": None},  # unkeyed: derived identification
        {"cpf": "111.111.111-11"},  # natural-key collision with the next breaker
        {"cpf": "11111111111"},
        {"email": "DUP@Example.com"},  # collision on e-mail (case is ignored)
        {"email": " dup@example.COM "},
        {"email": "not-an-email"},
        {"email": "É@exemplo.com.br"},
        {"cpf": "1" * 21},  # max_length
        {"setor": "S99"},  # dangling reference
        {"cargo": "C09"},  # quarantined target
        {"setor": " S01 "},
        {"setor": 1},
        {"grupo": None},
        {"data_admissao": "31/02/2020"},  # bad date
        {"data_admissao": "2020-01-01"},  # wrong format
        {"data_admissao": None},
        {"situacao": "X"},  # not in the lookup
        {"situacao": None},  # default
        {"situacao": " d "},
        {"nome": None, "email": "bad", "setor": "S99"},  # several problems at once
        {"matricula": "K" * 256},  # longer than the state store's key columns
        {"matricula": "K" * 255},  # the longest key that fits
        {"matricula": "X\udcffY"},  # a lone surrogate in the key (a JSON export's "\udcff")
        {"nome": "Ana \udcff Silva"},  # ... in a text field
        {"email": "ana\ud800@example.com"},
        {"data_admissao": "\udcff"},  # ... in a date
    ]
    for i, over in enumerate(breakers):
        rows[5 + i * 7].update(over)
    for _ in range(20):
        row = dict(rows[rng.randrange(len(rows))])  # exact duplicates
        rows.insert(rng.randrange(len(rows)), row)
    return rows


def _context() -> MapContext:
    return MapContext(
        valid_keys={
            "sectors": {f"S{i + 1:02d}" for i in range(len(erpgen.SECTORS))},
            "cost_centers": {code for code, _ in erpgen.COST_CENTERS},
            "job_roles": {f"C{i + 1:02d}" for i in range(len(erpgen.JOB_ROLES))},
        },
        quarantined={"job_roles": {"C09"}},
    )


@pytest.mark.parametrize("context", [True, False])
def test_employees_fast_equals_slow(context: bool) -> None:
    em = load_mappings([REPO / "mappings/smartepi.yaml"]).entity("smartepi", "employees")
    rows = _employees(400)
    fast, slow = _both(em, rows, _context() if context else None)
    assert fast.quarantine and len(fast.desired) > 300  # the rows above really hit both paths
    rules = {q.rule for q in fast.quarantine}
    assert {"missing_key", "duplicate_erp_key", "natural_key_collision", "control_chars"} <= rules
    assert {"key_too_long", "invalid_text"} <= rules
    assert "K" * 255 in {d.erp_key for d in fast.desired}
    for q in fast.quarantine:  # every entry can be stored (UTF-8, key column of 255)
        assert len(q.erp_key) <= 255
        for text in (q.erp_key, q.message, q.value or ""):
            text.encode("utf-8")
    assert ("dangling_reference" in rules) is context
    _same(fast, slow)


def test_employees_without_key_derivation() -> None:
    text = (REPO / "mappings/smartepi.yaml").read_text(encoding="utf-8")
    text = text.replace('derive_key: {field: identification, template: "ERP-{erp_key}"}', "")
    em = load_mapping_texts({"epi.yaml": text}).entity("smartepi", "employees")
    fast, slow = _both(em, _employees(300), _context())
    assert any(q.rule == "unkeyed_employee" for q in fast.quarantine)
    _same(fast, slow)


def _demo_rows(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    db = erpgen.generate(tmp_path / "erp.db", employees=50, products_epi=40, products_kasa=120, seed=5)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            yield table, [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
    finally:
        conn.close()


def test_every_demo_entity_fast_equals_slow(tmp_path: Path) -> None:
    """Both platforms' mappings over the demo ERP, with a share of the rows broken."""
    tables = dict(_demo_rows(tmp_path))
    rng = random.Random(11)
    for rows in tables.values():
        for row in rng.sample(rows, max(1, len(rows) // 8)):
            col = rng.choice(sorted(row))
            row[col] = rng.choice(
                [None, "", " x ", "\x07", "9" * 300, "-1", "1.005", 3, Decimal("2.5"), "Ção"]
            )
    mappings = load_mappings([REPO / "mappings/smartepi.yaml", REPO / "mappings/smartkasa.yaml"])
    for platform in ("smartepi", "smartkasa"):
        fast_ctx, slow_ctx = MapContext(), MapContext()
        for em in mappings.entities(platform):
            for child, (source, _) in em.child_sources.items():
                fast_ctx.child_rows[child] = em.group_child_rows(child, tables[source])
                slow_ctx.child_rows[child] = em.group_child_rows(child, tables[source])
            fast = em.map_rows(iter(tables[em.source_entity]), fast_ctx)
            em.fastpath = False
            slow = em.map_rows(iter(tables[em.source_entity]), slow_ctx)
            em.fastpath = True
            _same(fast, slow)
            fast_ctx.record(em.entity, fast)
            slow_ctx.record(em.entity, slow)


def test_generated_features_fast_equals_slow() -> None:
    """Filter, template, concat, constant, collapse, case, min_length, pattern on the fast path."""
    text = """
version: 1
platform: smartepi
entities:
  employees:
    source: funcionarios
    key: codigo
    filter:
      - {field: ativo, not_equals: 0}
    fields:
      name: {concat: [nome, sobrenome], sep: " - ", required: true, max_length: 30}
      identification: {from: codigo, spaces: collapse, case: upper, min_length: 2, pattern: "[A-Z0-9 ]+"}
      email: {template: "{nome}{n}@{dominio}", case: lower, format: email}
      admissionDate: {constant: "2020-01-02", type: date}
      accessGroupIds: {from: titulo, spaces: collapse, case: title}
"""
    em = load_mapping_texts({"s.yaml": text}).entity("smartepi", "employees")
    rng = random.Random(5)
    rows = []
    for i in range(300):
        rows.append(
            {
                "codigo": rng.choice([f"s{i}", f" a  b{i} ", f"x-{i}", "1", None, f"é{i}"]),
                "nome": rng.choice(["Solda", "  ", None, "Pintura Industrial Pesada Demais", "Ção"]),
                "sobrenome": rng.choice(["A", None, ""]),
                "titulo": rng.choice(["  mr  smith ", None, "", "o'neil", "ça va"]),
                "n": i,
                "dominio": rng.choice(["acme.com", "x", None]),
                "ativo": rng.choice([1, 0, "0", None, True]),
            }
        )
    fast, slow = _both(em, rows, None)
    assert fast.filtered and fast.desired and fast.quarantine
    _same(fast, slow)
