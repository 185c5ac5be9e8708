"""The recipe written at the top of examples/demo-config.yaml, followed literally, works (#16.2).

The steps are read from the example file itself (so the test cannot drift from what a user
reads) and run in a copy of the repository's ``examples/`` and ``mappings/`` folders: generate
the demo ERP, start ``erpsync sandbox`` (a real subprocess: its printed credentials and shop ids
are checked), list the shops, check the config, plan, apply, plan again. The first apply is
clean (no ``shop_id: invalid``, nothing deferred) and the plan after it is empty. The only
departures: the sandbox listens on free ports (the example's URLs take them from
``DEMO_SMARTEPI_URL``/``DEMO_SMARTKASA_URL``) and the rate limit is raised by environment
override, so the run takes seconds instead of a minute.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.demo.erpgen import main as erpgen_main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "demo-config.yaml"


def recipe() -> list[list[str]]:
    """The commands of the example's header comment, in order (comments and ``&`` dropped)."""
    steps = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#   "):
            continue
        command = line[4:].split(" #", 1)[0].strip().rstrip("&").strip()
        if command.startswith(("erpsync ", "python -m ")):
            steps.append(shlex.split(command))
    return steps


def test_the_recipe_has_every_step() -> None:
    names = [" ".join(s[:3]) if s[0] == "python" else " ".join(s[:2]) for s in recipe()]
    assert names == [
        "python -m sync.demo.erpgen",
        "erpsync sandbox",
        "erpsync inspect",
        "erpsync config",
        "erpsync plan",
        "erpsync apply",
        "erpsync plan",
    ]


class Sandbox:
    def __init__(self, args: list[str], cwd: Path) -> None:
        cmd = [sys.executable, "-m", "sync", *args, "--smartepi-port", "0", "--smartkasa-port", "0"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        while not self.lines or not self.lines[-1].startswith("  shops:"):
            line = self.proc.stdout.readline()
            assert line, f"the sandbox stopped: {self.proc.stderr.read() if self.proc.stderr else ''}"
            self.lines.append(line.rstrip("\n"))
        self.output = "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def top(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the repository's examples/ and mappings/ folders, as the current directory."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith(("ERPSYNC__", "DEMO_"))] + ["ERPSYNC_CONFIG"]:
        monkeypatch.delenv(key, raising=False)
    yield tmp_path


def test_following_the_example_recipe_ends_clean_and_settled(top: Path) -> None:
    sandbox: Sandbox | None = None
    env = {
        "COLUMNS": "240",
        "ERPSYNC__TENANTS__DEMO__SMARTEPI__RATE__REQUESTS_PER_SECOND": "2000",
        "ERPSYNC__TENANTS__DEMO__SMARTEPI__RATE__BURST": "2000",
        "ERPSYNC__TENANTS__DEMO__SMARTKASA__RATE__REQUESTS_PER_SECOND": "2000",
        "ERPSYNC__TENANTS__DEMO__SMARTKASA__RATE__BURST": "2000",
    }
    results: list[tuple[list[str], Result]] = []
    try:
        for step in recipe():
            if step[:3] == ["python", "-m", "sync.demo.erpgen"]:
                assert erpgen_main(step[3:]) == 0
                continue
            if step[:2] == ["erpsync", "sandbox"]:
                sandbox = Sandbox(step[1:], top)
                urls = dict(re.findall(r"(SmartEPI|SmartKasa) sandbox:\s+(\S+)", sandbox.output))
                env["DEMO_SMARTEPI_URL"] = urls["SmartEPI"]
                env["DEMO_SMARTKASA_URL"] = urls["SmartKasa"].removesuffix("/api/v1")
                continue
            results.append((step, CliRunner().invoke(app, step[1:], env=env)))
    finally:
        if sandbox is not None:
            sandbox.stop()
    assert sandbox is not None
    config = yaml.safe_load((top / "examples" / "demo-config.yaml").read_text(encoding="utf-8"))
    shops = config["tenants"]["demo"]["smartkasa"]["shops"]

    # `erpsync sandbox` labels and prints the sandbox's own credentials and the account's shop ids.
    out = sandbox.output
    assert "SANDBOX credentials" in out and "not a real" in out
    assert "api_key: demo-key-0123456789abcdef" in out and 'password: "123456789"' in out
    assert 'phone: "380960000006"' in out and "webhook_secrets: [" in out
    for code, shop_id in shops.items():
        assert f"{code}: {shop_id}" in out  # what the example configures is what the sandbox has

    by_name = {" ".join(step[1:3]): r for step, r in results[:-1]}
    inspect = by_name["inspect smartkasa"]
    assert inspect.exit_code == 0, inspect.output
    assert all(str(i) in inspect.stdout for i in shops.values()) and "resolves" in inspect.stdout
    check = by_name["config check"]
    assert check.exit_code == 0, check.output
    first_plan, apply, last_plan = (r for step, r in results if step[1] in ("plan", "apply"))
    assert first_plan.exit_code == 2, first_plan.output  # changes to make
    assert apply.exit_code == 0, apply.output
    assert "shop_id" not in apply.output and "deferred" not in apply.output
    assert "fix the ERP row" not in apply.output
    assert last_plan.exit_code == 0, last_plan.output  # settled: nothing to do

    # Paths in the config are relative to its folder: the ERP and the state store live in examples/.
    assert (top / "examples" / "demo.db").exists() and (top / "examples" / "erpsync-state.db").exists()
    assert sorted(p.name for p in top.iterdir()) == ["examples", "mappings"]
