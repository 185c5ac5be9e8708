"""The generated fast loop against the reference (per-field) path on Hypothesis-generated
mappings and rows; the setting that turns the loop off; the planner's chunked fingerprint
digest against the simple joined hash; the shared empty ``children`` is read-only."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from sync.core import planner
from sync.core.mapping import (
    EntityMapping,
    MapContext,
    MappingFileError,
    MapResult,
    codegen,
    load_mapping_texts,
)
from sync.core.mapping.codegen import NO_CHILDREN
from sync.core.mapping.reference import (
    finish_run,
    generated_source,
    map_row,
    reference_map_rows,
    set_generated_loop,
    start_run,
)

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples on every run (CI must be deterministic)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

COLUMNS = ("a", "b", "c", "d")

# --- strategies: SmartKasa products without children (every field type the platform has) ----

PATTERNS = ("[0-9]{2,6}", "[A-Za-z ]+", "x.*", "[^@]+")


@st.composite
def text_field(draw: st.DrawFn, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    source = draw(st.sampled_from(["column", "column", "column", "template", "concat", "constant"]))
    if source == "column":
        spec["from"] = draw(st.sampled_from(COLUMNS))
    elif source == "template":
        spec["template"] = draw(st.sampled_from(["{a}-{b}", "{c}", "x{d}y"]))
    elif source == "concat":
        spec["concat"] = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=3, unique=True))
        spec["sep"] = draw(st.sampled_from([" ", " - ", ""]))
    else:
        spec["constant"] = draw(st.sampled_from(["K", " padded ", "ção"]))
        return spec
    if draw(st.booleans()):
        spec["spaces"] = draw(st.sampled_from(["trim", "collapse"]))
    if draw(st.booleans()):
        spec["case"] = draw(st.sampled_from(["upper", "lower", "title"]))
    spec["required"] = draw(st.booleans())
    if draw(st.booleans()):
        spec["max_length"] = draw(st.integers(1, 12))
    if draw(st.integers(0, 3)) == 0:
        spec["min_length"] = draw(st.integers(1, 3))
    rule = draw(st.sampled_from(["none", "none", "pattern", "email", "lookup", "default"]))
    if rule == "pattern":
        spec["pattern"] = draw(st.sampled_from(PATTERNS))
    elif rule == "email":
        spec["format"] = "email"
    elif rule == "lookup" and source == "column":
        spec["lookup"] = {"x": "Ex", "1": "One", "ção": "Cao"}
        if draw(st.booleans()):
            spec["lookup_default"] = "Other"
    elif rule == "default" and not spec["required"]:
        spec["default"] = draw(st.sampled_from(["dflt", " d "]))
    return spec


@st.composite
def typed_field(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_}
    if draw(st.integers(0, 5)) == 0:
        spec["constant"] = {"integer": 3, "decimal": "2.50", "boolean": True}[type_]
        return spec
    spec["from"] = draw(st.sampled_from(COLUMNS))
    spec["required"] = draw(st.booleans())
    if type_ in ("integer", "decimal"):
        if draw(st.booleans()):
            spec["min"] = 0
        if draw(st.booleans()):
            spec["max"] = 10
    if type_ == "decimal" and draw(st.booleans()):
        spec["precision"] = draw(st.integers(0, 3))
    if type_ == "integer" and draw(st.integers(0, 3)) == 0:
        spec["lookup"] = {"one": 1, "two": 2, "x": 7}
    if not spec["required"] and draw(st.booleans()):
        spec["default"] = {"integer": 0, "decimal": "0", "boolean": False}[type_]
    return spec


TEXT_FIELDS = ("number", "title", "alter_title")  # alter_number: the marker (holds the ERP key)
TYPED_FIELDS = {
    "price": "decimal",
    "procurement_price": "decimal",
    "tax_group_id": "integer",
    "unit_type_id": "integer",
    "sold_by_weight": "boolean",
    "is_free_price": "boolean",
}


@st.composite
def mapping_texts(draw: st.DrawFn) -> str:
    fields: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(TEXT_FIELDS), min_size=1, max_size=4, unique=True)):
        fields[name] = draw(text_field(name))
    for name in draw(st.lists(st.sampled_from(sorted(TYPED_FIELDS)), max_size=4, unique=True)):
        fields[name] = draw(typed_field(TYPED_FIELDS[name]))
    if draw(st.booleans()):
        fields["category_id"] = draw(st.sampled_from(COLUMNS))  # a reference (to categories)
    entity: dict[str, Any] = {"source": "rows", "key": "k", "fields": fields}
    if draw(st.integers(0, 3)) == 0:
        # a rare value, and common ones (so that the examples do filter rows out)
        entity["filter"] = [
            draw(
                st.sampled_from([{"field": "d", "not_equals": 0}, {"field": "d", "not_in": ["x", "one", 0]}])
            )
        ]
    doc = {
        "version": 1,
        "platform": "smartkasa",
        "entities": {
            "categories": {"source": "cats", "key": "code", "fields": {"title": "name"}},
            "products": entity,
        },
    }
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


ODD_KEYS = st.one_of(
    st.sampled_from(["p1", " p2 ", "P1", "", "  ", "a\x07b", "K" * 300, "\udcff", "ção"]),
    st.none(),
    st.integers(0, 3),
    st.text(max_size=4),
)
NICE = st.sampled_from(
    [
        " two  words ",
        "Two Words",
        "x",
        " x ",
        "one",
        "two",
        "12",
        "007",
        "3.14159",
        "abc@d.co",
        " A  b c ",
        "ção",
    ]
)
WILD = st.one_of(
    st.none(),
    st.sampled_from(
        ["", " ", "-1", "1e3", "a\x00b", "tab\there", "\udcff", "x" * 20, "true", "0", "2020-01-02"]
    ),
    st.text(max_size=6),
    st.integers(-3, 12),
    st.decimals(min_value=-5, max_value=15, places=3, allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@st.composite
def row_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows that mostly map (distinct keys, plausible values), with odd keys and values mixed in:
    the fast loop must decide the common row itself and hand the others on."""
    rows = []
    for i in range(draw(st.integers(0, 30))):
        key = f"p{i}" if draw(st.integers(0, 5)) else draw(ODD_KEYS)
        row: dict[str, Any] = {"k": key}
        for c in COLUMNS:
            row[c] = draw(NICE) if draw(st.integers(0, 3)) else draw(WILD)
        rows.append(row)
    return rows


ROWS = row_lists()
CONTEXTS = st.sampled_from([None, "known", "quarantined"])


def make_context(kind: str | None) -> MapContext | None:
    if kind is None:
        return None
    return MapContext(
        valid_keys={"categories": {"x", "one", "12", "ção"}},
        quarantined={"categories": {"one"} if kind == "quarantined" else set()},
    )


def load(text: str) -> EntityMapping:
    try:
        return load_mapping_texts({"m.yaml": text}).entity("smartkasa", "products")
    except MappingFileError:
        reject()  # a combination the mapping rules refuse (they are tested elsewhere)
        raise


def same(fast: MapResult, ref: MapResult) -> None:
    assert (fast.rows, fast.filtered) == (ref.rows, ref.filtered)
    assert fast.desired == ref.desired
    # field order and exact value types too (reports and JSON follow them)
    assert [list(d.fields.items()) for d in fast.desired] == [list(d.fields.items()) for d in ref.desired]
    assert [[type(v) for v in d.fields.values()] for d in fast.desired] == [
        [type(v) for v in d.fields.values()] for d in ref.desired
    ]
    assert [d.erp_hash for d in fast.desired] == [d.erp_hash for d in ref.desired]
    assert fast.quarantine == ref.quarantine


@SETTINGS
@given(text=mapping_texts(), rows=ROWS, context=CONTEXTS)
def test_fast_loop_equals_the_reference(text: str, rows: list[dict[str, Any]], context: str | None) -> None:
    em = load(text)
    assert generated_source(em) is not None  # no children: the generated loop runs
    fast = em.map_rows(iter(rows), make_context(context))
    ref = reference_map_rows(em, iter(rows), make_context(context))
    same(fast, ref)


def test_the_generated_examples_reach_both_paths() -> None:
    """The strategies above are not toothless: over the examples, the fast loop maps rows
    itself, hands rows to the per-field path, quarantines and filters."""
    seen = {"loop_own_rows": 0, "bailed": 0, "quarantined": 0, "filtered": 0}

    @SETTINGS
    @given(text=mapping_texts(), rows=ROWS)
    def probe(text: str, rows: list[dict[str, Any]]) -> None:
        em = load(text)
        built = em.generated_loop()
        assert built is not None
        loop, source, n_caches = built
        bailed = 0

        def counting_loop(
            rows_: Any, seen_: Any, desired: Any, nat_seen: Any, nat_twice: Any, slow: Any, *rest: Any
        ) -> Any:
            def counting_slow(row: Any, total: int) -> None:
                nonlocal bailed
                bailed += 1
                slow(row, total)

            return loop(rows_, seen_, desired, nat_seen, nat_twice, counting_slow, *rest)

        em._fast = (counting_loop, source, n_caches)
        result = em.map_rows(iter(rows))
        seen["loop_own_rows"] += result.rows - result.filtered - bailed
        seen["bailed"] += bailed
        seen["quarantined"] += len(result.quarantine)
        seen["filtered"] += result.filtered

    probe()
    assert all(n > 0 for n in seen.values()), seen


def test_the_setting_turns_the_generated_loop_off(monkeypatch: pytest.MonkeyPatch) -> None:
    mappings = load_mapping_texts({"m.yaml": _PLAIN})
    em = mappings.entity("smartkasa", "products")
    rows = [{"k": f"p{i}", "a": f"Title {i}", "b": str(i), "c": None, "d": 1} for i in range(20)]
    with_loop = em.map_rows(iter(rows))
    assert em._fast is not None  # the loop was generated and used

    set_generated_loop(mappings, False)

    def no_codegen(**kw: Any) -> Any:
        raise AssertionError("the generated loop must not be built when it is off")

    monkeypatch.setattr("sync.core.mapping.compiled.build_loop", no_codegen)
    em._fast = None
    without = em.map_rows(iter(rows))
    same(with_loop, without)
    set_generated_loop(mappings, True)
    with pytest.raises(AssertionError, match="must not be built"):
        em.map_rows(iter(rows))


def test_the_reference_is_a_plain_function_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """``reference_map_rows`` builds no generated loop and does not go through ``map_rows``:
    it is the per-field path alone, row by row through ``map_row``."""
    mappings = load_mapping_texts({"m.yaml": _PLAIN})
    em = mappings.entity("smartkasa", "products")
    rows = [{"k": f"p{i}", "a": f"Title {i}", "b": str(i), "c": None, "d": 1} for i in range(20)]
    rows += [{"k": "p3", "a": "twin", "b": "3"}, {"k": None, "a": "no key"}, {"k": "bad\x00", "a": "x"}]
    expected = em.map_rows(iter(rows))

    def refuse(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the reference path must not use the generated loop or map_rows")

    monkeypatch.setattr("sync.core.mapping.compiled.build_loop", refuse)
    monkeypatch.setattr(type(em), "map_rows", refuse)
    monkeypatch.setattr(type(em), "generated_loop", refuse)
    em._fast = None
    same(expected, reference_map_rows(em, iter(rows)))

    # The same, driven a row at a time (what the generated loop does with a row it hands on).
    run = start_run(em)
    for n, row in enumerate(rows, 1):
        map_row(run, row, n)
    same(expected, finish_run(run, len(rows), 0))
    assert {q.rule for q in expected.quarantine} == {"duplicate_erp_key", "missing_key", "control_chars"}


def test_the_tenant_setting_reaches_the_runtime(tmp_path: Any) -> None:
    from sync.engine.runtime import TenantRuntime
    from sync.settings import Settings, TenantSettings

    (tmp_path / "m.yaml").write_text(_PLAIN, encoding="utf-8")
    for enabled in (True, False):
        tenant = TenantSettings.model_validate(
            {
                "erp": {"kind": "sql", "url": f"sqlite:///{tmp_path}/erp.db"},
                "mappings": [str(tmp_path / "m.yaml")],
                "smartkasa": {
                    "base_url": "https://kasa.example",
                    "api_key": "k" * 16,
                    "phone": "380971234567",
                    "password": "p" * 12,
                },
                "generated_mapping_loop": enabled,
            }
        )
        assert TenantSettings.model_fields["generated_mapping_loop"].default is True
        runtime = TenantRuntime("t", Settings(), tenant, None, {})  # type: ignore[arg-type]
        assert {em.fastpath for em in runtime.mappings.entities("smartkasa")} == {enabled}


_PLAIN = """
version: 1
platform: smartkasa
entities:
  products:
    source: rows
    key: k
    fields:
      title: {from: a, required: true, max_length: 40}
      number: {from: b, pattern: "[0-9]+"}
      price: {constant: "1.50", type: decimal}
"""


# --- the planner's chunked fingerprint digest ---------------------------------------------


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    batches=st.lists(st.lists(st.text(max_size=4), max_size=9), max_size=6),
    content=st.lists(
        st.tuples(st.text(max_size=3), st.one_of(st.integers(), st.none(), st.decimals(allow_nan=False))),
        max_size=9,
    ),
    chunk=st.integers(1, 4),
)
def test_chunked_digest_equals_the_simple_joined_hash(
    batches: list[list[str]], content: list[Any], chunk: int
) -> None:
    """``_Digest`` fed the identity strings in batches (as the planner flushes them), hashed in
    chunks, gives the hash of ``"\\x1f".join(all ids)`` followed by the content's chunk reprs."""
    all_ids = [i for batch in batches for i in batch]
    simple = hashlib.blake2b(digest_size=16)
    simple.update("\x1f".join(all_ids).encode())
    for i in range(0, len(content), chunk):
        simple.update(repr(content[i : i + chunk]).encode())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(planner, "_CHUNK", chunk)  # small chunks: every boundary case is reached
        digest = planner._Digest()
        for batch in batches:
            fed = list(batch)
            digest.feed(fed)
            assert fed == []  # the identity strings are dropped once hashed
        chunked = digest.finish(content)
        assert chunked == simple.hexdigest()
        assert planner._digest(list(all_ids), content) == simple.hexdigest()


def test_digest_with_the_real_chunk_size_over_many_ids() -> None:
    ids = [f"id{i}\x1e{i % 7}" for i in range(3 * planner._CHUNK + 5)]
    content = [(i, Decimal(i) / 4) for i in range(planner._CHUNK + 3)]
    simple = hashlib.blake2b("\x1f".join(ids).encode(), digest_size=16)
    for i in range(0, len(content), planner._CHUNK):
        simple.update(repr(content[i : i + planner._CHUNK]).encode())
    digest = planner._Digest()
    digest.feed(ids[:10])
    digest.feed(ids[10:])
    assert digest.finish(content) == simple.hexdigest()


# --- shared mutable defaults are read-only ------------------------------------------------


def test_the_shared_empty_children_is_read_only() -> None:
    em = load_mapping_texts({"m.yaml": _PLAIN}).entity("smartkasa", "products")
    result = em.map_rows(iter([{"k": "p1", "a": "T", "b": "1"}, {"k": "p2", "a": "U", "b": "2"}]))
    first, second = result.desired
    assert first.children is second.children is NO_CHILDREN  # one shared object...
    with pytest.raises(TypeError, match="shared by every record"):
        first.children["cards"] = []  # ...so a change would reach every record: refused
    for change in (
        lambda c: c.update(cards=[]),
        lambda c: c.setdefault("cards", []),
        lambda c: c.pop("cards", None),
        lambda c: c.clear(),
        lambda c: c.popitem(),
    ):
        with pytest.raises(TypeError):
            change(first.children)
    assert second.children == {} and NO_CHILDREN == {}
    # still a plain empty dict to everything that reads it, and copies are ordinary dicts
    assert isinstance(NO_CHILDREN, dict) and json.dumps(NO_CHILDREN) == "{}"
    for c in (
        dict(NO_CHILDREN),
        copy.copy(NO_CHILDREN),
        copy.deepcopy(NO_CHILDREN),
        pickle.loads(pickle.dumps(NO_CHILDREN)),
    ):
        c["cards"] = []  # a copy can be changed
    assert NO_CHILDREN == {} and codegen.NO_CHILDREN is NO_CHILDREN
