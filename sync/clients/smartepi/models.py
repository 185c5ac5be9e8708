"""SmartEPI record shapes (smartepi.md §5.5), as pydantic models.

Two models per entity: ``<Entity>Fields`` is what a client may *send* (every field
optional so one model serves create and the partial PUT; unknown keys are refused so a
mapping typo fails before any request), ``<Entity>`` is what a read returns (adds the
read-only ``id``/``createdAt``/``updatedAt``; unknown fields are ignored, per the
"additive changes only" rule). Python attributes are snake_case, the wire is camelCase.

The client's list/get methods hand back plain dicts (cheap at 100 rows a page);
``parse`` gives a typed view when a caller wants one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

READ_ONLY_FIELDS = frozenset({"id", "createdAt", "updatedAt"})

_WRITE = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)
_READ = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)


class _Write(BaseModel):
    model_config = _WRITE


class _Read(BaseModel):
    model_config = _READ

    id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


# --- org entities ------------------------------------------------------------------


class SectorFields(_Write):
    name: str | None = None
    code: str | None = None


class Sector(_Read):
    name: str | None = None
    code: str | None = None


class CostCenterFields(SectorFields):
    pass


class CostCenter(Sector):
    pass


class JobRoleFields(_Write):
    name: str | None = None
    description: str | None = None


class JobRole(_Read):
    name: str | None = None
    description: str | None = None


class GroupFields(JobRoleFields):
    pass


class Group(JobRole):
    pass


class AccessGroup(_Read):
    name: str | None = None


class EmployeeFields(_Write):
    name: str | None = None
    identification: str | None = None
    email: str | None = None
    sector_id: str | None = None
    cost_center_id: str | None = None
    cost_center2_id: str | None = None
    job_role_id: str | None = None
    group_id: str | None = None
    access_group_ids: list[str] | None = None
    active: bool | None = None
    admission_date: dt.date | None = None


class Employee(_Read):
    name: str | None = None
    identification: str | None = None
    email: str | None = None
    sector_id: str | None = None
    cost_center_id: str | None = None
    cost_center2_id: str | None = None
    job_role_id: str | None = None
    group_id: str | None = None
    access_group_ids: list[str] = []
    active: bool = True
    admission_date: dt.date | None = None


class ProductSizeFields(_Write):
    id: str | None = None  # present = upsert that size, absent = add one
    name: str | None = None


class CertificateFields(_Write):
    id: str | None = None
    number: str | None = None
    expires_at: dt.date | None = None


class ProductFields(_Write):
    name: str | None = None
    code: str | None = None
    description: str | None = None
    unit: str | None = None
    active: bool | None = None
    sizes: list[ProductSizeFields] | None = None
    certificates: list[CertificateFields] | None = None


class ProductSize(BaseModel):
    model_config = _READ
    id: str | None = None
    name: str | None = None


class Certificate(BaseModel):
    model_config = _READ
    id: str | None = None
    number: str | None = None
    expires_at: dt.date | None = None


class Product(_Read):
    name: str | None = None
    code: str | None = None
    description: str | None = None
    unit: str | None = None
    active: bool = True
    sizes: list[ProductSize] = []
    certificates: list[Certificate] = []


# --- transactions (read-only, list-only) ---------------------------------------------


class _Transaction(_Read):
    employee_id: str | None = None
    product_id: str | None = None
    size_id: str | None = None
    quantity: int | None = None
    cost_center_id: str | None = None
    sector_id: str | None = None
    device_id: str | None = None


class Withdrawal(_Transaction):
    withdrawal_status: str | None = None


class Return(_Transaction):
    return_status: str | None = None


class Exchange(_Transaction):
    returned_product_id: str | None = None
    exchange_status: str | None = None


class TrainingRecord(_Read):
    employee_id: str | None = None
    title: str | None = None
    completed_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], record: dict[str, Any]) -> M:
    """Typed view of one record as returned by the API (unknown fields ignored)."""
    return model.model_validate(record)
