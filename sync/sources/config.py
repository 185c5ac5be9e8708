"""Typed configuration of ERP sources (the ``erp:`` block of a tenant).

``SourceConfig`` is a discriminated union on ``kind``; the settings module embeds it.
An ERP entity not listed under ``entities`` defaults to a table (SQL) or a
``<entity>.csv`` file (files) of the same name.
"""

from __future__ import annotations

from typing import Annotated, Literal

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


SourceConfig = Annotated[SqlSourceConfig | FileSourceConfig, Field(discriminator="kind")]
