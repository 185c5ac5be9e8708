"""`erpsync config check` reports every problem at once (#16.10).

Environment variables, settings and every mapping file of every tenant: one run lists all
of them, each with its key path (and file:line for mappings), and names the close valid
key or field when one is misspelt. Secrets are never printed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.playground import shipped_mappings

KEY = "key-0123456789abcdef0123"


def _tenant(mappings: list[str], epi: dict) -> dict:
    return {
        "erp": {"kind": "sql", "url": "sqlite:///erp.db"},
        "mappings": mappings,
        "smartepi": epi,
        "smartkasa": {
            "base_url": "http://127.0.0.1:9",
            "api_key": KEY,
            "phone": "380960000006",
            "password": "pass-123456789",
            "shops": {"KYIV-01": 1, "LVIV-01": 2},
        },
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for path in shipped_mappings():
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _check(path: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    monkeypatch.delenv("ACME_EPI_URL", raising=False)
    monkeypatch.delenv("BETA_EPI_KEY", raising=False)
    result = CliRunner().invoke(app, ["config", "check", "--offline", str(path)], env={"COLUMNS": "400"})
    assert "Traceback" not in result.output
    assert KEY not in result.output and "pass-123456789" not in result.output
    return result


def test_a_good_configuration_is_ok(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = {"base_url": "http://127.0.0.1:9/v1", "api_key": KEY}
    config = _write(
        folder / "config.yaml", {"tenants": {"acme": _tenant(["smartepi.yaml", "smartkasa.yaml"], good)}}
    )
    result = _check(config, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "ok:" in result.stdout


def test_every_problem_of_every_file_is_reported_at_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    epi = yaml.safe_load((folder / "smartepi.yaml").read_text(encoding="utf-8"))
    employees = epi["entities"]["employees"]["fields"]
    employees["birthday"] = "data_nascimento"  # no such platform field
    employees["emial"] = "email"  # a misspelt one
    _write(folder / "epi-bad.yaml", epi)
    kasa = yaml.safe_load((folder / "smartkasa.yaml").read_text(encoding="utf-8"))
    kasa["entities"]["categories"]["delet"] = "delete"  # a misspelt entity key
    _write(folder / "kasa-bad.yaml", kasa)
    config = {
        "tenants": {
            "acme": _tenant(
                ["epi-bad.yaml", "smartkasa.yaml"], {"base_url": "${ACME_EPI_URL}", "api_key": KEY}
            ),
            "beta": _tenant(
                ["smartepi.yaml", "kasa-bad.yaml"],
                {"base_url": "http://127.0.0.1:9/v1", "apikey": "${BETA_EPI_KEY}"},
            ),
        },
        "stat_url": "sqlite:///state.db",
    }
    result = _check(_write(folder / "config.yaml", config), monkeypatch)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    expected = [
        "tenants.acme.smartepi.base_url: environment variable ACME_EPI_URL is not set",
        "tenants.beta.smartepi.apikey: environment variable BETA_EPI_KEY is not set",
        "tenants.beta.smartepi.api_key: required key is missing",
        "tenants.beta.smartepi.apikey: unknown key (did you mean 'api_key'?)",
        "stat_url: unknown key (did you mean 'state_url'?)",
        "epi-bad.yaml:",
        "entities.employees.fields.birthday: smartepi employees has no field 'birthday' (its fields: ",
        "entities.employees.fields.emial: smartepi employees has no field 'emial' (did you mean 'email'?)",
        "kasa-bad.yaml:",
        "entities.categories.delet: unknown key (did you mean 'delete'?)",
    ]
    for text in expected:
        assert any(text in line for line in errors), (text, errors)
    assert any(
        line.startswith("error: tenants.beta.mappings: ") and "kasa-bad.yaml" in line for line in errors
    )
    assert f"{len(errors)} problem(s) in" in result.stderr


def test_an_unreadable_file_is_one_problem(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "config.yaml").write_text("tenants: [\n", encoding="utf-8")
    result = _check(folder / "config.yaml", monkeypatch)
    assert result.exit_code == 1
    assert "not valid YAML" in result.stderr and len(result.stderr.strip().splitlines()) == 1
