"""Settings: YAML + env overrides, ${ENV} secrets, key-path errors, redaction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sync.errors import ConfigError
from sync.redact import RedactingFilter
from sync.settings import load_settings

GOOD = """
state_url: sqlite:///state.db
tenants:
  acme:
    erp: {kind: sql, url: "sqlite:///erp.db"}
    mappings: [m.yaml]
    smartepi:
      base_url: https://api.smartepi.example/v1
      api_key: ${EPI_KEY}
    smartkasa:
      base_url: http://127.0.0.1:9000
      api_key: kasa-key-123456
      phone: "380 97 123 45 67"
      password: ${KASA_PASSWORD:-fallback-pass}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    (tmp_path / "m.yaml").write_text("{}\n")
    return path


def test_loads_yaml_with_env_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPI_KEY", "sk_live_supersecret")
    settings = load_settings(write(tmp_path, GOOD))
    acme = settings.tenants["acme"]
    assert acme.smartepi is not None and acme.smartepi.api_key.get_secret_value() == "sk_live_supersecret"
    assert acme.smartkasa is not None and acme.smartkasa.password.get_secret_value() == "fallback-pass"
    assert acme.smartkasa.phone == "380971234567"
    assert acme.smartkasa.auth_scheme == "bearer" and acme.smartkasa.body_style == "both"
    assert acme.mappings == [tmp_path / "m.yaml"]
    text = repr(settings) + str(settings.model_dump())
    assert "sk_live_supersecret" not in text and "fallback-pass" not in text


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPI_KEY", "k1-aaaa")
    monkeypatch.setenv("ERPSYNC__STATE_URL", "sqlite:///other.db")
    monkeypatch.setenv("ERPSYNC__TENANTS__ACME__SMARTEPI__API_KEY", "k2-bbbb")
    monkeypatch.setenv("ERPSYNC__TENANTS__ACME__SMARTKASA__BATCH_SIZE", "50")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.state_url == "sqlite:///other.db"
    acme = settings.tenants["acme"]
    assert acme.smartepi is not None and acme.smartepi.api_key.get_secret_value() == "k2-bbbb"
    assert acme.smartkasa is not None and acme.smartkasa.batch_size == 50
    assert acme.smartkasa.api_key.get_secret_value() == "kasa-key-123456"  # untouched YAML value kept


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("https://api.smartepi.example/v1", "http://api.smartepi.example/v1"),
            "tenants.acme.smartepi.base_url: must be https",
        ),
        (('phone: "380 97 123 45 67"', 'phone: "12"'), "tenants.acme.smartkasa.phone: phone must have"),
        (
            ("api_key: kasa-key-123456", "api_kee: kasa-key-123456"),
            "tenants.acme.smartkasa.api_kee: unknown key (did you mean 'api_key'?)",
        ),
        (("mappings: [m.yaml]", "mappings: []"), "tenants.acme.mappings: at least one mapping file"),
        (("  acme:", "  Acme Corp:"), "tenant id 'Acme Corp' must be lowercase"),
    ],
)
def test_bad_config_names_the_key_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: tuple[str, str], expected: str
) -> None:
    monkeypatch.setenv("EPI_KEY", "sk_live_supersecret")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, GOOD.replace(*change)))
    assert expected in str(info.value)
    assert "sk_live_supersecret" not in str(info.value)


def test_missing_env_reference_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EPI_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"tenants.acme.smartepi.api_key: environment variable EPI_KEY"):
        load_settings(write(tmp_path, GOOD))


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_settings(bad)


def test_loaded_secrets_are_scrubbed_from_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EPI_KEY", "sk_live_leakcheck")
    load_settings(write(tmp_path, GOOD))
    logger = logging.getLogger("erpsync.test")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("calling with key %s", "sk_live_leakcheck")
    assert "sk_live_leakcheck" not in caplog.text and "***" in caplog.text


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://user:hunter22@api.smartepi.example/v1", "must not contain user:password@"),
        ("https://api.smartepi.example/v1?api_key=x", "must not contain a query string"),
        ("https://api.smartepi.example/v1#frag", "must not contain a query string"),
        ("https://api.smartepi.example/v1?", "must not contain a query string"),
        ("https://169.254.169.254/latest", "169.254.169.254 is a link-local or cloud metadata address"),
        ("https://169.254.10.1/v1", "link-local or cloud metadata"),
        ("https://2852039166/v1", "link-local or cloud metadata"),  # 169.254.169.254 as one number
        ("https://[fe80::1]/v1", "link-local or cloud metadata"),
        ("https://[::ffff:169.254.169.254]/v1", "link-local or cloud metadata"),
        ("https://[fd00:ec2::254]/v1", "link-local or cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1", "metadata.google.internal is a link-local"),
        ("https://Metadata.Google.Internal./v1", "link-local or cloud metadata"),
    ],
)
def test_unsafe_base_urls_are_refused_by_config_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, expected: str
) -> None:
    from typer.testing import CliRunner

    from sync.cli import app

    monkeypatch.setenv("EPI_KEY", "sk_live_supersecret")
    path = write(tmp_path, GOOD.replace("https://api.smartepi.example/v1", base_url))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    (line,) = [x for x in str(info.value).splitlines() if "tenants.acme.smartepi.base_url: " in x]
    assert expected in line
    assert "hunter22" not in str(info.value)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1 and expected in result.output, result.output
    assert "hunter22" not in result.output


def test_plain_base_urls_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPI_KEY", "sk_live_supersecret")
    for url in ("https://api.smartepi.example:8443/v1/", "https://10.0.0.5/v1", "https://[2001:db8::1]/api"):
        settings = load_settings(write(tmp_path, GOOD.replace("https://api.smartepi.example/v1", url)))
        epi = settings.tenants["acme"].smartepi
        assert epi is not None and epi.base_url == url.rstrip("/")


def test_configuration_doc_lists_every_platform_setting_with_its_default() -> None:
    """docs/configuration.md documents the tenant platform settings by their real names and defaults."""
    from pydantic import BaseModel

    from sync.settings import RateLimit, SmartEPISettings, SmartKasaSettings

    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    models: list[type[BaseModel]] = [SmartKasaSettings, SmartEPISettings, RateLimit]
    for model in models:
        for name, info in model.model_fields.items():
            assert f"`{name}`" in doc or f"{name}:" in doc, f"{model.__name__}.{name} is not documented"
            default = info.get_default(call_default_factory=True)
            if isinstance(default, bool | int | float | str) and not isinstance(default, BaseModel):
                shown = (
                    str(default).lower()
                    if isinstance(default, bool)
                    else f"{default:g}"
                    if isinstance(default, float)
                    else str(default)
                )
                row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}`")), "")
                assert shown in row or f"{name}: {shown}" in doc, f"{name}: default {shown} not documented"
    assert "/webhooks/smartepi/<tenant id>" in doc and "never answers 404" in doc
    assert "only with a worker running" in doc


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("0971234567", "380971234567"),  # the national form the console shows
        ("097 123-45-67", "380971234567"),
        ("+380 97 123 45 67", "380971234567"),
        ("380971234567", "380971234567"),
        ("48123456789", "48123456789"),  # another country's number is left alone
    ],
)
def test_a_smartkasa_phone_is_kept_in_the_form_login_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, kept: str
) -> None:
    monkeypatch.setenv("EPI_KEY", "sk_live_phone_case_key")
    text = GOOD.replace('phone: "380 97 123 45 67"', f'phone: "{given}"')
    assert f'phone: "{given}"' in text
    settings = load_settings(write(tmp_path, text))
    kasa = settings.tenants["acme"].smartkasa
    assert kasa is not None and kasa.phone == kept
