"""The status page of `erpsync serve` through an HTTP client and an HTML parser: every link
works, no configured secret appears on any page, 401 without the operator token, 403 (with
how to set it) when no token is configured."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient

from sync.core.records import QuarantineEntry
from sync.settings import Settings, load_settings
from sync.state.models import RunItem
from sync.state.store import StateStore
from sync.web import create_app
from sync.web.status import COOKIE

OPERATOR_TOKEN = "operator-token-status-0123456789"
API_KEYS = {"acme": "sk_status_acme_key_0123456789", "globex": "sk_status_globex_key_9876543210"}
EVENT_TOKENS = {"acme": "acme-status-event-token-0123", "globex": "globex-status-event-token-987"}
WEBHOOK_SECRET = "whsec_status_secret_0123456789"
HOOK_URL = "https://hooks.example.com/services/T000/B000/statushookkey0123456789"
SMTP_PASSWORD = "smtp-status-password-0123456789"
SECRETS = [
    OPERATOR_TOKEN,
    *API_KEYS.values(),
    *EVENT_TOKENS.values(),
    WEBHOOK_SECRET,
    HOOK_URL,
    SMTP_PASSWORD,
]


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (method, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(("GET", str(a["href"])))
        elif tag == "form":
            self.links.append((str(a.get("method") or "get").upper(), str(a.get("action") or "")))
        elif tag in ("link", "script", "img") and (a.get("href") or a.get("src")):
            self.links.append(("GET", str(a.get("href") or a.get("src"))))


def links_of(html: str) -> list[tuple[str, str]]:
    parser = Links()
    parser.feed(html)
    return parser.links


def config(tmp_path: Path, redis_url: str, *, token: str | None) -> Settings:
    tenants: dict[str, Any] = {}
    for tenant in ("acme", "globex"):
        tenants[tenant] = {
            "erp": {"kind": "files", "directory": str(tmp_path)},
            "mappings": ["mapping.yaml"],
            "smartepi": {
                "base_url": "http://127.0.0.1:9",
                "api_key": API_KEYS[tenant],
                "webhook_secrets": [WEBHOOK_SECRET],
            },
            "event_token": EVENT_TOKENS[tenant],
        }
    tenants["acme"]["alerts"] = {
        "webhooks": [{"url": HOOK_URL}],
        "email": {
            "host": "smtp.example.com",
            "username": "alerts",
            "password": SMTP_PASSWORD,
            "sender": "erpsync@example.com",
            "to": ["ops@example.com"],
        },
    }
    data: dict[str, Any] = {
        "state_url": f"sqlite:///{tmp_path}/state.db",
        "redis_url": redis_url,
        "tenants": tenants,
    }
    if token is not None:
        data["operator_token"] = token
    path = tmp_path / "erpsync.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_settings(path)


def populate(store: StateStore) -> dict[str, list[int]]:
    """Runs (one failed with secrets in its error), items, quarantine, intents, inbox, alerts."""
    runs: dict[str, list[int]] = {"acme": [], "globex": []}
    for i in range(3):
        run_id = store.start_run("acme", "reconcile", "full")
        status = "failed" if i == 1 else "ok"
        error = (
            f"401 from SmartEPI with X-Api-Key {API_KEYS['acme']} (Bearer {OPERATOR_TOKEN})"
            if i == 1
            else None
        )
        store.finish_run(
            run_id, status=status, counts={"smartepi/employees/create/ok": 2}, requests={}, error=error
        )
        runs["acme"].append(run_id)
    store.add_run_items(
        [
            RunItem(
                run_id=runs["acme"][1],
                platform="smartepi",
                entity="employees",
                erp_key="E9",
                action="create",
                outcome="failed",
                detail=f"rejected: token {EVENT_TOKENS['acme']}",
            )
        ]
    )
    running = store.start_run("acme", "sync_keys", "fast")  # not finished yet
    runs["acme"].append(running)
    runs["globex"].append(store.start_run("globex", "pull", "full"))
    store.quarantine(
        "acme",
        [
            QuarantineEntry(
                "smartepi", "employees", "E1", "cpf", "cpf_invalid", "bad cpf", SMTP_PASSWORD, "h"
            ),
            QuarantineEntry("smartepi", "employees", "E2", "cpf", "cpf_invalid", "bad cpf", None, "h"),
            QuarantineEntry("smartkasa", "products", "P1", "price", "not_a_number", "bad price", None, "h"),
        ],
    )
    intent = store.open_intent("acme", "smartepi", "employees", "E5", {"identification": "5"}, {"name": "x"})
    store.set_intent(intent, "unknown", error=f"timeout calling with {API_KEYS['acme']}")
    store.inbox_add("acme", "smartepi", "evt-1", "transaction.created", {"id": "evt-1"})
    store.inbox_add("acme", "smartepi", "evt-2", "transaction.created", {"id": "evt-2"})
    failed = [e.id for e in store.inbox_pending("acme") if e.event_id == "evt-2" and e.id is not None]
    store.inbox_mark(failed, "failed", f"sink refused: password {SMTP_PASSWORD}")
    store.alert_open("acme", "failed_run:reconcile", '{"title": "Reconcile run 2 failed", "detail": "x"}')
    return runs


@pytest.fixture
def app_for(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(token: str | None = OPERATOR_TOKEN) -> tuple[TestClient, StateStore, Settings]:
        settings = config(tmp_path, redis_url, token=token)
        store = StateStore(settings.state_url)
        client = TestClient(create_app(settings, store=store), base_url="http://testserver")
        clients.append(client)
        return client, store, settings

    yield make
    for c in clients:
        c.close()


BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def test_crawl_every_link_with_no_secret_on_any_page(app_for: Any) -> None:
    client, store, _ = app_for()
    runs = populate(store)
    seen: dict[str, str] = {}
    todo = ["/status"]
    posts: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        r = client.get(url, headers=BEARER)
        assert r.status_code == 200, f"{url} answered {r.status_code}"
        assert r.headers["content-type"].startswith("text/html")
        assert (
            r.headers["cache-control"] == "no-store"
            and "default-src 'none'" in r.headers["content-security-policy"]
        )
        seen[url] = r.text
        for method, link in links_of(r.text):
            target = urljoin(url, link)
            parts = urlsplit(target)
            assert parts.netloc in ("", "testserver"), f"{url} links outside: {link}"
            if method == "POST":
                posts.add(parts.path)
            else:
                todo.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    # every run of a configured tenant is reachable, with its HTML report
    for run_id in runs["acme"] + runs["globex"]:
        assert f"/status/runs/{run_id}" in seen
        assert f"erpsync run {run_id}" in seen[f"/status/runs/{run_id}"]
    assert {"/status", "/status/tenants/acme", "/status/tenants/globex"} <= set(seen)
    assert posts == {"/status/logout"}
    for method_path in posts:  # the forms' targets exist
        assert client.post(method_path, headers=BEARER, follow_redirects=False).status_code == 303
    for url, html in seen.items():
        for secret in SECRETS:
            assert secret not in html, f"a secret appears on {url}"
    acme = seen["/status/tenants/acme"]
    assert "cpf_invalid" in acme and "not_a_number" in acme  # quarantine by rule
    assert "unknown: 1" in acme and "E5" in acme  # open intents
    assert "pending: 1" in acme and "failed: 1" in acme and "evt-2" in acme  # inbox
    assert "failed_run:reconcile" in acme  # firing alert
    assert "***" in acme  # the failed run's error, scrubbed
    overview = seen["/status"]
    assert "/status/tenants/acme" in overview and "/status/tenants/globex" in overview
    assert "***" in seen[f"/status/runs/{runs['acme'][1]}"]  # the report's item detail, scrubbed


@pytest.mark.parametrize(
    "path",
    ["/status", "/status/tenants/acme", "/status/runs/1", "/status/tenants/nobody", "/status/runs/999"],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-operator-token-000000"},
        {"Authorization": OPERATOR_TOKEN},  # no scheme
        {"Authorization": f"Basic {OPERATOR_TOKEN}"},
        {"Authorization": f"Bearer {EVENT_TOKENS['acme']}"},  # a tenant's event token is not it
        {"Cookie": f"{COOKIE}={OPERATOR_TOKEN}"},  # the cookie is not the token itself
    ],
)
def test_401_without_the_operator_token(app_for: Any, path: str, headers: dict[str, str]) -> None:
    client, store, _ = app_for()
    populate(store)
    r = client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert 'action="/status/login"' in r.text  # the login form
    assert "acme" not in r.text and "cpf_invalid" not in r.text  # nothing about the tenants leaks
    for secret in SECRETS:
        assert secret not in r.text


def test_login_form_sets_a_cookie_that_is_not_the_token(app_for: Any) -> None:
    client, store, _ = app_for()
    populate(store)
    assert client.get("/status/login").status_code == 200
    wrong = client.post("/status/login", data={"token": "nope-nope-nope-nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    ok = client.post("/status/login", data={"token": OPERATOR_TOKEN}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/status"
    set_cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    assert OPERATOR_TOKEN not in set_cookie
    page = client.get("/status")  # the client keeps the cookie
    assert page.status_code == 200 and "/status/tenants/acme" in page.text
    out = client.post("/status/logout", follow_redirects=False)
    assert out.status_code == 303
    client.cookies.clear()
    assert client.get("/status").status_code == 401


def test_no_operator_token_configured_refuses_with_how_to_set_it(app_for: Any) -> None:
    client, store, _ = app_for(token=None)
    populate(store)
    for path in ("/status", "/status/tenants/acme", "/status/runs/1", "/status/login"):
        r = client.get(path, headers={"Authorization": "Bearer anything-at-all-000000"})
        assert r.status_code == 403
        assert "operator_token" in r.text and "ERPSYNC__OPERATOR_TOKEN" in r.text
    assert client.post("/status/login", data={"token": "x" * 20}).status_code == 403


def test_unknown_tenant_or_run_is_404_once_authenticated(app_for: Any) -> None:
    client, store, _ = app_for()
    populate(store)
    other = store.start_run("decommissioned", "reconcile", "full")  # not a configured tenant
    for path in ("/status/tenants/nobody", "/status/runs/999999", f"/status/runs/{other}"):
        assert client.get(path, headers=BEARER).status_code == 404
    assert client.get("/status/runs/not-a-number", headers=BEARER).status_code == 404
    assert client.get("/status/runs/not-a-number").status_code == 401


def test_a_short_operator_token_is_a_config_error(tmp_path: Path, redis_url: str) -> None:
    from sync.errors import ConfigError

    with pytest.raises(ConfigError, match="operator_token"):
        config(tmp_path, redis_url, token="short")
