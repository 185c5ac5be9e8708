"""State store behaviour on SQLite and PostgreSQL (both via the `state_url` fixture)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlmodel import SQLModel

from sync.core.records import QuarantineEntry
from sync.state.db import current_revision, get_engine, head_revision
from sync.state.store import IntentClaimed, StateStore, TokenRow
from sync.state.tokens import TokenCipher


def test_migrations_match_models(state_url: str) -> None:
    StateStore(state_url)
    assert current_revision(state_url) == head_revision()
    with get_engine(state_url).connect() as conn:
        # Other tests (ERP sinks) may share this database: compare only the state tables.
        ours = set(SQLModel.metadata.tables)
        ctx = MigrationContext.configure(
            conn, opts={"include_name": lambda name, kind, _parent: kind != "table" or name in ours}
        )
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_base_roundtrip_keeps_decimals_and_children(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    fields = {"name": "Luva", "price": Decimal("10.5"), "active": True}
    children = {"sizes": [{"name": "M"}, {"name": "G"}]}
    store.save_base(
        tenant_id, "smartepi", "products", "P1", "prd_1", fields, children=children, version='"3"'
    )
    base = store.load_bases(tenant_id, "smartepi", "products")["P1"]
    assert base.remote_id == "prd_1"
    assert base.fields == fields and isinstance(base.fields["price"], Decimal)
    assert base.children == children
    assert base.version == '"3"'
    # re-save updates in place; remote id moves with a re-keyed ERP row
    store.save_base(tenant_id, "smartepi", "products", "P2", "prd_1", fields)
    assert set(store.load_bases(tenant_id, "smartepi", "products")) == {"P2"}
    assert store.reverse_bindings(tenant_id, "smartepi") == {"products": {"prd_1": "P2"}}


def test_one_open_intent_per_record(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    first = store.open_intent(
        tenant_id, "smartepi", "employees", "E1", {"identification": "1"}, {"name": "a"}
    )
    with pytest.raises(IntentClaimed):
        store.open_intent(tenant_id, "smartepi", "employees", "E1", {"identification": "1"}, {"name": "a"})
    store.set_intent(first, "unknown", error="timeout")
    with pytest.raises(IntentClaimed):
        store.open_intent(tenant_id, "smartepi", "employees", "E1", {"identification": "1"}, {"name": "a"})
    assert [i.id for i in store.open_intents(tenant_id)] == [first]
    store.set_intent(first, "done", remote_id="emp_1")
    second = store.open_intent(
        tenant_id, "smartepi", "employees", "E1", {"identification": "1"}, {"name": "a"}
    )
    assert second != first
    assert store.intent_counts(tenant_id) == {"done": 1, "pending": 1}


def test_validation_quarantine_releases_fixed_rows(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    bad = [
        QuarantineEntry("smartepi", "employees", "E1", "email", "email", "not an e-mail", "x@", "h1"),
        QuarantineEntry("smartepi", "employees", "E2", "name", "required", "missing", None, "h2"),
    ]
    assert store.replace_validation_quarantine(tenant_id, "smartepi", "employees", bad) == (2, 0)
    assert store.replace_validation_quarantine(tenant_id, "smartepi", "employees", bad[1:]) == (1, 1)
    rows = store.quarantined(tenant_id)
    assert [(q.erp_key, q.rule) for q in rows] == [("E2", "required")]


def test_cursor_token_inbox(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    assert store.get_cursor(tenant_id, "smartepi", "withdrawals") is None
    store.set_cursor(tenant_id, "smartepi", "withdrawals", "2026-01-01T00:00:00Z")
    store.set_cursor(tenant_id, "smartepi", "withdrawals", "2026-01-02T00:00:00Z")
    assert store.get_cursor(tenant_id, "smartepi", "withdrawals") == "2026-01-02T00:00:00Z"

    exp = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    cipher = TokenCipher(Fernet.generate_key().decode())
    store.save_token(tenant_id, "smartkasa", TokenRow("acc-secret", "ref-secret", exp, exp), cipher=cipher)
    token = store.load_token(tenant_id, "smartkasa", cipher=cipher)
    assert token is not None and token.refresh_token == "ref-secret" and token.access_expires_at == exp
    assert "secret" not in repr(token)

    assert store.inbox_add(tenant_id, "smartepi", "evt_1", "withdrawal.created", {"id": "w-1"}) is True
    assert store.inbox_add(tenant_id, "smartepi", "evt_1", "withdrawal.created", {"id": "w-1"}) is False
    pending = store.inbox_pending(tenant_id)
    assert [e.event_id for e in pending] == ["evt_1"]
    store.inbox_mark([pending[0].id], "done")  # type: ignore[list-item]
    assert store.inbox_pending(tenant_id) == []


def test_lease_fencing(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    name = f"reconcile:{tenant_id}"
    token_a = store.acquire_lease(name, "worker-a", 30)
    assert token_a == 1
    assert store.acquire_lease(name, "worker-b", 30) is None
    assert store.check_fence(name, "worker-a", 1)
    store.release_lease(name, "worker-a")
    token_b = store.acquire_lease(name, "worker-b", 30)
    assert token_b == 2
    assert not store.check_fence(name, "worker-a", 1)
