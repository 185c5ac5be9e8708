"""The platform catalogue (sync/core/platforms) agrees with the client models and with the
sandboxes' request schemas: one contract test, so the three cannot drift apart (#15 item 4).

A field added to a sandbox but not to the catalogue (or the other way round) fails here
with the names to add; fields the platform has and erpsync deliberately leaves alone are
listed below, so leaving one out is a decision, not an accident."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from sync.clients.smartepi import models as epi_models
from sync.clients.smartkasa import models as kasa_models
from sync.core.mapping import spec
from sync.core.platforms import CATALOGUE, platform, tables
from sync.sandbox.smartepi.schema import SPECS
from sync.sandbox.smartkasa import routes_catalog

EPI_KIND = {
    "str": "string",
    "bool": "boolean",
    "int": "integer",
    "date": "date",
    "datetime": "datetime",
    "ids": "string",
}
KASA_KIND = {
    routes_catalog.to_str: "string",
    routes_catalog.to_int: "integer",
    routes_catalog.to_decimal: "decimal",
    routes_catalog.to_bool: "boolean",
}
# SmartKasa fields the platform accepts that erpsync does not manage (contract §5).
KASA_UNMANAGED = {
    "categories": {"partner_id", "shop_ids"},
    "products": {
        "category_type_id",
        "is_without_number",
        "portion_amount",
        "portion_type_id",
        "bookmark_ids",
        "partner_id",
        "picture",
    },
    "cards": {"product_id"},
}
EPI_MODELS: dict[str, type[BaseModel]] = {
    "sectors": epi_models.Sector,
    "cost_centers": epi_models.CostCenter,
    "job_roles": epi_models.JobRole,
    "groups": epi_models.Group,
    "employees": epi_models.Employee,
    "products": epi_models.Product,
    "access_groups": epi_models.AccessGroup,
}
KASA_MODELS: dict[str, type[BaseModel]] = {
    "categories": kasa_models.Category,
    "products": kasa_models.Product,
}


def _types(fields) -> dict[str, str]:
    return {f.name: f.type for f in fields}


@pytest.mark.parametrize("entity", [e.name for e in platform("smartepi").entities])
def test_smartepi_catalogue_equals_the_sandbox_schema_and_the_client_models(entity: str) -> None:
    e = platform("smartepi").entity(entity)
    assert e is not None
    sandbox = SPECS[entity.replace("_", "-")]
    assert _types(e.fields) == {f.name: EPI_KIND[f.kind] for f in sandbox.fields}
    assert {f.name for f in e.fields if f.required} == {f.name for f in sandbox.fields if f.required}
    assert {f.name: f.ref for f in e.fields if f.ref} == {
        f.name: f.ref.replace("-", "_") for f in sandbox.fields if f.ref and f.name != "accessGroupIds"
    }
    assert e.writable == sandbox.writable
    assert {c.name: _types(c.fields) for c in e.children} == {
        name: {f.name: EPI_KIND[f.kind] for f in fields} for name, fields in sandbox.children.items()
    }
    model_fields = set(EPI_MODELS[entity].model_fields)
    missing = {f.attribute for f in e.fields} - model_fields
    assert not missing, f"the client model {EPI_MODELS[entity].__name__} lacks {sorted(missing)}"


@pytest.mark.parametrize("entity", [e.name for e in platform("smartkasa").entities])
def test_smartkasa_catalogue_equals_the_sandbox_schema_and_the_client_models(entity: str) -> None:
    e = platform("smartkasa").entity(entity)
    assert e is not None
    coercers = {"categories": routes_catalog.CATEGORY, "products": routes_catalog.PRODUCT}[entity]
    sandbox = {name: KASA_KIND[c] for name, c in coercers.items() if name not in KASA_UNMANAGED[entity]}
    assert _types(e.fields) == sandbox
    for child in e.children:
        card = {
            n: KASA_KIND[c] for n, c in routes_catalog.CARD.items() if n not in KASA_UNMANAGED[child.name]
        }
        assert _types(child.fields) == card
        assert set(_types(child.fields)) <= set(kasa_models.Card.model_fields)
    model_fields = set(KASA_MODELS[entity].model_fields)
    missing = {f.attribute for f in e.fields} - model_fields
    assert not missing, f"the client model {KASA_MODELS[entity].__name__} lacks {sorted(missing)}"


def test_mapping_validation_and_the_planner_read_the_catalogue() -> None:
    assert tables.known_fields() == spec.KNOWN_FIELDS
    assert tables.field_types() == spec.FIELD_TYPES
    assert tables.known_refs() == spec.KNOWN_REFS
    assert tables.natural_keys() == spec.DEFAULT_NATURAL_KEYS
    assert tables.markers() == spec.DEFAULT_MARKERS
    from sync.core.planner import DEFAULT_BATCH_ENTITIES, DEFAULT_PAGE_SIZE

    assert dict(DEFAULT_PAGE_SIZE) == {name: p.page_size for name, p in CATALOGUE.items()}
    assert dict(DEFAULT_BATCH_ENTITIES) == {"smartkasa": frozenset({"categories", "products"})}


def test_the_shared_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        spec.KNOWN_FIELDS["smartepi"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.DEFAULT_MARKERS[("smartepi", "employees")] = "code"  # type: ignore[index]


def test_every_marker_and_natural_key_names_a_catalogue_field() -> None:
    for p in CATALOGUE.values():
        for e in p.writable():
            names = e.field_names()
            if e.marker:
                assert e.marker in names
            for key in e.natural_key or ():
                assert set(key.split("+")) <= names, (p.name, e.name, key)
            for c in e.children:
                assert c.key in c.field_names()
