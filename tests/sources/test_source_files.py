"""FileSource: CSV (encodings, delimiters) and JSONL exports."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from sync.errors import ConfigError, SourceError
from sync.sources import FileSourceConfig, open_source
from sync.sources.files import FileSource


def files(tmp_path: Path, **entities: dict[str, object]) -> FileSource:
    src = open_source(FileSourceConfig.model_validate({"directory": str(tmp_path), "entities": entities}))
    assert isinstance(src, FileSource)
    return src


def test_csv_with_encoding_and_delimiter(tmp_path: Path) -> None:
    (tmp_path / "func.csv").write_bytes(
        "matricula;nome;email\n007;Conceição;\n8;João;j@a.com\n".encode("cp1252")
    )
    src = files(
        tmp_path, employees={"path": "func.csv", "encoding": "cp1252", "delimiter": ";", "key": "matricula"}
    )
    rows = list(src.read("employees"))
    assert rows == [
        {"matricula": "007", "nome": "Conceição", "email": None},
        {"matricula": "8", "nome": "João", "email": "j@a.com"},
    ]
    assert src.count("employees") == 2
    assert [r["nome"] for r in src.read_keys("employees", ["8"])] == ["João"]


def test_default_path_is_entity_csv(tmp_path: Path) -> None:
    (tmp_path / "setores.csv").write_text("codigo,nome\nS01,Soldagem\n", encoding="utf-8")
    assert list(files(tmp_path).read("setores")) == [{"codigo": "S01", "nome": "Soldagem"}]


def test_jsonl_decimals_and_since(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text(
        '{"sku": 1, "price": 12.30, "updated_at": "2024-01-01T00:00:00Z"}\n'
        "\n"
        '{"sku": 2, "price": 0.1, "updated_at": "2024-03-01T00:00:00+02:00"}\n',
        encoding="utf-8",
    )
    src = files(
        tmp_path, products={"path": "p.jsonl", "format": "jsonl", "key": "sku", "updated_at": "updated_at"}
    )
    rows = list(src.read("products"))
    assert [(r["sku"], r["price"]) for r in rows] == [("1", Decimal("12.30")), ("2", Decimal("0.1"))]
    since = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    assert [r["sku"] for r in src.read("products", since=since)] == ["2"]
    assert src.max_updated_at("products") == dt.datetime(2024, 2, 29, 22, 0, tzinfo=dt.UTC)


def test_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    (tmp_path / "latin.csv").write_bytes("a\nção\n".encode("latin-1"))
    src = files(tmp_path, bad={"path": "bad.jsonl", "format": "jsonl"}, latin={"path": "latin.csv"})
    with pytest.raises(SourceError, match=r"bad.jsonl:2: each line must be a JSON object"):
        list(src.read("bad"))
    with pytest.raises(SourceError, match="not utf-8"):
        list(src.read("latin"))
    with pytest.raises(SourceError, match="cannot open"):
        list(src.read("nothing"))
    with pytest.raises(ConfigError):
        src.write_back("bad", "a", "1", {"a": 2})
    with pytest.raises(ConfigError):
        src.read("bad", since=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
