"""SmartEPI (contracts/smartepi.md §5.5): the org entities and PPE products erpsync writes.

Bodies are camelCase (``sectorId``); the client's pydantic models are snake_case
(``sector_id``): ``wire`` names the model attribute. SmartEPI rejects a duplicate name or
CPF, so a resent create fails instead of duplicating (no marker needed).
"""

from __future__ import annotations

from sync.core.platforms.model import ChildDef, EntityDef, FieldDef, PlatformDef

_NAME = FieldDef("name", required=True)

SMARTEPI = PlatformDef(
    name="smartepi",
    page_size=100,
    accepts_duplicates=False,
    lookup_before_create=False,
    reference_lists=("access_groups",),
    entities=(
        EntityDef("sectors", (_NAME, FieldDef("code")), natural_key=("name",)),
        EntityDef("cost_centers", (_NAME, FieldDef("code")), natural_key=("name",)),
        EntityDef("job_roles", (_NAME, FieldDef("description")), natural_key=("name",)),
        EntityDef("groups", (_NAME, FieldDef("description")), natural_key=("name",)),
        EntityDef(
            "employees",
            (
                _NAME,
                FieldDef("identification"),
                FieldDef("email"),
                FieldDef("sectorId", ref="sectors", wire="sector_id"),
                FieldDef("costCenterId", ref="cost_centers", wire="cost_center_id"),
                FieldDef("costCenter2Id", ref="cost_centers", wire="cost_center2_id"),
                FieldDef("jobRoleId", ref="job_roles", wire="job_role_id"),
                FieldDef("groupId", ref="groups", wire="group_id"),
                FieldDef("accessGroupIds", wire="access_group_ids"),
                FieldDef("active", "boolean"),
                FieldDef("admissionDate", "date", wire="admission_date"),
            ),
            natural_key=("identification", "email"),
        ),
        EntityDef(
            "products",
            (
                _NAME,
                FieldDef("code"),
                FieldDef("description"),
                FieldDef("unit"),
                FieldDef("active", "boolean"),
            ),
            natural_key=("name",),
            children=(
                ChildDef("sizes", (FieldDef("name", required=True),), key="name"),
                ChildDef(
                    "certificates",
                    (FieldDef("number", required=True), FieldDef("expiresAt", "date", wire="expires_at")),
                    key="number",
                ),
            ),
        ),
        EntityDef("access_groups", (_NAME,), writable=False),
    ),
)
