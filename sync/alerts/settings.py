"""``tenants.<id>.alerts``: where a tenant's alerts go and when they fire.

Kept apart from ``sync.settings`` (which imports it) so the alerts package owns its own
configuration. Webhook URLs are secrets (a Slack incoming-webhook URL *is* its
credential), so they are ``SecretStr`` and registered with ``sync.redact``.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_webhook_url(url: str) -> str:
    """https (plain http only for loopback: tests, a local relay), no user:password, and never
    a link-local or cloud metadata address. A query string is allowed (some receivers put a
    key there): the whole URL is a secret."""
    from sync.settings import _METADATA_HOSTS, _is_loopback, _link_local

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL (expected e.g. https://hooks.slack.com/services/…)")
    if "@" in parts.netloc:
        raise ValueError("must not contain user:password@")
    host = parts.hostname.rstrip(".").lower()
    if host in _METADATA_HOSTS or _link_local(host):
        raise ValueError(f"{host} is a link-local or cloud metadata address, not a webhook receiver")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("must be https (plain http is allowed only for loopback hosts)")
    return url.strip()


class WebhookTarget(_Strict):
    """One HTTP receiver: ``slack`` posts ``{"text": …}`` (Slack, Mattermost, Rocket.Chat,
    Teams workflows); ``json`` posts the whole alert as a JSON object."""

    url: SecretStr
    format: Literal["slack", "json"] = "slack"
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr) -> SecretStr:
        return SecretStr(check_webhook_url(v.get_secret_value()))


class SmtpSettings(_Strict):
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        for addr in v:
            if "@" not in addr or any(c.isspace() for c in addr):
                raise ValueError(f"{addr!r} is not an e-mail address")
        return v

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> SmtpSettings:
        from sync.settings import _is_loopback

        if self.security == "none" and self.password is not None and not _is_loopback(self.host):
            raise ValueError("security: none would send the SMTP password in clear text; use starttls or ssl")
        return self


class AlertThresholds(_Strict):
    failed_run: bool = True  # a run that ended "failed"
    rejected_rows: int = Field(0, ge=0)  # fires when more rows than this are held in quarantine
    stale_intervals: int = Field(3, ge=1)  # no successful reconcile for N fast-reconcile intervals
    webhook_failures: int = Field(5, ge=1)  # webhook signature checks failed in a row
    backlog_minutes: int = Field(15, ge=1)  # oldest unprocessed inbox event older than this


class AlertSettings(_Strict):
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    email: SmtpSettings | None = None
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    # Base URL of the status page (e.g. https://erpsync.example.com): messages then link to
    # the run report. Without it they name the run and the command that shows it.
    status_url: str | None = None

    @field_validator("status_url")
    @classmethod
    def _status_url(cls, v: str | None) -> str | None:
        return check_webhook_url(v).rstrip("/") if v else v

    @model_validator(mode="after")
    def _somewhere(self) -> AlertSettings:
        if not self.webhooks and self.email is None:
            raise ValueError("configure at least one of webhooks or email (or remove the alerts section)")
        return self

    def secrets(self) -> list[SecretStr]:
        out = [w.url for w in self.webhooks]
        if self.email is not None and self.email.password is not None:
            out.append(self.email.password)
        return out
