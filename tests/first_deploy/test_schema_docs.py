"""Reference documentation a user can trust (#16.14).

The configuration reference, the sink tables and the platform field catalogue are generated
from the code (``sync.docgen``) and the committed docs must equal what it generates, so they
cannot drift; ``erpsync config schema`` emits JSON Schemas the shipped files validate against.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from sync.cli import app
from sync.core.platforms import CATALOGUE
from sync.docgen import generated_docs, json_schema, main
from sync.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_docs_equal_the_generated_ones() -> None:
    for path, text in generated_docs(ROOT).items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run `python -m sync.docgen`"
    assert main(["--root", str(ROOT), "--check"]) == 0


def test_a_stale_doc_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "configuration.md").write_text("# Configuration\n\nprose\n", encoding="utf-8")
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert main(["--root", str(tmp_path)]) == 0  # rewrites the generated part, keeps the prose
    text = (tmp_path / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert text.startswith("# Configuration\n\nprose\n") and main(["--root", str(tmp_path), "--check"]) == 0


def test_the_reference_names_every_setting_and_every_platform_field() -> None:
    config = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name, info in Settings.model_fields.items():
        assert f"| `{info.alias or name}` |" in config
    assert "| `event_token` |" in config and "| `shops` |" in config  # nested models too
    fields = (ROOT / "docs" / "platform-fields.md").read_text(encoding="utf-8")
    for platform in CATALOGUE.values():
        for entity in platform.entities:
            assert f"### {platform.name} `{entity.name}`" in fields
            for f in entity.fields:
                required = "yes" if f.required else ""
                assert re.search(rf"\| `{f.name}` \| {f.type} \| {required} \|", fields), (
                    entity.name,
                    f.name,
                )


def test_docs_point_nowhere_outside_the_repository() -> None:
    for name in ("configuration.md", "platform-fields.md", "exit-codes.md", "mappings.md"):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        for outside in ("§", "/work/", "contracts/", "design.md", "field guide"):
            assert outside not in text, (name, outside)
    config = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "POST /erp/events" in config and "Authorization: Bearer" in config and "401" in config


@pytest.mark.parametrize("kind", ["config", "mapping"])
def test_config_schema_is_json_schema_the_shipped_files_satisfy(kind: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "schema", kind])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == json_schema(kind)
    files = (
        [ROOT / "examples" / "demo-config.yaml"]
        if kind == "config"
        else sorted((ROOT / "mappings").glob("*.yaml"))
    )
    validator = jsonschema.Draft202012Validator(schema)
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert [e.message for e in validator.iter_errors(data)] == [], path.name
        data["misspelt_key"] = 1
        assert any("misspelt_key" in e.message for e in validator.iter_errors(data))
    out = tmp_path / f"{kind}.schema.json"
    assert CliRunner().invoke(app, ["config", "schema", kind, "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8")) == schema


def test_an_unknown_schema_is_one_error() -> None:
    result = CliRunner().invoke(app, ["config", "schema", "mappings"])
    assert result.exit_code == 1 and "config|mapping" in result.stderr
