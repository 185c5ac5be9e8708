"""The tenant lease: exclusion, renewal, fencing, takeover after a holder stops renewing."""

from __future__ import annotations

import time

import pytest

from sync.engine.locks import TenantLease, lease_name
from sync.errors import LockLost
from sync.state.store import StateStore


@pytest.fixture
def store(state_url: str) -> StateStore:
    return StateStore(state_url)


def test_one_holder_at_a_time_and_release_frees(store: StateStore, tenant_id: str) -> None:
    with TenantLease(store, tenant_id, ttl=30) as first:
        assert first.acquired
        first.fence()
        second = TenantLease(store, tenant_id, ttl=30)
        assert not second.acquire()
        with pytest.raises(LockLost):
            second.fence()
        other_tenant = TenantLease(store, tenant_id + "x", ttl=30)
        assert other_tenant.acquire()  # tenants do not exclude each other
        other_tenant.release()
    third = TenantLease(store, tenant_id, ttl=30)
    assert third.acquire()
    third.release()


def test_renewal_keeps_the_lease_past_its_ttl(store: StateStore, tenant_id: str) -> None:
    with TenantLease(store, tenant_id, ttl=0.9) as lease:
        time.sleep(2.0)
        lease.fence()
        assert not TenantLease(store, tenant_id, ttl=0.9).acquire()


def test_a_holder_that_stopped_renewing_is_fenced_off_after_takeover(
    store: StateStore, tenant_id: str
) -> None:
    stale = TenantLease(store, tenant_id, ttl=0.5)
    stale.token = store.acquire_lease(lease_name(tenant_id), stale.holder, 0.5)  # no renewal thread: "paused"
    assert stale.token is not None
    time.sleep(0.7)
    with TenantLease(store, tenant_id, ttl=30) as fresh:
        assert fresh.acquired and fresh.token is not None and fresh.token > stale.token
        with pytest.raises(LockLost):
            stale.fence()
        fresh.fence()


def test_renewal_thread_notices_a_takeover(store: StateStore, tenant_id: str) -> None:
    lease = TenantLease(store, tenant_id, ttl=0.6)
    assert lease.acquire()
    # Simulate a long pause of this holder: another takes over the lease in the meantime.
    store.release_lease(lease_name(tenant_id), lease.holder)
    assert store.acquire_lease(lease_name(tenant_id), "intruder", 30) is not None
    # The thread renews every ttl/3 (0.2 s); on a loaded CI machine a round can take longer.
    deadline = time.monotonic() + 10
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease.lost
    with pytest.raises(LockLost):
        lease.fence()
    lease.release()  # must not free the intruder's lease
    assert not TenantLease(store, tenant_id, ttl=30).acquire()
