"""A run's store calls on one pinned connection; database errors never print the values."""

from __future__ import annotations

import datetime as dt
import traceback

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from sync.core.records import QuarantineEntry
from sync.errors import StateError
from sync.state.models import PlatformToken
from sync.state.store import StateStore, TokenRow
from sync.state.tokens import TokenCipher


def _entry(key: str, stage: str = "validate") -> QuarantineEntry:
    return QuarantineEntry(
        "smartepi", "employees", key, "nome", "required", f"row {key}: nome is empty", stage=stage
    )


def test_pinned_calls_share_one_connection_and_each_commits(state_url: str, tenant_id: str) -> None:
    store = StateStore(state_url)
    checkouts: list[object] = []
    from sqlalchemy import event

    def on_checkout(dbapi_conn: object, record: object, proxy: object) -> None:
        checkouts.append(dbapi_conn)

    event.listen(store.engine, "checkout", on_checkout)
    try:
        with store.pinned():
            run_id = store.start_run(tenant_id, "sync_keys", "fast")
            store.quarantine(tenant_id, [_entry("E1"), _entry("E2"), _entry("E3", stage="apply")])
            assert {q.erp_key for q in store.quarantined(tenant_id, keys=["E1", "E3", "E9"])} == {"E1", "E3"}
            assert (
                store.release_many(tenant_id, "smartepi", "employees", ["E1", "E2", "E3"], stage="validate")
                == 2
            )
            store.save_base(tenant_id, "smartepi", "employees", "E1", "emp_1", {"name": "Ana"})
            with store.pinned():  # nested: the same connection
                store.finish_run(run_id, status="ok", counts={"n": 1}, requests={})
        assert len(checkouts) == 1
    finally:
        event.remove(store.engine, "checkout", on_checkout)
    # Committed, as seen from another connection after the block.
    other = StateStore(state_url, migrate=False)
    assert [q.erp_key for q in other.quarantined(tenant_id)] == ["E3"]
    assert other.bindings(tenant_id, "smartepi", "employees") == {"E1": "emp_1"}
    run, _items = other.run(run_id)
    assert run is not None and run.status == "ok"


def test_a_failed_call_inside_a_pinned_block_leaves_the_connection_usable(
    state_url: str, tenant_id: str
) -> None:
    store = StateStore(state_url)
    with store.pinned():
        with pytest.raises(DBAPIError), store._begin() as conn:
            conn.execute(insert(PlatformToken), {"tenant": None, "platform": "smartkasa"})
        store.quarantine(tenant_id, [_entry("K1")])
    assert [q.erp_key for q in store.quarantined(tenant_id)] == ["K1"]


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # the NULL key is the point
def test_database_errors_do_not_print_the_values_written(state_url: str, tenant_id: str) -> None:
    secret = "tok-" + "s3cr3t" * 4
    store = StateStore(state_url)
    with pytest.raises(DBAPIError) as err, store.engine.begin() as conn:
        conn.execute(insert(PlatformToken), {"tenant": None, "platform": "smartkasa", "access_token": secret})
    assert "parameters hidden" in str(err.value)
    # The server's own message may still quote the row (PostgreSQL's "Failing row contains"):
    # the token path re-raises without it.
    row = TokenRow(secret, secret + "-r", dt.datetime(2030, 1, 1), dt.datetime(2030, 1, 2))
    with pytest.raises(StateError) as failed:
        cipher = TokenCipher(Fernet.generate_key().decode())
        store.save_token(None, "smartkasa", row, cipher=cipher)  # type: ignore[arg-type]
    shown = "".join(traceback.format_exception(failed.value))
    assert secret not in shown and "smartkasa session" in shown
