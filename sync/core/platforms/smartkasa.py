"""SmartKasa (contracts/smartkasa.md §5): the catalog erpsync writes.

SmartKasa accepts duplicates (a resent POST creates a second product), so products carry
a marker (``alter_number`` holds the ERP key) and runs that do not read the whole catalog
look a record up before creating it. Products and categories go in batch requests.
"""

from __future__ import annotations

from sync.core.platforms.model import ChildDef, EntityDef, FieldDef, PlatformDef

SMARTKASA = PlatformDef(
    name="smartkasa",
    page_size=100,
    accepts_duplicates=True,
    lookup_before_create=True,
    reference_lists=("shops", "unit_types", "subgroups"),
    entities=(
        EntityDef(
            "categories",
            (
                FieldDef("title", required=True),
                FieldDef("parent_id", ref="categories"),
                FieldDef("color_id", "integer"),
            ),
            natural_key=("title+parent_id",),
            batchable=True,
        ),
        EntityDef(
            "products",
            (
                FieldDef("number"),
                FieldDef("title", required=True),
                FieldDef("unit_type_id", "integer"),
                FieldDef("price", "decimal"),
                FieldDef("procurement_price", "decimal"),
                FieldDef("alter_title"),
                FieldDef("alter_number"),
                FieldDef("category_id", ref="categories"),
                FieldDef("sold_by_weight", "boolean"),
                FieldDef("is_free_price", "boolean"),
                FieldDef("classifier_code"),
                FieldDef("classifier_type_id", "integer"),
                FieldDef("tax_group_id", "integer"),
                FieldDef("subgroup_id", "integer"),
                FieldDef("remote_id"),
            ),
            natural_key=("number",),
            marker="alter_number",
            batchable=True,
            children=(
                ChildDef(
                    "cards",
                    (
                        FieldDef("shop_id", "integer", required=True),
                        FieldDef("count", "decimal"),
                        FieldDef("counting_enabled", "boolean"),
                    ),
                    key="shop_id",
                ),
            ),
        ),
    ),
)
