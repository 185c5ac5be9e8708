"""``GET /status``: a small server-rendered status page of ``erpsync serve`` (Jinja2, no JS).

Pages: ``/status`` (every tenant: last run, quarantine, open intents, inbox backlog, firing
alerts), ``/status/tenants/{tenant}`` (its runs, quarantine by rule, open intents, inbox,
alerts) and ``/status/runs/{id}`` (the HTML run report, served from the state store).

Access: the ``operator_token`` setting. Send it as ``Authorization: Bearer <token>``
(scripts, curl) or type it once into ``/status/login`` (browsers): that sets an HttpOnly,
SameSite=Strict cookie holding an HMAC of the token (never the token itself), so the
token never appears in a URL or an access log. Without a configured token every page
answers 403 and says how to set one: the page is never open by default. Pages show
counts, rules, keys and scrubbed reasons, never a configured secret or a quarantined value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from functools import cache
from html import escape as html_escape
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from sync.alerts.service import WEBHOOK_FAILURES
from sync.errors import utcnow
from sync.redact import scrub
from sync.settings import Settings
from sync.state.store import OPEN_INTENT_STATES, StateStore

COOKIE = "erpsync_status"
MAX_LOGIN_BODY = 4096
RUNS_SHOWN = 25
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
NO_TOKEN = (
    "The status page is disabled because no operator token is configured. Set operator_token "
    "in the configuration file (as ${STATUS_TOKEN}, at least 16 characters) or the environment "
    "variable ERPSYNC__OPERATOR_TOKEN, then restart `erpsync serve`."
)


@cache
def _env() -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [PackageLoader("sync.web", "templates"), PackageLoader("sync.report", "templates")]
        ),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["scrub"] = lambda v: scrub(str(v)) if v is not None else ""
    env.filters["when"] = _when
    env.filters["age"] = _age
    return env


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "—"


def _age(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return "—"
    s = max(0, int(((now or utcnow()) - value).total_seconds()))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def session_value(token: str) -> str:
    """The cookie: an HMAC of the token (a stolen cookie does not reveal the token)."""
    return hmac.new(token.encode(), b"erpsync status session v1", hashlib.sha256).hexdigest()


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env().get_template(template).render(**context)
    return HTMLResponse(scrub(html), status_code=status, headers=HEADERS)


def make_status_router(
    get_settings: Callable[[], Settings], get_store: Callable[[], StateStore]
) -> APIRouter:
    router = APIRouter(tags=["status"], include_in_schema=False)

    def token() -> str | None:
        secret = get_settings().operator_token
        return secret.get_secret_value() if secret is not None else None

    def denied(request: Request) -> Response | None:
        """None when the request may see the pages; else the answer (403 or 401)."""
        expected = token()
        if not expected:
            return _page("message.html.j2", 403, title="Status page disabled", message=NO_TOKEN)
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
            return None
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), session_value(expected).encode()):
            return None
        answer = _page("login.html.j2", 401, error=None)
        answer.headers["WWW-Authenticate"] = 'Bearer realm="erpsync status"'
        return answer

    @router.get("/status/login", response_class=HTMLResponse)
    async def login_form() -> Response:
        if not token():
            return _page("message.html.j2", 403, title="Status page disabled", message=NO_TOKEN)
        return _page("login.html.j2", error=None)

    @router.post("/status/login")
    async def login(request: Request) -> Response:
        expected = token()
        if not expected:
            return _page("message.html.j2", 403, title="Status page disabled", message=NO_TOKEN)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return _page("login.html.j2", 413, error="The form is too large.")
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _page("login.html.j2", 401, error="That is not the operator token.")
        answer = RedirectResponse("/status", status_code=303, headers=HEADERS)
        answer.set_cookie(
            COOKIE,
            session_value(expected),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/status",
            max_age=12 * 3600,
        )
        return answer

    @router.post("/status/logout")
    async def logout() -> Response:
        answer = RedirectResponse("/status/login", status_code=303, headers=HEADERS)
        answer.delete_cookie(COOKIE, path="/status")
        return answer

    @router.get("/status", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        if (answer := denied(request)) is not None:
            return answer
        settings = get_settings()
        rows = await run_in_threadpool(
            lambda: [_tenant_summary(get_store(), t) for t in sorted(settings.tenants)]
        )
        return _page("status.html.j2", tenants=rows, now=utcnow())

    @router.get("/status/tenants/{tenant}", response_class=HTMLResponse)
    async def tenant_page(tenant: str, request: Request) -> Response:
        if (answer := denied(request)) is not None:
            return answer
        if tenant not in get_settings().tenants:
            return _page(
                "message.html.j2", 404, title="Unknown tenant", message="No such tenant is configured."
            )
        data = await run_in_threadpool(_tenant_detail, get_store(), tenant)
        return _page("tenant.html.j2", t=data, now=utcnow())

    @router.get("/status/runs/{run_id}", response_class=HTMLResponse)
    async def run_report(run_id: str, request: Request) -> Response:
        if (answer := denied(request)) is not None:  # before any validation: 401 says nothing
            return answer
        if not run_id.isdigit() or len(run_id) > 18:
            return _page("message.html.j2", 404, title="Unknown run", message="There is no such run.")
        from sync.engine.runs import run_dict
        from sync.report.html import render_run_html

        run = await run_in_threadpool(run_dict, SimpleNamespace(store=get_store()), int(run_id))
        if not run or run.get("tenant") not in get_settings().tenants:
            return _page("message.html.j2", 404, title="Unknown run", message=f"There is no run {run_id}.")
        html = await run_in_threadpool(render_run_html, run)
        tenant = html_escape(str(run["tenant"]))
        back = f'<p><a href="/status/tenants/{tenant}">← status of {tenant}</a></p>'
        html = html.replace("<body>", "<body>\n" + back, 1)
        return HTMLResponse(scrub(html), headers=HEADERS)

    return router


def _run_row(run: Any) -> dict[str, Any]:
    took = None
    if run.finished_at is not None:
        took = (run.finished_at - run.started_at).total_seconds()
    return {
        "id": run.id,
        "kind": run.kind,
        "mode": run.mode,
        "status": run.status,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "took": "—" if took is None else (f"{took:.1f} s" if took < 120 else f"{took / 60:.1f} min"),
        "error": (scrub(run.error)[:300] if run.error else None),
    }


def _tenant_summary(store: StateStore, tenant: str) -> dict[str, Any]:
    runs = store.runs(tenant, limit=1)
    intents = store.intent_counts(tenant)
    inbox = store.inbox_counts(tenant)
    return {
        "id": tenant,
        "last_run": _run_row(runs[0]) if runs else None,
        "quarantined": sum(store.quarantine_by_rule(tenant).values()),
        "open_intents": sum(intents.get(s, 0) for s in OPEN_INTENT_STATES),
        "backlog": inbox.get("pending", 0) + inbox.get("waiting", 0),
        "oldest_pending": store.inbox_oldest_pending(tenant),
        "held": inbox.get("failed", 0) + inbox.get("dead", 0),
        "alerts": [a.condition for a in store.alert_states(tenant) if a.state == "firing"],
    }


def _tenant_detail(store: StateStore, tenant: str) -> dict[str, Any]:
    import json

    alerts = []
    for a in store.alert_states(tenant):
        try:
            title = str(json.loads(a.summary).get("title") or a.condition)
        except (ValueError, AttributeError):
            title = a.condition
        alerts.append({"condition": a.condition, "state": a.state, "title": title, "since": a.since})
    counter = store.alert_counter(tenant, WEBHOOK_FAILURES)
    return {
        "id": tenant,
        "runs": [_run_row(r) for r in store.runs(tenant, limit=RUNS_SHOWN)],
        "quarantine": sorted(store.quarantine_by_rule(tenant).items()),
        "intent_counts": sorted(store.intent_counts(tenant).items()),
        "open_intents": [
            {
                "platform": i.platform,
                "entity": i.entity,
                "erp_key": i.erp_key,
                "state": i.state,
                "attempts": i.attempts,
                "run_id": i.run_id,
                "updated_at": i.updated_at,
                "error": scrub(i.error)[:200] if i.error else None,
            }
            for i in store.open_intents(tenant)[:50]
        ],
        "inbox": sorted(store.inbox_counts(tenant).items()),
        "oldest_pending": store.inbox_oldest_pending(tenant),
        "inbox_problems": [
            {
                "event_id": e.event_id,
                "type": e.type,
                "status": e.status,
                "attempts": e.attempts,
                "error": scrub(e.error)[:200] if e.error else None,
            }
            for e in store.inbox_problems(tenant, limit=20)
        ],
        "alerts": alerts,
        "webhook_failures": counter.value if counter is not None else 0,
    }
