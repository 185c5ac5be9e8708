"""Typed configuration of ERP sources (the ``erp:`` block of a tenant).

``SourceConfig`` is a discriminated union on ``kind``; the settings module embeds it.
An ERP entity not listed under ``entities`` defaults to a table (SQL) or a
``<entity>.csv`` file (files) of the same name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlEntityConfig(_Strict):
    """One ERP entity read from SQL: a table, or a query (read-only)."""

    table: str | None = None
    query: str | None = None
    key: str | None = None  # ERP key column: stringified on read; needed by read_keys/write_back
    updated_at: str | None = None  # column for incremental reads (``since``) and max_updated_at
    writable: bool = False  # write_back allowed (tables only)

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlEntityConfig:
        if self.table is not None and self.query is not None:
            raise ValueError("give table or query, not both")
        if self.writable and self.query is not None:
            raise ValueError("a query cannot be written back: use a table")
        return self


class SqlSourceConfig(_Strict):
    kind: Literal["sql"] = "sql"
    url: SecretStr  # may embed a password: never printed
    entities: dict[str, SqlEntityConfig] = Field(default_factory=dict)
    batch_size: int = Field(default=5_000, ge=1, le=1_000_000)  # rows fetched per round trip

    @field_validator("url")
    @classmethod
    def _url_ok(cls, value: SecretStr) -> SecretStr:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("not a SQLAlchemy database URL") from None
        return value


class FileEntityConfig(_Strict):
    """One ERP entity exported as a CSV or JSONL file (relative to the source directory)."""

    path: str
    format: Literal["csv", "jsonl"] = "csv"
    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    key: str | None = None
    updated_at: str | None = None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


class FileSourceConfig(_Strict):
    kind: Literal["files"] = "files"
    directory: str
    entities: dict[str, FileEntityConfig] = Field(default_factory=dict)


class TrytonColumnConfig(_Strict):
    """One column of a Tryton entity's rows (docs/tryton.md "Source"): a dotted field path
    from the entity's model (``party.identifiers.code_compact``), optionally filtered on the
    records it ends in (``where: {type: br_cpf}``), or read from another ``model`` whose
    ``link`` field points at this row's ``to`` path (analytic rules → their party)."""

    path: str = Field(min_length=1)
    where: dict[str, Any] = Field(default_factory=dict)  # conditions on the path's final records
    pick: Literal["first", "all", "join", "count"] = "first"  # x2many: which value(s)
    sep: str = "+"  # pick: join separator (values sorted, numbers normalised)
    model: str | None = None  # related model (reverse link)
    link: str | None = None  # its field pointing at this row's ``to`` value
    to: str = "id"  # the path on this row that ``link`` points at
    domain: list[Any] = Field(default_factory=list)  # extra domain on the related model

    @model_validator(mode="after")
    def _related(self) -> TrytonColumnConfig:
        if (self.model is None) != (self.link is None):
            raise ValueError("a related column needs both model and link")
        return self


class TrytonStockConfig(_Strict):
    """Rows per (record, warehouse) with the warehouse's computed ``quantity``."""

    warehouses: list[str] = Field(min_length=1)  # stock.location codes of type warehouse
    column: str = "warehouse"  # the row column holding the warehouse code
    quantity: str = "quantity"  # the row column holding the quantity


class TrytonEntityConfig(_Strict):
    """One ERP entity read from Tryton: a model, a domain, a context and columns."""

    model: str
    domain: list[Any] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict)
    columns: dict[str, TrytonColumnConfig | str] = Field(default_factory=dict)
    key: str = "id"  # the column holding the ERP key (``id``: the record id)
    active_test: bool = False  # False: archived records are read too (mark them with ``active``)
    distinct: bool = False  # drop repeated rows (variants repeating their template's CA)
    changes: list[str] | None = None  # paths whose last_modified_at dates a change (default: derived)
    writable: bool = False  # write_back allowed (console edits of pull/both fields)
    stock: TrytonStockConfig | None = None


class TrytonEntityOverride(_Strict):
    """``erp.entities.<name>`` of a Tryton source: any part of an entity. For a default entity
    (sync.sources.tryton.DEFAULT_ENTITIES) only what is given changes, columns one by one; a
    new entity needs ``model`` and ``columns``."""

    model: str | None = None
    domain: list[Any] | None = None
    context: dict[str, Any] | None = None
    columns: dict[str, TrytonColumnConfig | str] | None = None
    key: str | None = None
    active_test: bool | None = None
    distinct: bool | None = None
    changes: list[str] | None = None
    writable: bool | None = None
    stock: TrytonStockConfig | None = None


class TrytonSourceConfig(_Strict):
    kind: Literal["tryton"] = "tryton"
    url: str  # http(s)://host:port of trytond (the JSON-RPC root)
    database: str = Field(min_length=1)
    user: str = Field(min_length=1)  # one integration user per company (tenant)
    password: SecretStr
    entities: dict[str, TrytonEntityOverride] = Field(default_factory=dict)  # merged over the defaults
    page_size: int = Field(default=1_000, ge=1, le=100_000)  # keyset page (field guide: >1000 buys nothing)
    overlap_seconds: float = Field(default=300.0, ge=0)  # re-read window of the change poll (§5.2)
    timeout: float = Field(default=60.0, gt=0)
    context: dict[str, Any] = Field(default_factory=dict)  # sent with every call (e.g. company)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the Tryton url must start with http:// or https://")
        return value.rstrip("/")


SourceConfig = Annotated[SqlSourceConfig | FileSourceConfig | TrytonSourceConfig, Field(discriminator="kind")]
