"""Typed settings: one YAML file plus ``ERPSYNC__…`` environment overrides.

Why this shape:

- ``tenants`` is a mapping keyed by tenant id (not a list) so an environment variable can
  address one tenant: ``ERPSYNC__TENANTS__ACME__SMARTEPI__API_KEY=…``.
- Secrets are ``SecretStr`` and may be written as ``${ENV_VAR}`` references, expanded at
  load time; every loaded secret is registered with ``sync.redact`` so it is masked in
  any log line, report or exception text where it might still leak.
- A bad file fails at start with ``ConfigError`` listing each problem as
  ``key.path: what is wrong``; nothing starts with a half-valid config.
- Base URLs must be https, except loopback (the sandboxes, tests), and plain: no
  user:password, query string, link-local or cloud metadata address (``check_base_url``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sync.alerts.settings import AlertSettings
from sync.core.platforms import CATALOGUE
from sync.errors import ConfigError
from sync.redact import register_secret
from sync.sources.config import SourceConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


# Cloud metadata services answer on these names and addresses (plus all of 169.254.0.0/16 and
# fe80::/10): a base URL pointing there would hand erpsync's API keys, or the instance's own
# credentials through an error body, to the wrong party.
_METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_METADATA_IPS = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


def check_base_url(url: str) -> str:
    """https only (plain http only for loopback hosts: sandboxes and tests), and only a plain
    base: no user:password (it would be sent to every request and logged with the URL), no
    query string or fragment (paths are appended to the base, so they would be misplaced),
    no link-local or cloud metadata address. A DNS name that resolves to one is not caught
    here (that needs a lookup at start); the names metadata services use are."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL (expected e.g. https://api.example.com/v1)")
    if "@" in parts.netloc:
        raise ValueError(
            "must not contain user:password@ (put credentials in api_key/password, written as ${ENV_VAR})"
        )
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ValueError("must not contain a query string or fragment (?… or #…): give the base URL only")
    host = parts.hostname.rstrip(".").lower()
    if host in _METADATA_HOSTS or _link_local(host):
        raise ValueError(f"{host} is a link-local or cloud metadata address, not a platform API")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("must be https (plain http is allowed only for loopback hosts)")
    return url.rstrip("/")


def _link_local(host: str) -> bool:
    """169.254.0.0/16, fe80::/10 or a metadata address, in any spelling a resolver accepts."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # inet_aton forms: 2852039166, 0xa9fea9fe, 169.254.43518
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip in _METADATA_IPS


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RateLimit(_Strict):
    """Per platform account: shared by every process through the Redis governor."""

    requests_per_second: float = Field(10.0, gt=0)
    burst: int = Field(20, ge=1)
    concurrency: int = Field(8, ge=1, le=256)


def check_proxy_url(value: str | None) -> str | None:
    """A proxy URL (http or https) with a host; its password is masked in logs."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("proxy must be a URL such as http://proxy.example:3128 (http or https)")
    register_secret(parts.password)
    return value


def check_http_settings(model: Any) -> Any:
    if model.transport == "lean" and model.proxy:
        raise ValueError(
            "transport: lean connects directly and cannot use a proxy; use transport: stock or remove proxy"
        )
    return model


class SmartEPISettings(_Strict):
    base_url: str
    api_key: SecretStr
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    rate: RateLimit = Field(default_factory=RateLimit)
    timeout_seconds: float = Field(30.0, gt=0)
    # A new key answers 403 for about a minute (smartepi.md §2.2): until the first answer from
    # behind the gateway a 403 is retried this long (a wrong key fails after it; 0 = at once).
    key_activation_wait_seconds: float = Field(90.0, ge=0, le=600)
    # HTTP (docs/configuration.md, docs/decisions/0001-lean-transport.md): stock = httpx's own,
    # honours HTTP(S)_PROXY/NO_PROXY; lean = less client CPU, direct connections only.
    transport: Literal["stock", "lean"] = "stock"
    proxy: str | None = None  # http://[user:password@]host:port (default: the environment's)
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024)

    _check_proxy = field_validator("proxy")(classmethod(lambda cls, v: check_proxy_url(v)))
    _check_http = model_validator(mode="after")(lambda self: check_http_settings(self))
    # Webhook signature recipe (smartepi.md §4, undocumented upstream): configurable.
    signature_key_includes_prefix: bool = True
    signature_tolerance_seconds: int = Field(300, ge=1, le=300)

    _check_url = field_validator("base_url")(classmethod(lambda cls, v: check_base_url(v)))

    def secrets(self) -> list[SecretStr]:
        """Values the log redaction must mask."""
        return [self.api_key, *self.webhook_secrets]


class SmartKasaSettings(_Strict):
    base_url: str
    api_key: SecretStr
    phone: str
    password: SecretStr
    auth_scheme: Literal["bearer", "bare"] = "bearer"
    body_style: Literal["plain", "wrapped", "both"] = "both"
    batch_size: int = Field(100, ge=1, le=1000)
    refresh_margin_seconds: int = Field(300, ge=0)
    rate: RateLimit = Field(default_factory=RateLimit)
    timeout_seconds: float = Field(30.0, gt=0)
    # HTTP (docs/configuration.md, docs/decisions/0001-lean-transport.md): stock = httpx's own,
    # honours HTTP(S)_PROXY/NO_PROXY; lean = less client CPU, direct connections only.
    transport: Literal["stock", "lean"] = "stock"
    proxy: str | None = None  # http://[user:password@]host:port (default: the environment's)
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024)

    _check_proxy = field_validator("proxy")(classmethod(lambda cls, v: check_proxy_url(v)))
    _check_http = model_validator(mode="after")(lambda self: check_http_settings(self))
    shops: dict[str, int] = Field(default_factory=dict)  # ERP shop code -> SmartKasa shop id
    # Offline receipts reach a shift after it closed (smartkasa.md §6.6): the shifts that ended
    # in the last late_receipts_days are read again every late_receipts_check_minutes (0 days: never).
    late_receipts_days: float = Field(3.0, ge=0, le=31)  # ended shifts read again for late receipts
    late_receipts_check_minutes: int = Field(60, ge=1, le=24 * 60)  # how often they are read again

    _check_url = field_validator("base_url")(classmethod(lambda cls, v: check_base_url(v)))

    def secrets(self) -> list[SecretStr]:
        """Values the log redaction must mask."""
        return [self.api_key, self.password]

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        digits = re.sub(r"\D", "", v)
        if not 9 <= len(digits) <= 15:
            raise ValueError("phone must have 9 to 15 digits, e.g. 380971234567")
        # Login takes the international form, 380 and nine digits (smartkasa.md §1); the console
        # shows the national one, 0 and nine digits, which users copy: 0971234567 -> 380971234567.
        if len(digits) == 10 and digits.startswith("0"):
            digits = "38" + digits
        return digits


class TrytonSinkSettings(_Strict):
    """``sink: {kind: tryton}`` (docs/tryton.md "Sink"): connection defaults to the ERP source's."""

    url: str | None = None
    database: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    warehouse: str = "ALM"  # code of the PPE warehouse (withdrawals leave its storage location)
    consumption_prefix: str = "CONS-"  # consumption location code = prefix + cost centre code
    default_consumption: str | None = None  # location code when no cost centre is known
    batch_size: int = Field(50, ge=1, le=500)  # split further on SQLite's batch ceiling
    module: Literal["auto", "on", "off"] = "auto"  # erpsync_tryton's external_id
    payment_methods: dict[str, str] = Field(default_factory=dict)  # payment_type_id -> method name
    default_payment_method: str = "Картка"
    points: dict[str, str] = Field(default_factory=dict)  # shop key -> sale.point name
    # What the ERP keys of products are (the shipped mappings: PPE by template id, shop by code)
    ppe_product_key: Literal["template", "product", "code"] = "template"
    shop_product_key: Literal["code", "product", "template"] = "code"
    # an open intent younger than this is another worker's write in flight (left to it); older,
    # it is a crash's leftover (looked up in Tryton, then adopted or resent)
    claim_seconds: float = Field(300, ge=0)


class SinkSettings(_Strict):
    """Where inbound data lands: SQL tables (default: the ERP source database), JSONL files, or Tryton."""

    kind: Literal["sql", "jsonl", "tryton"] = "sql"
    tryton: TrytonSinkSettings = Field(default_factory=TrytonSinkSettings)
    url: str | None = None  # sql: SQLAlchemy URL; default the ERP source URL
    directory: Path | None = None  # jsonl
    tables: dict[str, str] = Field(default_factory=dict)  # stream -> existing ERP table to upsert into
    prefix: str = Field("erpsync_", pattern=r"^[a-z_][a-z0-9_]*$")  # tables erpsync creates itself


class Schedule(_Strict):
    fast_reconcile_seconds: int = Field(300, ge=5)
    full_reconcile_seconds: int = Field(3600, ge=30)
    pull_seconds: int = Field(120, ge=5)
    watermark_seconds: int = Field(30, ge=1)


class TenantSettings(_Strict):
    erp: SourceConfig
    mappings: list[Path]
    smartepi: SmartEPISettings | None = None
    smartkasa: SmartKasaSettings | None = None
    sink: SinkSettings = Field(default_factory=SinkSettings)
    event_token: SecretStr | None = None  # authenticates POST /erp/events
    schedule: Schedule = Field(default_factory=Schedule)
    safety_share: float = Field(0.2, gt=0, le=1)
    derive_identification: str | None = "ERP-{erp_key}"
    # false: map every row through the per-field reference path (slower, same results; see
    # docs/decisions/0002-generated-mapping-loop.md)
    generated_mapping_loop: bool = True
    alerts: AlertSettings | None = None  # docs/deployment.md "Alerts"

    @field_validator("mappings")
    @classmethod
    def _mappings(cls, v: list[Path]) -> list[Path]:
        if not v:
            raise ValueError("at least one mapping file is required")
        return v

    @model_validator(mode="after")
    def _platforms(self) -> TenantSettings:
        if not self.platform_sections():
            raise ValueError(f"configure at least one platform ({' or '.join(CATALOGUE)})")
        return self

    def platform_sections(self) -> dict[str, SmartEPISettings | SmartKasaSettings]:
        """The configured platforms' settings sections, by platform name (the catalogue's)."""
        return {name: section for name in CATALOGUE if (section := getattr(self, name, None)) is not None}


NAMESPACE_ENV = "ERPSYNC_NAMESPACE"


def deployment_namespace() -> str | None:
    """``$ERPSYNC_NAMESPACE``: the prefix that keeps two deployments (or test runs) sharing
    one Redis apart (Celery's keys, erpsync's keys, the rate-governor budgets). The only
    place it is read; None when unset."""
    return os.environ.get(NAMESPACE_ENV, "").strip() or None


def soft_time_limit(hard: int) -> int:
    """Leave the task time to release its lease and record its run before the hard kill."""
    return max(1, hard - max(5, min(60, hard // 10)))


class CelerySettings(_Strict):
    broker_url: str | None = None  # default: Settings.redis_url
    result_backend: str | None = None
    task_time_limit: int = Field(1800, ge=10)
    visibility_timeout: int = Field(3600, ge=20)
    debounce_seconds: float = Field(2.0, ge=0)
    # A task delivered more often than this (each delivery killed its worker: OOM, crash,
    # kill -9) is dropped and its run recorded failed, instead of being redelivered forever.
    max_deliveries: int = Field(3, ge=1, le=100)
    maintenance_seconds: int = Field(600, ge=10)  # beat: stale runs, retention purge

    @model_validator(mode="after")
    def _visibility(self) -> CelerySettings:
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                "visibility_timeout must be greater than task_time_limit, or a long task is redelivered "
                "while it still runs"
            )
        return self


class RetentionSettings(_Strict):
    """How long the state store keeps history (the purge runs in beat: ``erpsync.maintenance``).

    What exactly-once needs is never purged: bindings, bases, intents, cursors, and inbox rows
    that are not applied yet (``pending``/``waiting``) or failed (``failed``/``dead``, for
    ``retry-failed``). An applied inbox row is the dedupe record of its webhook event id, so it
    is kept ``events_days`` (at least 7: longer than any sender's retry schedule, so a late
    redelivery is still recognised); an inbound record marker dedupes the same record arriving
    by webhook and by pull (overlap windows are minutes to hours), so markers live at least as
    long as applied events.
    """

    events_days: int = Field(30, ge=7)  # applied (done) inbox rows, after they were applied
    inbound_records_days: int = Field(180, ge=7)  # delivered-record markers
    run_items_days: int = Field(90, ge=1)  # per-record lines of finished runs
    keep_runs: int = Field(1000, ge=10)  # per tenant, the newest runs always kept
    runs_days: int = Field(90, ge=1)  # older finished runs beyond keep_runs are deleted

    @model_validator(mode="after")
    def _markers_outlive_events(self) -> RetentionSettings:
        if self.inbound_records_days < self.events_days:
            raise ValueError(
                "inbound_records_days must be >= events_days: a marker dedupes a record that an "
                "event still on file may deliver again"
            )
        return self


class Settings(BaseSettings):
    """The whole configuration of one erpsync deployment."""

    model_config = SettingsConfigDict(
        env_prefix="ERPSYNC__", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    state_url: str = "sqlite:///erpsync-state.db"
    redis_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (docs/deployment.md)
    report_dir: Path = Path("reports")
    # Fernet key(s) that encrypt platform session tokens in the state store (comma-separated,
    # first one encrypts); default $ERPSYNC_SECRET_KEY. None: tokens are kept in memory only.
    secrets_key: SecretStr | None = Field(
        default_factory=lambda: (
            SecretStr(os.environ["ERPSYNC_SECRET_KEY"])
            if os.environ.get("ERPSYNC_SECRET_KEY", "").strip()
            else None
        ),
        validate_default=True,
    )
    celery: CelerySettings = Field(default_factory=CelerySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    # `erpsync serve` /status: Authorization: Bearer <token> (or its login form); unset, refused
    operator_token: SecretStr | None = Field(None, min_length=16)
    alerts_check_seconds: int = Field(60, ge=10)  # beat: evaluate every tenant's alerts

    @field_validator("secrets_key")
    @classmethod
    def _secrets_key(cls, v: SecretStr | None) -> SecretStr | None:
        from sync.state.tokens import parse_keys

        if v is not None:
            parse_keys(v.get_secret_value())
        return v

    @field_validator("tenants")
    @classmethod
    def _tenant_ids(cls, v: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
        for key in v:
            if not _TENANT_ID.match(key):
                raise ValueError(f"tenant id {key!r} must be lowercase letters, digits, '-' or '_'")
        return v

    @model_validator(mode="after")
    def _slot_leases_fit_the_task(self) -> Settings:
        """A rate-limit slot's lease (request timeout + margin) must end before the task's soft
        time limit: a slot leaked by a killed worker must not outlast the task it served."""
        from sync.clients.governor import SLOT_MARGIN, slot_lease

        soft = soft_time_limit(self.celery.task_time_limit)
        for tid, tenant in self.tenants.items():
            for name, platform in tenant.platform_sections().items():
                if slot_lease(platform.timeout_seconds) > soft:
                    raise ValueError(
                        f"tenants.{tid}.{name}.timeout_seconds ({platform.timeout_seconds:g} s, so a "
                        f"rate-limit slot lease of {slot_lease(platform.timeout_seconds):g} s) is longer "
                        f"than the task soft time limit ({soft} s for celery.task_time_limit="
                        f"{self.celery.task_time_limit}); lower timeout_seconds to at most "
                        f"{max(soft - SLOT_MARGIN, 0):g} or raise celery.task_time_limit"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the YAML file; environment variables override it.
        return (env_settings, init_settings)

    def tenant(self, tenant_id: str | None) -> tuple[str, TenantSettings]:
        """Resolve ``--tenant``: optional when exactly one tenant is configured."""
        if tenant_id is None:
            if len(self.tenants) == 1:
                return next(iter(self.tenants.items()))
            if not self.tenants:
                raise ConfigError(
                    "the configuration has no tenants",
                    hint="add a `tenants:` section with one tenant (see docs/configuration.md)",
                )
            known = ", ".join(sorted(self.tenants))
            raise ConfigError(
                f"{len(self.tenants)} tenants configured", hint=f"choose one with --tenant ({known})"
            )
        try:
            return tenant_id, self.tenants[tenant_id]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none"
            raise ConfigError(
                f"unknown tenant {tenant_id!r}", hint=f"pass --tenant with one of: {known}"
            ) from None


def expand_env(value: Any, path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of the YAML document."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{path or '<root>'}: environment variable {name} is not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """Every problem with its key path (one line when there is one); an unknown key names the
    close valid one (did you mean) or the valid ones."""
    problems = validation_problems(exc)
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return "\n".join(
        [f"{source}: invalid configuration ({len(problems)} problems):", *(f"  {p}" for p in problems)]
    )


def validation_problems(exc: ValidationError) -> list[str]:
    """``key.path: problem`` for every error of a settings validation."""
    from sync.core.didyoumean import unknown_key_message

    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key_message(Settings, tuple(err["loc"]))
        elif err["type"] == "missing":
            msg = "required key is missing"
        problems.append(f"{_loc(tuple(err['loc']))}: {msg}")
    return problems


def _sqlite_relative_to(url: Any, base: Path) -> Any:
    """A SQLite URL whose file path is relative, made absolute against ``base``."""
    if not isinstance(url, str) or not url.startswith("sqlite"):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # the settings model reports it
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:") or Path(db).is_absolute():
        return url
    return parsed.set(database=str(base / db)).render_as_string(hide_password=False)


def resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """Paths written in the config file are relative to its folder, not to the current directory:
    the SQLite ``state_url`` (also the default one), ``report_dir`` (also the default), each
    tenant's SQLite ERP URL, file source directory, sink URL and sink directory."""

    def path(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str(base / value)
        return value

    data["state_url"] = _sqlite_relative_to(data.get("state_url", "sqlite:///erpsync-state.db"), base)
    data["report_dir"] = path(data.get("report_dir", "reports"))
    for tenant in (data.get("tenants") or {}).values():
        if not isinstance(tenant, dict):
            continue
        erp, sink = tenant.get("erp"), tenant.get("sink")
        if isinstance(erp, dict):
            if erp.get("kind", "sql") == "sql" and "url" in erp:
                erp["url"] = _sqlite_relative_to(erp["url"], base)
            elif erp.get("kind") == "files" and "directory" in erp:
                erp["directory"] = path(erp["directory"])
        if isinstance(sink, dict):
            if "url" in sink:
                sink["url"] = _sqlite_relative_to(sink["url"], base)
            if "directory" in sink:
                sink["directory"] = path(sink["directory"])


def load_settings(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Load the YAML file (``$ERPSYNC_CONFIG`` when ``path`` is None) plus env overrides.

    Relative paths in the file (mappings, SQLite URLs, directories) are resolved against the
    config file's folder (``resolve_relative_paths``); environment overrides are taken as given.
    """
    data: dict[str, Any] = {}
    source = "environment"
    if path is None:
        path = os.environ.get("ERPSYNC_CONFIG")
    if path is not None:
        file = Path(path)
        source = str(file)
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(
                f"{file}: no such file", hint="pass --config FILE or set ERPSYNC_CONFIG"
            ) from None
        except IsADirectoryError:
            raise ConfigError(
                f"{file}: is a directory, not a configuration file",
                hint="pass the YAML file itself, e.g. --config config.yaml",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise ConfigError(
                f"{file}: cannot read: {reason}", hint="check the path and its permissions"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{file}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: the top level must be a mapping")
        data = expand_env(raw)
        base = file.resolve().parent
        for tenant in (data.get("tenants") or {}).values():
            if isinstance(tenant, dict) and isinstance(tenant.get("mappings"), list):
                tenant["mappings"] = [
                    str((base / m).resolve()) if not Path(m).is_absolute() else m for m in tenant["mappings"]
                ]
        resolve_relative_paths(data, base)
    if overrides:
        data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        error = ConfigError(format_validation_error(exc, source))
        error.problems = tuple(validation_problems(exc))
        raise error from None
    _register_secrets(settings)
    return settings


def _register_secrets(settings: Settings) -> None:
    if settings.operator_token is not None:
        register_secret(settings.operator_token.get_secret_value())
    if settings.secrets_key is not None:
        for key in settings.secrets_key.get_secret_value().split(","):
            register_secret(key.strip())
    for tenant in settings.tenants.values():
        secrets: list[SecretStr | None] = [tenant.event_token]
        if tenant.alerts:
            secrets += tenant.alerts.secrets()
        for section in tenant.platform_sections().values():
            secrets += section.secrets()
        for secret in secrets:
            if secret is not None:
                register_secret(secret.get_secret_value())
    for url in (settings.state_url, settings.redis_url, settings.celery.broker_url):
        password = urlsplit(url).password if url else None
        if password:
            register_secret(password)
