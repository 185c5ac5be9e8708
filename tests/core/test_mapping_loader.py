"""Mapping files: valid files load into policies; invalid ones fail with file:line: path: problem."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from sync.core.mapping import MappingFileError, load_mapping_texts, load_mappings
from sync.core.records import FieldPolicy

REPO = Path(__file__).resolve().parents[2]

ORG = """\
version: 1
platform: smartepi
entities:
  sectors:
    source: setores
    key: codigo
    fields:
      name: {from: nome, required: true}
  cost_centers:
    source: centros_custo
    key: codigo
    fields:
      name: nome
      code: codigo
"""

EMPLOYEES = """\
version: 1
platform: smartepi
entities:
  employees:
    source: funcionarios
    key: matricula
    writable: true
    delete: deactivate
    fields:
      name: nome
      email: {from: email, direction: both, conflict: report, sensitive: true}
      sectorId: setor
      costCenterId: cc
      active: {constant: true, type: boolean}
"""


def test_demo_mapping_files_load() -> None:
    mappings = load_mappings([REPO / "mappings/smartepi.yaml", REPO / "mappings/smartkasa.yaml"])
    assert [e.entity for e in mappings.entities("smartepi")] == [
        "sectors", "cost_centers", "job_roles", "groups", "products", "employees",
    ]  # fmt: skip
    assert [(e.entity, e.level) for e in mappings.entities("smartkasa")] == [
        ("categories", 0),
        ("products", 1),
    ]
    kasa_products = mappings.entity("smartkasa", "products").policy()
    assert kasa_products.children == ("cards",)
    assert kasa_products.natural_key == ("number",)
    assert kasa_products.fields["category_id"].ref == "categories"
    assert mappings.entity("smartkasa", "categories").self_ref == "parent_id"
    assert mappings.entity("smartepi", "products").child_keys == {
        "sizes": ("name",),
        "certificates": ("number",),
    }


def test_policy_from_two_files_and_levels() -> None:
    mappings = load_mapping_texts({"org.yaml": ORG, "emp.yaml": EMPLOYEES})
    emp = mappings.entity("smartepi", "employees")
    assert (emp.source_entity, emp.erp_key_field) == ("funcionarios", "matricula")
    policy = emp.policy()
    assert policy.level == 1
    assert policy.natural_key == ("identification", "email")
    assert policy.delete == "deactivate" and policy.deactivate_field == "active"
    assert policy.writable is True
    assert policy.fields["email"] == FieldPolicy("email", "both", "report", None, True)
    assert policy.fields["sectorId"].ref == "sectors"
    assert mappings.entity("smartepi", "sectors").policy().level == 0
    assert mappings.source_entities("smartepi") == ["setores", "centros_custo", "funcionarios"]


def test_override_lookup_tables() -> None:
    mappings = load_mappings(
        [REPO / "mappings/smartkasa.yaml"], lookups={"shops": {"KYIV-01": 901, "LVIV-01": 902}}
    )
    result = mappings.map_rows(
        "smartkasa",
        "products",
        [
            {
                "sku": "S1",
                "barcode": "4820000000011",
                "title": "Хліб",
                "price": "10",
                "unit": "шт",
                "stock": [],
            }
        ],
    )
    assert result.desired[0].fields["unit_type_id"] == 2009
    em = mappings.entity("smartkasa", "products")
    from sync.core.mapping import MapContext

    ctx = MapContext(
        child_rows={"cards": em.group_child_rows("cards", [{"sku": "S1", "shop_code": "LVIV-01"}])}
    )
    cards = em.map_rows([{"sku": "S1", "barcode": "4820000000011", "title": "Хліб", "price": "10"}], ctx)
    assert cards.desired[0].children["cards"] == [{"shop_id": 902, "counting_enabled": True}]


def _problems(text: str, name: str = "m.yaml") -> list[str]:
    with pytest.raises(MappingFileError) as exc:
        load_mapping_texts({name: textwrap.dedent(text)})
    assert "m.yaml" in str(exc.value)
    return exc.value.problems


HEAD = "version: 1\nplatform: smartepi\nentities:\n  sectors:\n    source: setores\n    key: codigo\n"

INVALID = [
    ("", ["m.yaml:1: (file): the file is empty"]),
    ("platform: [smartepi\n", ["m.yaml:2: (yaml): expected ',' or ']', but got '<stream end>'"]),
    ("- a\n- b\n", ["m.yaml:1: (file): the file must be a mapping with platform and entities"]),
    ("platform: smartepi\n", ["m.yaml:1: entities: required key is missing"]),
    (
        "platform: smartpos\nentities: {}\n",
        ["m.yaml:1: platform: Input should be 'smartepi' or 'smartkasa'"],
    ),
    (
        HEAD + "    fields: {name: nome}\n    colour: red\n",
        ["m.yaml:8: entities.sectors.colour: unknown key"],
    ),
    (
        HEAD + "    fields:\n      name: nome\n      name: nome2\n",
        ["m.yaml:9: entities.sectors.fields.name: duplicate key"],
    ),
    (
        HEAD + "    fields:\n      name: {from: nome, max_length: many}\n",
        ["m.yaml:8: entities.sectors.fields.name.max_length: Input should be a valid integer"],
    ),
    (
        HEAD + "    fields:\n      name: {from: nome, template: '{a}'}\n",
        ["m.yaml:8: entities.sectors.fields.name: give at most one of from, template, concat, constant"],
    ),
    (
        HEAD + "    fields:\n      name: {template: '{a!r}'}\n",
        ["m.yaml:8: entities.sectors.fields.name.template: template placeholders must be plain column names"],
    ),
    (
        HEAD + "    fields:\n      name: {from: nome, precision: 2}\n",
        ["m.yaml:8: entities.sectors.fields.name: precision needs type: decimal"],
    ),
    (
        HEAD + "    fields:\n      name: {from: nome, type: decimal, max_length: 3}\n",
        ["m.yaml:8: entities.sectors.fields.name: max_length only apply to type: string"],
    ),
    (
        HEAD + "    fields:\n      name: {from: nome, pattern: '[a-'}\n",
        ["m.yaml:8: entities.sectors.fields.name.pattern: invalid regular expression"],
    ),
    (
        HEAD + "    fields:\n      name: {concat: [a, b], direction: pull}\n",
        ["m.yaml:8: entities.sectors.fields.name: direction pull needs a plain `from` column"],
    ),
    (
        HEAD + "    fields:\n      name: {from: n, lookup: {a: x, b: x}, direction: both}\n",
        ["m.yaml:8: entities.sectors.fields.name: direction both needs a one-to-one lookup table"],
    ),
    (
        HEAD + "    fields:\n      name: {from: n, lookup: colours}\n",
        ["m.yaml:8: entities.sectors.fields.name.lookup: no lookup table named 'colours'"],
    ),
    (
        HEAD + "    fields: {nome: nome}\n",
        [
            "m.yaml:7: entities.sectors.fields.nome: smartepi sectors has no field 'nome'",
        ],
    ),
    (
        HEAD + "    fields: {name: n}\n    delete: deactivate\n",
        ["m.yaml:4: entities.sectors: delete: deactivate needs the field 'active' mapped"],
    ),
    (
        HEAD + "    fields: {name: n}\n    natural_key: [code]\n",
        ["m.yaml:4: entities.sectors: natural key field 'code' is not mapped"],
    ),
    (
        HEAD + "    fields: {name: n}\n    filter:\n      - {field: ativo, equals: 1, not_null: true}\n",
        ["m.yaml:9: entities.sectors.filter.0: give exactly one of equals, not_equals, in, not_in"],
    ),
    (
        "version: 1\nplatform: smartepi\nentities:\n  employees:\n    source: f\n    key: m\n"
        "    fields: {name: n, jobRoleId: cargo}\n",
        ["m.yaml:7: entities.employees.fields.jobRoleId: references job_roles, which is not mapped"],
    ),
    (
        "version: 1\nplatform: smartepi\nentities:\n  employees:\n    source: f\n    key: m\n"
        "    fields: {name: n, email: e}\n    derive_key: {field: name, template: 'x'}\n",
        ["m.yaml:8: entities.employees.derive_key.field: derive_key.field must be one of the natural key"],
    ),
    (
        "version: 1\nplatform: smartkasa\nentities:\n  products:\n    source: p\n    key: sku\n"
        "    fields: {title: t, number: b}\n    children:\n      cards:\n        source: stock\n"
        "        key: shop_id\n        fields: {shop_id: shop}\n",
        ["m.yaml:9: entities.products.children.cards: a child with a source needs parent_key"],
    ),
    (
        "version: 1\nplatform: smartkasa\nentities:\n  products:\n    source: p\n    key: sku\n"
        "    fields: {title: t, number: b}\n    children:\n      stock:\n        key: shop_id\n"
        "        fields: {shop_id: shop}\n",
        ["m.yaml:9: entities.products.children.stock: smartkasa products has no nested collection 'stock'"],
    ),
    (
        "version: 1\nplatform: smartkasa\nentities:\n  widgets:\n    source: w\n    key: k\n"
        "    fields: {a: b}\n",
        ["m.yaml:4: entities.widgets: smartkasa has no entity 'widgets' (known: categories, products)"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID, ids=[f"invalid-{i}" for i in range(len(INVALID))])
def test_invalid_files(text: str, expected: list[str]) -> None:
    problems = _problems(text)
    assert len(problems) == len(expected), problems
    for got, want in zip(problems, expected, strict=True):
        assert got.startswith(want), got


def test_every_problem_in_every_file_is_listed_in_line_order() -> None:
    bad_org = ORG.replace(
        "name: {from: nome, required: true}", "name: {from: nome, required: maybe}"
    ).replace("code: codigo", "code: codigo\n      colour: red")
    with pytest.raises(MappingFileError) as exc:
        load_mapping_texts({"org.yaml": bad_org, "emp.yaml": EMPLOYEES.replace("name: nome", "nam: nome")})
    assert [p.split(": ")[0] for p in exc.value.problems] == ["org.yaml:8", "org.yaml:15", "emp.yaml:10"]
    assert "3 problems" in str(exc.value)


def test_same_entity_in_two_files_and_reference_cycles() -> None:
    problems = _problems_of({"a.yaml": ORG, "m.yaml": ORG})
    assert problems[0].startswith("m.yaml:4: entities.sectors: smartepi sectors is already mapped in a.yaml")
    cyc = (
        "version: 1\nplatform: smartkasa\nentities:\n  categories:\n    source: c\n    key: k\n"
        "    fields: {title: t, parent_id: p}\n"
    )
    assert (
        load_mapping_texts({"c.yaml": cyc}).entity("smartkasa", "categories").level == 0
    )  # self refs are fine


def _problems_of(texts: dict[str, str]) -> list[str]:
    with pytest.raises(MappingFileError) as exc:
        load_mapping_texts(texts)
    return exc.value.problems


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError) as exc:
        load_mappings([tmp_path / "missing.yaml"])
    assert "missing.yaml:0: (file): cannot read" in exc.value.problems[0]


# --- hostile YAML and patterns: a problem listed, never a crash or a stall ---------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("platform: !!float abc\nentities: {}\n", "m.yaml:1: platform: cannot read the value tagged"),
        ("platform: !!timestamp 2020-99-99\n", "m.yaml:1: platform: cannot read the value tagged"),
        ("platform: !!python/object:os.system x\n", "m.yaml:1: platform: cannot read the value tagged"),
        (
            HEAD + "    fields:\n      ? !!int nope\n      : nome\n",
            "m.yaml:8: entities.sectors.fields: cannot read",
        ),
        ("a: &x [1, *x]\n", "m.yaml:1: (yaml): nested too deeply, or an alias (*name) refers to itself"),
    ],
)
def test_yaml_tags_and_recursive_aliases_are_problems(text: str, expected: str) -> None:
    problems = _problems(text)
    assert problems[0].startswith(expected), problems


def test_alias_expansion_is_capped() -> None:
    """Seven levels of ten aliases each expand to 10**8 values: refused at once, not after 17 s."""
    lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    text = "platform: smartepi\nentities: {}\nlookups:\n" + "\n".join(lines) + "\n"
    started = time.perf_counter()
    problems = _problems(text)
    assert time.perf_counter() - started < 5
    assert problems == [
        "m.yaml:1: (yaml): the file expands to more than 100000 values; aliases (*name) repeat what "
        "an anchor (&name) holds: write the values out or use fewer aliases"
    ]
    entity = HEAD.split("entities:\n")[1]
    shared = "platform: smartepi\nlookups:\n  a: &t {x: 1}\n  b: *t\nentities:\n" + entity
    assert load_mapping_texts({"m.yaml": shared + "    fields: {name: nome}\n"})  # modest aliases still load


@pytest.mark.parametrize(
    "pattern", [r"(a+)+$", r"(a*)*", r"^(\d+\.?)+$", r"(a|ab)+$", r"(x|)+", r"(.*a){10}", r"(\w+\s?)+$"]
)
def test_patterns_that_backtrack_exponentially_are_refused(pattern: str) -> None:
    text = HEAD + f"    fields:\n      name: {{from: nome, pattern: '{pattern}'}}\n"
    problems = _problems(text)
    assert len(problems) == 1 and problems[0].startswith("m.yaml:8: entities.sectors.fields.name.pattern: ")
    assert "exponential time" in problems[0] and "possessive" in problems[0]


@pytest.mark.parametrize(
    "pattern",
    [r"\d{3}\.\d{3}\.\d{3}-\d{2}", r"[a-z]+(?:-[a-z]+)*", r"(\d|-)+", r"(foo|bar)+", r"(?>a+)+", r"(a++)+"],
)
def test_safe_patterns_load_and_apply(pattern: str) -> None:
    text = HEAD + f"    fields:\n      name: {{from: nome, pattern: '{pattern}'}}\n"
    em = load_mapping_texts({"m.yaml": text}).entity("smartepi", "sectors")
    started = time.perf_counter()
    result = em.map_rows([{"codigo": "1", "nome": "a" * 40 + "!"}])
    assert time.perf_counter() - started < 1
    assert len(result.quarantine) == 1  # no pattern above matches that value
