"""User mistakes (#16.13): each gives a one-line error that names the fix, never a traceback.

Every case runs the real command line (Typer's CliRunner, in-process) in a scratch folder
holding a small demo ERP, copies of the shipped mappings and a configuration whose
platforms are not running (nothing here needs a sandbox). A case makes one mistake,
then asserts a non-zero exit, no traceback, and that the error line names the fix.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sync.cli import app
from sync.demo.erpgen import generate
from sync.playground import shipped_mappings

KEY = "key-0123456789abcdef0123"
PASSWORD = "pass-123456789"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")  # a log record, not the error


def base_config() -> dict:
    return {
        "tenants": {
            "acme": {
                "erp": {
                    "kind": "sql",
                    "url": "sqlite:///erp.db",
                    "entities": {
                        "funcionarios": {
                            "table": "funcionarios",
                            "key": "matricula",
                            "updated_at": "updated_at",
                            "writable": True,
                        }
                    },
                },
                "mappings": ["smartepi.yaml", "smartkasa.yaml"],
                "smartepi": {"base_url": "http://127.0.0.1:9/v1", "api_key": KEY},
                "smartkasa": {
                    "base_url": "http://127.0.0.1:9",
                    "api_key": KEY,
                    "phone": "380960000006",
                    "password": PASSWORD,
                    "shops": {"KYIV-01": 1, "LVIV-01": 2},
                },
            }
        },
        "state_url": "sqlite:///state.db",
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mistakes")
    generate(folder / "erp.db", employees=4, products_epi=2, products_kasa=2)
    for path in shipped_mappings():
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def folder(template: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(template, work)
    return work


def write(folder: Path, name: str, data: object) -> str:
    (folder / name).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(folder / name)


def with_config(change: Callable[[dict], None], name: str = "config.yaml") -> Callable[[Path], list[str]]:
    """A case whose configuration is the base one with ``change`` applied (``plan``)."""

    def setup(folder: Path) -> list[str]:
        data = base_config()
        change(data)
        return ["plan", "-c", write(folder, name, data)]

    return setup


def text_config(text: str) -> Callable[[Path], list[str]]:
    def setup(folder: Path) -> list[str]:
        (folder / "config.yaml").write_text(text, encoding="utf-8")
        return ["plan", "-c", str(folder / "config.yaml")]

    return setup


def good(*args: str) -> Callable[[Path], list[str]]:
    """The command ``args`` with the good configuration (``{f}`` is the scratch folder)."""

    def setup(folder: Path) -> list[str]:
        config = write(folder, "config.yaml", base_config())
        return [a.replace("{f}", str(folder)) for a in args] + ["-c", config]

    return setup


def tenant(data: dict) -> dict:
    return data["tenants"]["acme"]


@dataclass(frozen=True)
class Mistake:
    name: str
    setup: Callable[[Path], list[str]]
    says: tuple[str, ...]  # every one of these is in the error line
    code: int = 1


def _no_plan_file(folder: Path) -> list[str]:
    (folder / "plan.json").write_text("this is not json", encoding="utf-8")
    return good("apply", "{f}/plan.json")(folder)


def _dir_config(folder: Path) -> list[str]:
    (folder / "conf.d").mkdir()
    return ["plan", "-c", str(folder / "conf.d")]


def _check_dir(folder: Path) -> list[str]:
    (folder / "conf.d").mkdir()
    return ["config", "check", str(folder / "conf.d")]


def _markup_path(folder: Path) -> list[str]:
    return ["plan", "-c", str(folder / "[bold]config.yaml")]


def _html_dir(folder: Path) -> list[str]:
    (folder / "reports").mkdir()
    return good("apply", "--yes", "--html", "{f}/reports")(folder)


def _no_config(folder: Path) -> list[str]:
    return ["plan"]


MISTAKES = [
    Mistake("config path is a directory", _dir_config, ("conf.d", "is a directory", "--config config.yaml")),
    Mistake("config check of a directory", _check_dir, ("is a directory",)),
    Mistake("no config at all", _no_config, ("no configuration file", "--config FILE", "ERPSYNC_CONFIG")),
    Mistake(
        "config file missing", lambda f: ["plan", "-c", str(f / "nope.yaml")], ("nope.yaml", "no such file")
    ),
    Mistake("rich markup in a path", _markup_path, ("[bold]config.yaml", "no such file")),
    Mistake(
        "--html into a missing folder",
        good("plan", "--html", "{f}/out/r.html"),
        ("does not exist", "create it"),
    ),
    Mistake(
        "--out into a missing folder", good("plan", "--out", "{f}/out/p.json"), ("--out", "does not exist")
    ),
    Mistake("--html is a directory", _html_dir, ("is a directory", "give a file name")),
    Mistake(
        "pull --stream bogus",
        good("pull", "--stream", "bogus"),
        ("bogus", "--stream takes one of", "withdrawals"),
    ),
    Mistake("wrong tenant", good("plan", "--tenant", "acne"), ("acne", "pass --tenant with one of: acme")),
    Mistake("wrong tenant (status)", good("status", "-t", "acne"), ("pass --tenant with one of: acme",)),
    Mistake("unknown entity (why)", good("why", "employes", "1"), ("employes", "e.g. employees")),
    Mistake("unknown entity (notify)", good("notify", "employes", "1"), ("employes", "funcionarios")),
    Mistake("bad YAML", text_config("tenants:\n  acme: [\n"), ("config.yaml:3", "not valid YAML")),
    Mistake("empty config", text_config(""), ("no tenants", "tenants:")),
    Mistake("top level is a list", text_config("- acme\n"), ("top level must be a mapping",)),
    Mistake(
        "mapping file missing",
        with_config(lambda d: tenant(d).update(mappings=["smartepi.yaml", "maps/smartkasa.yaml"])),
        ("maps/smartkasa.yaml", "No such file", "relative to the config file"),
    ),
    Mistake(
        "environment variable missing",
        with_config(lambda d: tenant(d)["smartepi"].update(api_key="${ACME_EPI_KEY}")),
        ("tenants.acme.smartepi.api_key", "ACME_EPI_KEY is not set"),
    ),
    Mistake(
        "bad state_url",
        with_config(lambda d: d.update(state_url="postgres//localhost/erpsync")),
        ("state_url", "postgresql+psycopg://"),
    ),
    Mistake(
        "base_url without a scheme",
        with_config(lambda d: tenant(d)["smartepi"].update(base_url="api.smartepi.example/v1")),
        ("tenants.acme.smartepi.base_url", "https://"),
    ),
    Mistake(
        "unreachable platform",
        good("plan"),
        ("smartepi at http://127.0.0.1:9/v1", "did not answer", "base_url"),
    ),
    Mistake("plan file missing", good("apply", "{f}/plan.json"), ("plan.json", "no such plan file")),
    Mistake("plan file is not JSON", _no_plan_file, ("not JSON",)),
    Mistake("apply without --yes in a script", good("apply"), ("--yes", "plan file")),
    Mistake(
        "resolve with neither option", good("resolve", "employees", "1"), ("--remote-id", "--not-created")
    ),
    Mistake("pull --since not a date", good("pull", "--since", "yesterday"), ("--since", "2025-01-31"), 2),
]


def test_the_corpus_is_large() -> None:
    assert len(MISTAKES) >= 20 and len({m.name for m in MISTAKES}) == len(MISTAKES)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_a_mistake_gives_one_line_naming_the_fix(
    mistake: Mistake, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    monkeypatch.delenv("ERPSYNC_CONFIG", raising=False)
    args = mistake.setup(folder)
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    output = result.stdout + result.stderr
    assert result.exit_code == mistake.code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    for secret in (KEY, PASSWORD):
        assert secret not in output
    if mistake.code == 2:  # a usage error (Typer's box): the line naming the option says what it takes
        lines = [line for line in result.stderr.splitlines() if "Invalid value" in line]
    else:
        said = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
        lines = [line for line in said if line.startswith("error:")]
        assert len(lines) == 1 and len(said) == 1, result.stderr
    assert lines, output
    for text in mistake.says:
        assert text in lines[0], (text, lines[0])
    # retries are described honestly: nothing "gave up" while promising to retry
    assert "gave up" not in output and "will be retried" not in output
