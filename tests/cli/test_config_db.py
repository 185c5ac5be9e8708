"""`erpsync config check` and `erpsync db upgrade` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sync.cli import app

runner = CliRunner()


def test_config_check_reports_key_path_without_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    (tmp_path / "m.yaml").write_text("{}\n")
    cfg.write_text(
        "tenants:\n  acme:\n    erp: {kind: sql, url: 'sqlite:///x.db'}\n    mappings: [m.yaml]\n"
        "    smartepi: {base_url: 'http://example.com/v1', api_key: sk_live_neverprint}\n"
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 1
    assert "tenants.acme.smartepi.base_url" in result.output
    assert "sk_live_neverprint" not in result.output


def test_db_upgrade_creates_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    result = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert result.exit_code == 0, result.output
    assert "revision" in result.output
    result = runner.invoke(app, ["db", "current", "--url", url])
    from sync.state.db import head_revision

    assert result.output.strip() == head_revision()  # the latest migration, whatever its number


def test_console_script_runs() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("erpsync")), "--help"], capture_output=True, text=True, check=True
    )
    assert "erpsync" in out.stdout and "config" in out.stdout and "db" in out.stdout
