"""Paths are relative to the config file; no config, no state file; a new state store says so (#16.5).

A user runs erpsync from wherever their shell is: the SQLite files and folders written in the
config must not move with the current directory (a state store that moves is a new, empty one).
A command given no configuration at all must not leave an ``erpsync-state.db`` behind. And a
brand-new state store facing platforms that already hold the records warns, with the counts,
that it will adopt them (never duplicate them).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.playground import Playground, start_playground
from sync.settings import load_settings
from sync.state.store import StateStore


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty current directory, and no configuration in the environment."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for key in [k for k in os.environ if k.startswith("ERPSYNC__")] + ["ERPSYNC_CONFIG"]:
        monkeypatch.delenv(key, raising=False)
    yield cwd


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_paths_in_the_config_are_relative_to_its_folder(tmp_path: Path, elsewhere: Path) -> None:
    conf = tmp_path / "etc" / "erpsync"
    _write(conf / "maps" / "m.yaml", "version: 1\nplatform: smartepi\nentities: {}\n")
    config = _write(
        conf / "config.yaml",
        """
state_url: sqlite:///state/erpsync.db
report_dir: out/reports
tenants:
  sql:
    erp: {kind: sql, url: "sqlite:///data/erp.db?timeout=5"}
    mappings: [maps/m.yaml]
    sink: {kind: sql, url: "sqlite:///data/inbound.db"}
    smartepi: {base_url: "http://127.0.0.1:1/v1", api_key: k}
  files:
    erp: {kind: files, directory: export}
    mappings: [maps/m.yaml]
    sink: {kind: jsonl, directory: inbound}
    smartepi: {base_url: "http://127.0.0.1:1/v1", api_key: k}
  absolute:
    erp: {kind: sql, url: "sqlite:////srv/erp.db"}
    mappings: [maps/m.yaml]
    sink: {kind: sql, url: "postgresql+psycopg://u@db/erp"}
    smartepi: {base_url: "http://127.0.0.1:1/v1", api_key: k}
""",
    )
    settings = load_settings(config)
    assert settings.state_url == f"sqlite:///{conf}/state/erpsync.db"
    assert settings.report_dir == conf / "out" / "reports"
    sql, files, absolute = (settings.tenants[t] for t in ("sql", "files", "absolute"))
    assert sql.erp.url.get_secret_value() == f"sqlite:///{conf}/data/erp.db?timeout=5"  # type: ignore[union-attr]
    assert sql.sink.url == f"sqlite:///{conf}/data/inbound.db"
    assert sql.mappings == [conf / "maps" / "m.yaml"]
    assert files.erp.directory == str(conf / "export")  # type: ignore[union-attr]
    assert files.sink.directory == conf / "inbound"
    assert absolute.erp.url.get_secret_value() == "sqlite:////srv/erp.db"  # type: ignore[union-attr]
    assert absolute.sink.url == "postgresql+psycopg://u@db/erp"


def test_the_default_state_store_lives_beside_the_config(tmp_path: Path, elsewhere: Path) -> None:
    _write(tmp_path / "m.yaml", "version: 1\nplatform: smartepi\nentities: {}\n")
    config = _write(
        tmp_path / "config.yaml",
        "tenants:\n  t:\n    erp: {kind: sql, url: 'sqlite:///erp.db'}\n    mappings: [m.yaml]\n"
        "    smartepi: {base_url: 'http://127.0.0.1:1/v1', api_key: k}\n",
    )
    settings = load_settings(config)
    assert settings.state_url == f"sqlite:///{tmp_path}/erpsync-state.db"
    assert settings.report_dir == tmp_path / "reports"


def test_environment_overrides_are_taken_as_given(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "m.yaml", "version: 1\nplatform: smartepi\nentities: {}\n")
    config = _write(
        tmp_path / "config.yaml",
        "state_url: sqlite:///s.db\ntenants:\n  t:\n    erp: {kind: sql, url: 'sqlite:///erp.db'}\n"
        "    mappings: [m.yaml]\n    smartepi: {base_url: 'http://127.0.0.1:1/v1', api_key: k}\n",
    )
    monkeypatch.setenv("ERPSYNC__STATE_URL", "sqlite:///from-env.db")
    assert load_settings(config).state_url == "sqlite:///from-env.db"


def test_a_run_from_another_folder_uses_the_configs_files(tmp_path: Path, elsewhere: Path) -> None:
    """The playground's config rewritten with relative paths, run from an unrelated folder."""
    with start_playground(tmp_path / "pg", employees=3, products_epi=1, products_kasa=2) as pg:
        config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
        config["state_url"] = "sqlite:///state.db"
        tenant = config["tenants"][pg.tenant]
        tenant["erp"]["url"] = "sqlite:///erp.db"
        tenant["sink"]["url"] = "sqlite:///erp-inbound.db"
        relative = pg.root / "relative.yaml"
        relative.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        cli = CliRunner()
        apply = cli.invoke(app, ["apply", "--yes", "-c", str(relative)], env={"COLUMNS": "200"})
        assert apply.exit_code == 0, apply.output
        assert (pg.root / "state.db").exists()
        plan = cli.invoke(app, ["plan", "-c", str(relative)])
        assert plan.exit_code == 0, plan.output  # the same state store: nothing to do
    assert list(elsewhere.iterdir()) == []


COMMANDS = [
    ["plan"],
    ["apply", "--yes"],
    ["status"],
    ["why", "employees", "1"],
    ["retry-failed"],
    ["pull"],
    ["resolve", "employees", "1", "--not-created"],
    ["notify", "funcionarios", "1"],
    ["db", "upgrade"],
    ["db", "current"],
    ["inspect", "smartkasa", "shops"],
    ["runs"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_no_config_no_state_file(elsewhere: Path, args: list[str]) -> None:
    result: Result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "no configuration file" in result.stderr and "--config" in result.stderr
    assert list(elsewhere.iterdir()) == []  # no erpsync-state.db, no reports folder


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_a_bad_config_path_is_one_line(tmp_path: Path, elsewhere: Path, kind: str) -> None:
    path = tmp_path / "conf.d"
    if kind == "directory":
        path.mkdir()
    for args in (["plan", "-c", str(path)], ["config", "check", str(path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output
        assert ("is a directory" if kind == "directory" else "no such file") in lines[0]
    assert list(elsewhere.iterdir()) == []


# --- a brand-new state store -------------------------------------------------------------


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    with start_playground(tmp_path / "pg", employees=4, products_epi=2, products_kasa=3) as play:
        yield play


def test_a_new_state_store_says_it_will_adopt_before_it_does(
    pg: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cli = CliRunner()
    env = {"ERPSYNC_CONFIG": str(pg.config_path), "COLUMNS": "200"}
    with caplog.at_level(logging.WARNING, logger="erpsync.engine"):
        assert cli.invoke(app, ["apply", "--yes"], env=env).exit_code == 0
    assert not [r for r in caplog.records if "will be adopted" in r.getMessage()]  # nothing to adopt
    before = {k: len(v) for k, v in pg.kasa_state().items()}
    epi_before = {k: len(v) for k, v in pg.epi_state().items() if isinstance(v, list)}

    # The same platforms, a state store that knows nothing (a wrong or lost state_url).
    fresh = {**env, "ERPSYNC__STATE_URL": f"sqlite:///{tmp_path / 'new-state.db'}"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="erpsync.engine"):
        plan = cli.invoke(app, ["plan"], env=fresh)
    assert plan.exit_code == 2, plan.output
    warnings = [r.getMessage() for r in caplog.records if "will be adopted" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    bound = StateStore(pg.settings().state_url).count_bindings(pg.tenant)  # what the first apply bound
    assert "not duplicated" in warnings[0] and "state_url" in warnings[0]
    listed = re.findall(r"(\d+) (smartepi|smartkasa) (\w+)", warnings[0])
    assert f"already hold {sum(int(n) for n, _, _ in listed)} record(s)" in warnings[0]
    # categories under a parent match only once the parent is bound: those are adopted by the
    # lookup before create at apply; every other entity is counted whole
    assert all(int(n) <= bound[(p, e)] for n, p, e in listed)
    assert f"{bound[('smartkasa', 'products')]} smartkasa products" in warnings[0]
    assert f"{bound[('smartepi', 'employees')]} smartepi employees" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="erpsync.engine"):
        apply = cli.invoke(app, ["apply", "--yes"], env=fresh)
    assert apply.exit_code == 0, apply.output
    assert any("will be adopted" in r.getMessage() for r in caplog.records)
    assert {k: len(v) for k, v in pg.kasa_state().items()} == before  # adopted, not duplicated
    assert {k: len(v) for k, v in pg.epi_state().items() if isinstance(v, list)} == epi_before

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="erpsync.engine"):
        assert cli.invoke(app, ["plan"], env=fresh).exit_code == 0
    assert not [r for r in caplog.records if "will be adopted" in r.getMessage()]
