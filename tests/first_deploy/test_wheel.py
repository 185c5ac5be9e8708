"""Installs and runs anywhere (#16.9).

The wheel carries everything the product needs (shipped mappings, report templates,
migrations; the demo ERP is generated): installed in a fresh venv without the dev extras,
``erpsync demo`` runs from an unrelated folder. CI (``.ci/run``) builds that venv once and
hands it over in ``ERPSYNC_TEST_WHEEL_VENV``; elsewhere the test builds its own from exactly
what the Dockerfile copies into the image, when ``CI`` or ``ERPSYNC_TEST_WHEEL`` is set (it
installs the dependencies from the package index, so it is not run on every laptop).

The deployment files agree with the code: the Dockerfile and docker-compose.yml put the
config where ``$ERPSYNC_CONFIG`` says, compose ships ``config.example.yaml`` and
``.env.example`` (every variable the example config reads is listed and passed through), and
the example passes ``config check``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from sync.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on the path and without erpsync settings."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "ERPSYNC_CONFIG", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("ERPSYNC__")}
    return {**env, **extra}


def _docker_inputs() -> list[str]:
    """What the Dockerfile copies into /app before ``pip install .``."""
    sources: list[str] = []
    for line in DOCKERFILE.splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not parts[-1].startswith("/etc/"):
            sources += parts[1:-1]
    return sources


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    given = os.environ.get("ERPSYNC_TEST_WHEEL_VENV")
    if given:
        yield Path(given)
        return
    if not (os.environ.get("CI") or os.environ.get("ERPSYNC_TEST_WHEEL")):
        pytest.skip("installs from the package index: runs in CI (.ci/run) or with ERPSYNC_TEST_WHEEL=1")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in _docker_inputs():  # exactly what the image builds from
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    run = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(src)]
    subprocess.run(run, check=True, timeout=240, env=_clean_env())
    (wheel,) = (root / "dist").glob("erpsync-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    pip = [str(root / "venv" / "bin" / "pip"), "install", "-q", "--no-compile", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=400, env=_clean_env())
    yield root / "venv"


def _py(venv: Path, code: str, cwd: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_from_another_folder(venv: Path, tmp_path: Path) -> None:
    erpsync = venv / "bin" / "erpsync"
    version = subprocess.run(
        [str(erpsync), "--version"], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True
    )
    assert version.returncode == 0 and re.fullmatch(r"erpsync \d+\.\d+\.\d+\S*\n", version.stdout)

    # the code comes from the venv, not from this checkout; the dev extras are not there
    where = _py(venv, "import sync; print(sync.__file__)", tmp_path)
    assert where.startswith(str(venv)) and not where.startswith(str(REPO))
    assert _py(venv, "import importlib.util as u; print(u.find_spec('pytest') is None)", tmp_path) == "True"

    demo = subprocess.run(
        [str(erpsync), "demo"],
        cwd=tmp_path,
        env=_clean_env(COLUMNS="120"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Traceback" not in demo.stderr and "Done in" in demo.stdout
    assert list(tmp_path.iterdir()) == []  # the demo works in its own temporary folder


@pytest.mark.slow
def test_the_wheel_carries_every_data_file(venv: Path, tmp_path: Path) -> None:
    package = Path(_py(venv, "import sync, os; print(os.path.dirname(sync.__file__))", tmp_path))
    for name in ("smartepi.yaml", "smartkasa.yaml"):
        shipped = package / "demo" / "mappings" / name
        assert shipped.read_text(encoding="utf-8") == (REPO / "mappings" / name).read_text(encoding="utf-8")
    for folder, pattern in (("report/templates", "*.j2"), ("state/migrations/versions", "*.py")):
        repo = sorted(p.name for p in (REPO / "sync" / folder).glob(pattern))
        assert repo and sorted(p.name for p in (package / folder).glob(pattern)) == repo, folder
    assert (package / "state" / "migrations" / "env.py").exists()
    assert _py(venv, "import celeryconfig; print('ok')", tmp_path) == "ok"


# --- deployment files (no build needed) ---------------------------------------------------


def test_the_image_and_compose_put_the_config_where_the_code_looks() -> None:
    env = dict(re.findall(r"^\s*(?:ENV\s+)?(ERPSYNC_CONFIG)=(\S+)", DOCKERFILE, re.M))
    assert env["ERPSYNC_CONFIG"] == "/etc/erpsync/config.yaml"
    assert re.search(r"^COPY config\.example\.yaml /etc/erpsync/config\.yaml$", DOCKERFILE, re.M)
    assert re.search(r"^COPY mappings /etc/erpsync/mappings$", DOCKERFILE, re.M)
    for name in _docker_inputs():
        assert (REPO / name).exists(), f"the Dockerfile copies {name}, which is not in the repository"
    common = COMPOSE["x-erpsync"]
    assert common["environment"]["ERPSYNC_CONFIG"] == env["ERPSYNC_CONFIG"]
    parsed = [re.fullmatch(r"(.+):(/[^:]+)(?::ro|:rw)?", v) for v in common["volumes"]]
    mounts = {m.group(2): m.group(1) for m in parsed if m}
    assert mounts[env["ERPSYNC_CONFIG"]] == "${ERPSYNC_CONFIG_FILE:-./config.example.yaml}"
    assert mounts["/etc/erpsync/mappings"] == "./mappings"


def _env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_ships_the_example_config_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = yaml.safe_load((REPO / "config.example.yaml").read_text(encoding="utf-8"))
    env_example = _env_example()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", json.dumps(example)))
    assert used and used <= set(env_example), used - set(env_example)
    passed = COMPOSE["x-erpsync"]["environment"]
    assert all(passed.get(name) == f"${{{name}:-}}" for name in used), used - set(passed)
    for name in set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)[:}?-]", json.dumps(COMPOSE))):
        assert name in env_example, f"docker-compose.yml reads ${{{name}}}: .env.example must list it"

    # the example, with the example environment, is a valid configuration (mappings beside it)
    for key, value in env_example.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ERPSYNC_CONFIG", raising=False)
    shutil.copy(REPO / "config.example.yaml", tmp_path / "config.yaml")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")  # as compose mounts them
    result = CliRunner().invoke(app, ["config", "check", "--offline", str(tmp_path / "config.yaml")])
    assert result.exit_code == 0, result.output


def test_version_completion_and_the_flower_extra() -> None:
    result = CliRunner().invoke(app, ["--version"])
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert result.exit_code == 0 and result.stdout.startswith("erpsync ")
    params = {p.name for p in get_command(app).params}
    assert {"install_completion", "show_completion"} <= params  # shell completion is on
    extras = pyproject["project"]["optional-dependencies"]
    assert any(req.startswith("flower>=") for req in extras["flower"])
    package_data = pyproject["tool"]["setuptools"]["package-data"]["sync"]
    assert "demo/mappings/*.yaml" in package_data
    link = REPO / "sync" / "demo" / "mappings"
    assert link.resolve() == (REPO / "mappings").resolve()  # one copy of the shipped mappings
