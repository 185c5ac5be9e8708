"""Send alert messages: HTTP webhooks (Slack ``{"text": …}`` or generic JSON) and e-mail.

Every text is scrubbed of registered secrets before it leaves; delivery errors are logged
without the target URL (a Slack webhook URL is its own credential). ``send`` returns True
when at least one channel took the message: a retry would repeat it on the channels that
did, so a partly failed delivery is logged, not retried.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Literal

import httpx

from sync.alerts.settings import AlertSettings, SmtpSettings, WebhookTarget
from sync.redact import scrub

log = logging.getLogger("erpsync.alerts")

State = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertMessage:
    tenant: str
    condition: str
    state: State
    title: str
    detail: str
    since: dt.datetime
    at: dt.datetime
    url: str | None = None  # the run report or the status page

    @property
    def headline(self) -> str:
        word = "FIRING" if self.state == "firing" else "RESOLVED"
        return scrub(f"[erpsync {self.tenant}] {word}: {self.title}")

    def text(self) -> str:
        lines = [self.headline]
        if self.state == "firing":
            lines.append(scrub(self.detail))
        else:
            lines.append(
                f"cleared after {_span(self.at - self.since)} (fired {self.since:%Y-%m-%d %H:%M} UTC)"
            )
        if self.url:
            lines.append(scrub(self.url))
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": "erpsync",
            "tenant": self.tenant,
            "condition": self.condition,
            "status": self.state,
            "title": scrub(self.title),
            "detail": scrub(self.detail),
            "since": self.since.isoformat(),
            "at": self.at.isoformat(),
            "url": scrub(self.url) if self.url else None,
            "text": self.text(),
        }


def _span(delta: dt.timedelta) -> str:
    s = max(0, int(delta.total_seconds()))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s / 3600:.1f} h"


Channel = Callable[[AlertMessage], None]


def post_webhook(target: WebhookTarget, message: AlertMessage, *, client: httpx.Client | None = None) -> None:
    body = {"text": message.text()} if target.format == "slack" else message.as_json()
    own = client is None
    http = client or httpx.Client(timeout=target.timeout_seconds, follow_redirects=False)
    try:
        response = http.post(target.url.get_secret_value(), json=body)
    finally:
        if own:
            http.close()
    if not 200 <= response.status_code < 300:
        raise AlertDeliveryError(f"the {target.format} webhook answered HTTP {response.status_code}")


def send_email(conf: SmtpSettings, message: AlertMessage) -> None:
    mail = EmailMessage()
    mail["Subject"] = message.headline
    mail["From"] = conf.sender
    mail["To"] = ", ".join(conf.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=conf.sender.rsplit("@", 1)[-1])
    mail.set_content(message.text() + "\n")
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if conf.security == "ssl":
        smtp = smtplib.SMTP_SSL(conf.host, conf.port, timeout=conf.timeout_seconds, context=context)
    else:
        smtp = smtplib.SMTP(conf.host, conf.port, timeout=conf.timeout_seconds)
    with smtp:
        if conf.security == "starttls":
            smtp.starttls(context=context)
        if conf.username and conf.password is not None:
            smtp.login(conf.username, conf.password.get_secret_value())
        smtp.send_message(mail)


class AlertDeliveryError(Exception):
    pass


class Notifier:
    """The channels of one tenant's ``alerts`` section."""

    def __init__(self, conf: AlertSettings) -> None:
        self.channels: list[tuple[str, Channel]] = []
        for i, target in enumerate(conf.webhooks):
            self.channels.append(
                (f"webhooks[{i}] ({target.format})", lambda m, t=target: post_webhook(t, m))  # type: ignore[misc]
            )
        if conf.email is not None:
            email = conf.email
            self.channels.append((f"email ({email.host})", lambda m: send_email(email, m)))

    def send(self, message: AlertMessage) -> bool:
        """Deliver on every channel; True when at least one took it."""
        delivered = 0
        for name, channel in self.channels:
            try:
                channel(message)
                delivered += 1
            except Exception as exc:  # a dead channel must not stop the others (or the run)
                log.warning(
                    "alert %s/%s (%s) not delivered by %s: %s: %s",
                    message.tenant,
                    message.condition,
                    message.state,
                    name,
                    type(exc).__name__,
                    _reason(exc),
                )
        return delivered > 0


def _reason(exc: BaseException) -> str:
    """An error's text without URLs (webhook URLs are credentials) or secrets."""
    if isinstance(exc, httpx.HTTPError):
        return "the receiver could not be reached or did not answer in time"
    return scrub(str(exc))[:300]
