"""deploy/: the alert rules and the dashboard's queries are valid PromQL and the alerts fire on
their conditions (``promtool``, the Debian package ``prometheus``, when installed); the compose
profile ``monitoring`` wires Prometheus and Grafana to them; Flower asks for a password."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


def promtool(*args: str, cwd: Path = DEPLOY / "prometheus") -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_alert_rules_pass_promtool_and_fire_on_their_conditions() -> None:
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
    promtool("check", "config", "--syntax-only", "prometheus.yml")


@needs_promtool
def test_promtool_can_fail(tmp_path: Path) -> None:
    broken = {
        "groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum by (tenant (erpsync_runs_total)"}]}]
    }
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(broken))
    done = subprocess.run([str(PROMTOOL), "check", "rules", "bad.yml"], cwd=tmp_path, capture_output=True)
    assert done.returncode != 0


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    board = json.loads((DEPLOY / "grafana/dashboards/erpsync.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    rules = [{"record": f"check:q{i}", "expr": e.replace("$tenant", ".*")} for i, e in enumerate(exprs)]
    (tmp_path / "dash.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", "dash.yml", cwd=tmp_path)


def test_the_dashboard_is_provisioned_from_prometheus() -> None:
    board = json.loads((DEPLOY / "grafana/dashboards/erpsync.json").read_text())
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (ds,) = source["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p.get("targets", [])}
    assert uids == {ds["uid"]}
    assert [v["name"] for v in board["templating"]["list"]] == ["tenant"]


def test_the_monitoring_profile_wires_prometheus_and_grafana() -> None:
    services = COMPOSE["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        assert "healthcheck" in services[name]
        for volume in services[name]["volumes"]:
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), volume
    assert all("profiles" not in s for n, s in services.items() if n not in ("prometheus", "grafana"))
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    port = COMPOSE["x-erpsync"]["environment"]["ERPSYNC_METRICS_PORT"]
    workers = [n for n in services if n.startswith("worker")]
    assert targets == {"web:8080", *(f"{w}:{port}" for w in workers)}
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert any(v.endswith(":/etc/prometheus/alerts.yml:ro") for v in services["prometheus"]["volumes"])


def test_flower_requires_a_password() -> None:
    flower = COMPOSE["services"]["flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert auth.startswith("${FLOWER_USER:-admin}:${FLOWER_PASSWORD:?")  # unset: compose refuses to start
    assert not any("basic" in part for part in flower["command"])  # never on the command line (ps)
