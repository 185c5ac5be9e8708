"""Session tokens at rest: encrypted with secrets_key, never plaintext; SQLite files owner-only, FULL sync."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from sync.engine.api import Engine
from sync.errors import ConfigError
from sync.playground import Playground, start_playground
from sync.settings import load_settings
from sync.state.db import dispose_engines
from sync.state.store import StateStore, TokenRow
from sync.state.tokens import PREFIX, StateTokenStore, TokenCipher

EXP = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def raw_tokens(store: StateStore, tenant: str) -> tuple[str, str] | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            text("SELECT access_token, refresh_token FROM platform_tokens WHERE tenant = :t"), {"t": tenant}
        ).first()
    return None if row is None else (row[0], row[1])


def put_plaintext(store: StateStore, tenant: str, access: str, refresh: str) -> None:
    """A row as erpsync wrote it before tokens were encrypted."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO platform_tokens (tenant, platform, access_token, refresh_token,"
                " access_expires_at, refresh_expires_at, updated_at)"
                " VALUES (:t, 'smartkasa', :a, :r, :e, :e, :e)"
            ),
            {"t": tenant, "a": access, "r": refresh, "e": EXP},
        )


def test_tokens_are_stored_encrypted_and_read_back(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    cipher = TokenCipher(Fernet.generate_key().decode())
    store.save_token(tenant_id, "smartkasa", TokenRow("acc-plain-1", "ref-plain-1", EXP, EXP), cipher=cipher)
    stored = raw_tokens(store, tenant_id)
    assert stored is not None
    assert all(t.startswith(PREFIX) and "plain" not in t for t in stored)
    token = store.load_token(tenant_id, "smartkasa", cipher=cipher)
    assert token is not None and (token.access_token, token.refresh_token) == ("acc-plain-1", "ref-plain-1")
    # another key cannot open it: a fresh login follows instead of a crash
    assert (
        store.load_token(tenant_id, "smartkasa", cipher=TokenCipher(Fernet.generate_key().decode())) is None
    )
    assert store.load_token(tenant_id, "smartkasa", cipher=None) is None


def test_a_plaintext_row_is_read_once_then_encrypted(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    put_plaintext(store, tenant_id, "acc-legacy", "ref-legacy")
    cipher = TokenCipher(Fernet.generate_key().decode())
    token = store.load_token(tenant_id, "smartkasa", cipher=cipher)
    assert token is not None and token.refresh_token == "ref-legacy"
    stored = raw_tokens(store, tenant_id)
    assert stored is not None and all(t.startswith(PREFIX) and "legacy" not in t for t in stored)
    again = store.load_token(tenant_id, "smartkasa", cipher=cipher)
    assert again is not None and again.access_token == "acc-legacy"


def test_without_a_key_a_plaintext_row_is_used_once_and_deleted(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    put_plaintext(store, tenant_id, "acc-legacy", "ref-legacy")
    token = store.load_token(tenant_id, "smartkasa", cipher=None)
    assert token is not None and token.access_token == "acc-legacy"
    assert raw_tokens(store, tenant_id) is None


def test_key_rotation_rewrites_with_the_first_key(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    store.save_token(tenant_id, "smartkasa", TokenRow("a-1", "r-1", EXP, EXP), cipher=TokenCipher(old))
    token = store.load_token(tenant_id, "smartkasa", cipher=TokenCipher(f"{new},{old}"))
    assert token is not None and token.access_token == "a-1"
    token = store.load_token(tenant_id, "smartkasa", cipher=TokenCipher(new))  # rewritten with `new`
    assert token is not None and token.refresh_token == "r-1"


def test_without_a_key_nothing_is_persisted(state_url: str, tenant_id: str) -> None:
    from sync.clients.smartkasa.auth import TokenSet

    store = StateStore(state_url)
    asyncio.run(StateTokenStore(store, tenant_id, None).save(TokenSet("acc-mem", "ref-mem", EXP, EXP)))
    assert raw_tokens(store, tenant_id) is None


def test_a_bad_secrets_key_is_refused_with_the_way_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("secrets_key: not-a-key\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"Fernet\.generate_key"):
        load_settings(config)
    config.write_text("{}\n", encoding="utf-8")
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("ERPSYNC_SECRET_KEY", key)
    settings = load_settings(config)
    assert settings.secrets_key is not None and settings.secrets_key.get_secret_value() == key
    monkeypatch.setenv("ERPSYNC_SECRET_KEY", "garbage")
    with pytest.raises(ConfigError, match="secrets_key"):
        load_settings(config)


# --- the whole loop: a plan logs in to the SmartKasa sandbox ----------------------------


@pytest.fixture
def play(tmp_path: Path, state_url: str, tenant_id: str) -> Iterator[Playground]:
    with start_playground(
        tmp_path / "pg", employees=3, products_epi=1, products_kasa=3, state_url=state_url, tenant=tenant_id
    ) as pg:
        yield pg


def test_a_real_session_lands_encrypted_and_is_reused(
    play: Playground, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("ERPSYNC_SECRET_KEY", key)
    settings = play.settings()
    engine = Engine(settings)
    try:
        engine.plan(play.tenant)
    finally:
        engine.close()
    store = StateStore(settings.state_url)
    stored = raw_tokens(store, play.tenant)
    assert stored is not None and all(t.startswith(PREFIX) for t in stored)
    token = store.load_token(play.tenant, "smartkasa", cipher=TokenCipher(key))
    assert token is not None and len(token.access_token) > 8
    if settings.state_url.startswith("sqlite:///"):
        db = Path(settings.state_url.removeprefix("sqlite:///"))
        on_disk = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        assert token.access_token.encode() not in on_disk and token.refresh_token.encode() not in on_disk
    engine = Engine(play.settings())
    try:
        engine.plan(play.tenant)  # the stored session is still valid: no new login
    finally:
        engine.close()
    assert raw_tokens(store, play.tenant) == stored


def test_without_a_key_a_real_session_is_not_stored(
    play: Playground, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ERPSYNC_SECRET_KEY", raising=False)
    settings = play.settings()
    engine = Engine(settings)
    try:
        plan = engine.plan(play.tenant)
    finally:
        engine.close()
    assert any(a.platform == "smartkasa" for a in plan.actions)
    assert raw_tokens(StateStore(settings.state_url), play.tenant) is None


# --- the SQLite file itself --------------------------------------------------------------


def test_sqlite_state_files_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        url = f"sqlite:///{tmp_path / 'state.db'}"
        store = StateStore(url)
        store.set_cursor("t", "smartepi", "withdrawals", "x")
        files = list(tmp_path.glob("state.db*"))
        assert {f.name for f in files} >= {"state.db", "state.db-wal"}
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f"{f.name} is readable by others"
        dispose_engines()
        (tmp_path / "state.db").chmod(0o644)
        StateStore(url, migrate=False).set_cursor("t", "smartepi", "withdrawals", "y")
        assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
    finally:
        os.umask(old)
        dispose_engines()


def test_sqlite_commits_are_fully_synchronous(tmp_path: Path) -> None:
    """An acknowledged webhook sits in the inbox: it must survive a power failure (FULL, not NORMAL)."""
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
