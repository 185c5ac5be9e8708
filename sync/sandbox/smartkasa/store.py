"""In-memory state of the SmartKasa sandbox: tenants (one per API key), their tables, and session tokens.

Records are plain dicts in internal form: decimals as ``Decimal``, timestamps as epoch floats plus the
UTC offset they are rendered with (``_tz``), dates as ``date``. Integer ids come from one counter per
table shared by all tenants (one database, as on the real platform), UUIDs from a seeded generator so a
seeded sandbox is reproducible. Every request handler runs on the event loop without awaiting while it
touches the store, so no lock is needed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig, TenantSpec
from sync.sandbox.smartkasa.formats import MONEY, QTY, quantize, to_date, to_decimal

Record = dict[str, Any]


class Rec(dict[str, Any]):
    """A stored record that counts its own changes, so views can cache renderings safely.

    Every write path (API, seeds, console edits, generators) goes through ``__setitem__``, ``update``
    or ``pop``; any of them bumps ``version`` and drops cached renderings.
    """

    __slots__ = ("cache", "version")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0
        self.cache: dict[str, Any] = {}

    def _changed(self) -> None:
        self.version += 1
        if self.cache:
            self.cache.clear()

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def pop(self, key: str, *default: Any) -> Any:
        self._changed()
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._changed()
        return super().setdefault(key, default)


UUID_TABLES = ("categories", "products", "shifts", "receipts", "payment_transactions")
INT_TABLES = (
    "cards",
    "subgroups",
    "shops",
    "employees",
    "roles",
    "terminals",
    "partners",
    "z_reports",
    "imports",
)
TABLES = UUID_TABLES + INT_TABLES
_FIRST_ID = {
    "cards": 10766,
    "subgroups": 7277,
    "shops": 37916,
    "employees": 1299,
    "roles": 854,
    "terminals": 19987,
    "partners": 7697,
    "z_reports": 51,
    "imports": 584,
}

# Internal types of the fields a seed or console edit may set (everything else is stored as given).
DECIMALS: dict[str, dict[str, Decimal]] = {
    "products": {"price": MONEY, "procurement_price": MONEY},
    "cards": {"count": QTY},
    "shifts": {"cash_balance": MONEY},
    "receipts": {
        "total_amount": MONEY,
        "discount_amount": MONEY,
        "discount_percentage": MONEY,
        "rounding_amount": MONEY,
    },
    "payment_transactions": {"amount": MONEY, "deposit_amount": MONEY, "change_amount": MONEY},
}
ITEM_DECIMALS = {"price": MONEY, "amount": MONEY, "quantity": QTY}
MOMENTS = {"shifts": ("opened_at", "closed_at"), "payment_transactions": ("timestamp",)}
DATES = {"employees": ("birthday", "joined_at")}

UNIT_TYPES: list[Record] = [
    {"id": i, "code": c, "is_visible": True, "is_weighted": w, "name": n, "short_name": s}
    for i, c, n, s, w in [
        (4, 2009, "Штука", "шт", False),
        (5, 2061, "Пляшка", "пляшка", False),
        (6, 3011, "Порція", "порція", False),
        (7, 102, "Кілометр", "км", False),
        (8, 101, "Метр", "м", False),
        (9, 303, "Грам", "гр", True),
        (10, 301, "Кілограм", "кг", True),
        (11, 178, "Хвилина", "хв", False),
        (12, 175, "Година", "год", False),
        (13, 144, "Міліметр", "мм", True),
        (14, 104, "Сантиметр", "см", True),
    ]
]
UNITS_BY_CODE = {u["code"]: u for u in UNIT_TYPES}
UNITS_BY_ID = {u["id"]: u for u in UNIT_TYPES}


def parse_moment(value: Any) -> float | None:
    """Seed input for a timestamp: epoch number or ISO text."""
    if value is None or isinstance(value, int | float):
        return value
    moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass
class TokenRec:
    tenant_key: str = field(repr=False)
    kind: str  # "access" | "refresh"
    family: str  # the login this token descends from (logout revokes the family)
    expires_at: float
    uid: str
    session_token: str
    used: bool = False


@dataclass
class Tenant:
    api_key: str
    phone_number: str
    password: str
    user_id: int
    rng: random.Random
    tables: dict[str, dict[Any, Record]] = field(default_factory=lambda: {t: {} for t in TABLES})

    @property
    def owner_id(self) -> int:
        return self.user_id

    def __repr__(self) -> str:
        return f"Tenant(user_id={self.user_id}, phone_number={self.phone_number!r})"


class Store:
    def __init__(self, config: SmartKasaSandboxConfig) -> None:
        self.config = config
        self.tenants: dict[str, Tenant] = {}
        self.tokens: dict[str, TokenRec] = {}  # token uid → record
        self.token_cache: dict[str, TokenRec] = {}  # raw token text → record (after one signature check)
        self._counters = {t: itertools.count(_FIRST_ID[t]) for t in INT_TABLES}
        self._users = itertools.count(103927)
        self._addresses = itertools.count(38195)
        self._offsets = itertools.cycle(config.utc_offsets_minutes or [0])
        self.rng = random.Random(config.seed)
        for spec in config.tenants:
            self.add_tenant(spec)

    # --- basics --------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.config.clock_skew_s

    def new_id(self, tenant: Tenant, table: str) -> Any:
        if table in UUID_TABLES:
            return str(uuid.UUID(int=tenant.rng.getrandbits(128), version=4))
        return next(self._counters[table])

    def stamp(self, record: Record, when: float | None = None) -> Record:
        moment = self.now() if when is None else when
        record.setdefault("created_at", moment)
        record["updated_at"] = record.get("updated_at") or moment
        record.setdefault("_tz", next(self._offsets))
        return record

    def insert(self, tenant: Tenant, table: str, record: Record, when: float | None = None) -> Record:
        record = Rec(record)
        if record.get("id") is None:
            record["id"] = self.new_id(tenant, table)
        self.stamp(record, when)
        tenant.tables[table][record["id"]] = record
        return record

    def touch(self, record: Record) -> None:
        record["updated_at"] = max(self.now(), record.get("updated_at") or 0.0)

    # --- tenants -------------------------------------------------------------------------

    def add_tenant(self, spec: TenantSpec) -> Tenant:
        if spec.api_key in self.tenants:
            raise KeyError("tenant exists")
        tenant = Tenant(
            api_key=spec.api_key,
            phone_number=spec.phone_number,
            password=spec.password,
            user_id=next(self._users),
            rng=random.Random(f"{self.config.seed}:{len(self.tenants)}"),
        )
        self.tenants[spec.api_key] = tenant
        self._seed_tenant(tenant, spec)
        return tenant

    def reset(self) -> None:
        self.tenants.clear()
        self.tokens.clear()
        self.token_cache.clear()
        for spec in self.config.tenants:
            self.add_tenant(spec)

    def _seed_tenant(self, tenant: Tenant, spec: TenantSpec) -> None:
        self.insert(tenant, "roles", {"name": "Касир", "state": 0})
        self.insert(
            tenant,
            "partners",
            {
                "code": "744328675",
                "name": "ДП Львівтрейд",
                "partner_type_id": 0,
                "state": 0,
                "title": "Just for test",
            },
        )
        for n in range(1, spec.shops + 1):
            shop = self.seed(tenant, "shops", {"title": f"Магазин {n}", "email": f"shop{n}@example.com"})
            for k in range(spec.terminals_per_shop):
                self.seed(tenant, "terminals", {"name": f"Каса {n}.{k + 1}", "shop_id": shop["id"]})

    # --- direct inserts (fixtures, admin seed, console edits) ----------------------------

    def defaults(self, tenant: Tenant, table: str) -> Record:
        owner = tenant.owner_id
        if table == "shops":
            return {
                "address": None,
                "business_category_id": 1,
                "email": None,
                "employees_count": 0,
                "fiscal_numbers": [],
                "fiscalization_enabled": False,
                "is_excise_taxation": False,
                "is_vat_taxation": True,
                "owner_id": owner,
                "phone_number": "0971234567",
                "state": 0,
                "title": "Test shop",
                "website_url": None,
            }
        if table == "terminals":
            return {
                "activated_at": None,
                "core_terminal_id": 1,
                "name": "Test terminal",
                "picture": None,
                "properties": None,
                "serial_number": str(tenant.rng.randrange(10**14, 10**15)),
                "shop_id": None,
                "state": 1,
            }
        if table == "categories":
            return {"color_id": None, "parent_id": None, "partner_id": None, "shop_ids": [], "title": ""}
        if table == "subgroups":
            return {"title": ""}
        if table == "products":
            return {
                "alter_number": None,
                "alter_title": None,
                "bookmark_ids": [],
                "category_id": None,
                "category_type_id": None,
                "classifier_code": None,
                "classifier_type_id": 0,
                "is_free_price": False,
                "is_without_number": False,
                "number": None,
                "owner_id": owner,
                "partner_id": None,
                "picture": None,
                "portion_amount": None,
                "portion_type_id": None,
                "price": Decimal(0),
                "procurement_price": None,
                "remote_id": None,
                "sold_by_weight": False,
                "subgroup_id": None,
                "tax_group_id": 0,
                "title": "",
                "unit_type_id": 0,
                "user_id": owner,
            }
        if table == "cards":
            return {
                "count": Decimal(0),
                "counting_enabled": True,
                "owner_id": None,
                "product_id": None,
                "shop_id": None,
            }
        if table == "employees":
            return {k: None for k in EMPLOYEE_FIELDS} | {"state": 0, "shop_ids": []}
        if table == "shifts":
            return {
                "cash_balance": Decimal(0),
                "closed_at": None,
                "closed_by": None,
                "device_uid": str(uuid.UUID(int=tenant.rng.getrandbits(128), version=4)),
                "employee_id": None,
                "fiscal_number": str(tenant.rng.randrange(10**6, 10**7)),
                "opened_at": self.now(),
                "opened_by": "John Dow",
                "registrar_fiscal_number": None,
                "remote_shift_id": str(uuid.UUID(int=tenant.rng.getrandbits(128), version=4)),
                "state": 0,
                "terminal_id": None,
                "terminal_user_id": None,
            }
        if table == "roles":
            return {"name": "Test", "state": 0}
        if table == "partners":
            return {"code": None, "name": None, "partner_type_id": 0, "state": 0, "title": None}
        return {}

    def seed(self, tenant: Tenant, table: str, fields: Record) -> Record:
        """Insert a pre-existing record as given (no API validation), filling the usual defaults."""
        if table not in TABLES:
            raise KeyError(table)
        record = self.defaults(tenant, table) | self.materialize(table, fields)
        when = parse_moment(fields.get("created_at"))
        if table == "shops" and record.get("address") is None:
            record["address"] = self.new_address(
                tenant, {"city_name": "Київ", "content": "пров. Вічева, 17", "zip_code": "08800"}
            )
        if table == "receipts":
            record.setdefault("items", [])
            record.setdefault("transaction_ids", [])
        return self.insert(tenant, table, record, when)

    def materialize(self, table: str, fields: Record) -> Record:
        """Seed/console values → internal types (decimals, epochs, dates)."""
        out = dict(fields)
        for key, step in DECIMALS.get(table, {}).items():
            if out.get(key) is not None:
                out[key] = quantize(to_decimal(out[key]) or Decimal(0), step)
        for key in MOMENTS.get(table, ()):
            if key in out:
                out[key] = parse_moment(out[key])
        for key in DATES.get(table, ()):
            if key in out and not isinstance(out[key], dt.date):
                out[key] = to_date(out[key])
        for key in ("created_at", "updated_at"):
            if key in out:
                out[key] = parse_moment(out[key])
        if table == "receipts" and "items" in out:
            out["items"] = [self._item(i) for i in out["items"]]
        return out

    def _item(self, item: Record) -> Record:
        item = dict(item)
        for key, step in ITEM_DECIMALS.items():
            if item.get(key) is not None:
                item[key] = quantize(to_decimal(item[key]) or Decimal(0), step)
        return item

    def new_address(self, tenant: Tenant, fields: Record, address_type_id: int = 0) -> Record:
        record = {
            "id": next(self._addresses),
            "address_type_id": address_type_id,
            "city_name": fields.get("city_name"),
            "content": fields.get("content"),
            "zip_code": fields.get("zip_code"),
        }
        return self.stamp(record)


EMPLOYEE_FIELDS = (
    "phone_number",
    "email",
    "first_name",
    "last_name",
    "middle_name",
    "inn",
    "passport_serial",
    "passport_number",
    "role_id",
    "address_actual",
    "address_legal",
    "joined_at",
    "birthday",
    "gender_type_id",
    "notes",
    "additional_phone_number",
    "pin_code",
    "avatar",
)
