"""SmartEPI client against the SmartEPI sandbox over real HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from sync.clients.governor import InProcessGovernor, RateLimits
from sync.clients.retry import RetryPolicy
from sync.clients.smartepi import SmartEPIClient
from sync.errors import (
    AmbiguousWrite,
    ContractViolation,
    Duplicate,
    Forbidden,
    InUse,
    MethodNotAllowed,
    NotFound,
    ServerError,
    StaleVersion,
    Unauthorized,
    Unprocessable,
)

sandbox_app = pytest.importorskip("sync.sandbox.smartepi.app")

FAST = RetryPolicy(max_attempts=8, max_total_delay=5.0, base_delay=0.01, max_delay=0.1, max_retry_after=0.2)


class _Server:
    def __init__(self, app) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = sandbox_app.create_app()
    try:
        from sync.sandbox.runner import serve_in_thread
    except ImportError:
        handle = _Server(app)
    else:
        handle = serve_in_thread(app, port=0)
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture
def tenant(server):
    """A fresh tenant and key per test; faults are cleared afterwards."""
    key = f"sk_test_{uuid.uuid4().hex}"
    with httpx.Client(base_url=server) as admin:
        tid = admin.post("/_admin/tenants", json={"api_key": key}).raise_for_status().json()["id"]
    yield server, key, tid
    with httpx.Client(base_url=server) as admin:
        admin.put("/_admin/faults", json={}).raise_for_status()


def set_faults(server, **faults):
    with httpx.Client(base_url=server) as admin:
        admin.put("/_admin/faults", json=faults).raise_for_status()


def seed(server, tid, resource, records):
    with httpx.Client(base_url=server) as admin:
        return (
            admin.post(f"/_admin/tenants/{tid}/seed/{resource}", json=records)
            .raise_for_status()
            .json()["data"]
        )


def run_client(tenant, fn, **kw):
    server, key, _ = tenant
    kw.setdefault("retry", FAST)

    async def go():
        async with SmartEPIClient(server + "/v1", key, account="t", **kw) as client:
            return await fn(client)

    return asyncio.run(go())


def test_org_entities_full_lifecycle(tenant):
    async def go(c):
        sec = await c.sectors.create({"name": "Welding", "code": "W1"})
        cc = await c.cost_centers.create({"name": "Plant", "code": "100"})
        jr = await c.job_roles.create({"name": "Welder", "description": "hot work"})
        grp = await c.groups.create({"name": "Shift A"})
        emp = await c.employees.create(
            {
                "name": "Maria Silva",
                "identification": "123.456.789-00",
                "email": "maria@acme.com.br",
                "sectorId": sec.record["id"],
                "costCenterId": cc.record["id"],
                "jobRoleId": jr.record["id"],
                "groupId": grp.record["id"],
                "admissionDate": "2024-03-01",
            }
        )
        assert emp.etag == '"1"'

        # reads
        got = await c.employees.get(emp.record["id"])
        assert got.record["email"] == "maria@acme.com.br" and got.etag == '"1"'
        assert [r["id"] for r in await c.sectors.find_by_name("  welding ")] == [sec.record["id"]]
        assert [r["id"] for r in await c.employees.find_by_identification("123.456.789-00")] == [
            emp.record["id"]
        ]
        assert [r["id"] for r in await c.employees.find_by_email("MARIA@acme.com.br")] == [emp.record["id"]]
        listed = [r["id"] async for r in c.employees.list(sectorId=sec.record["id"], name="Mar")]
        assert listed == [emp.record["id"]]

        # update with If-Match from the last read
        upd = await c.sectors.update(sec.record["id"], {"name": "Welding & Cutting"})
        assert upd.etag == '"2"' and upd.record["name"] == "Welding & Cutting" and upd.record["code"] == "W1"

        # stale version -> StaleVersion; the helper re-reads
        with pytest.raises(StaleVersion) as stale:
            await c.sectors.update(sec.record["id"], {"code": "W2"}, etag='"1"')
        assert stale.value.request_id
        out = await c.sectors.update_or_reread(sec.record["id"], {"code": "W2"}, etag='"1"')
        assert not out.applied and out.etag == '"2"'
        out = await c.sectors.update_or_reread(sec.record["id"], {"code": "W2"}, etag=out.etag)
        assert out.applied and out.etag == '"3"'

        # duplicate, invalid reference, in use
        with pytest.raises(Duplicate):
            await c.job_roles.create({"name": " WELDER "})
        with pytest.raises(Duplicate):
            await c.employees.create({"name": "Other", "email": "maria@acme.com.br"})
        with pytest.raises(Unprocessable) as bad_ref:
            await c.employees.update(emp.record["id"], {"costCenterId": "cc_nope"})
        assert bad_ref.value.field == "costCenterId" and bad_ref.value.kind == "record"
        with pytest.raises(InUse):
            await c.sectors.delete(sec.record["id"])

        # delete, then gone
        deleted = await c.employees.delete(emp.record["id"])
        assert deleted.record["id"] == emp.record["id"]
        with pytest.raises(NotFound):
            await c.employees.get(emp.record["id"])
        await c.sectors.delete(sec.record["id"])
        return c.counters.snapshot()

    counts = run_client(tenant, go)
    assert counts[("POST", "/employees", "201")] == 1
    assert counts[("PUT", "/sectors/{id}", "409")] == 2


def test_products_with_sizes_and_certificates(tenant):
    async def go(c):
        p = await c.products.create(
            {
                "name": "Safety boot",
                "unit": "pair",
                "sizes": [{"name": "41"}, {"name": "42"}],
                "certificates": [{"number": "CA-12345", "expiresAt": "2027-01-31"}],
            }
        )
        sizes = p.record["sizes"]
        assert [s["name"] for s in sizes] == ["41", "42"] and all(s["id"] for s in sizes)
        upd = await c.products.update(
            p.record["id"], {"sizes": [{"id": sizes[0]["id"], "name": "41 wide"}, {"name": "43"}]}
        )
        names = sorted(s["name"] for s in upd.record["sizes"])
        assert names == ["41 wide", "42", "43"]
        return await c.products.find_by_name("safety BOOT")

    assert len(run_client(tenant, go)) == 1


def test_pagination_reads_every_page(tenant):
    server, _, tid = tenant
    seed(server, tid, "employees", [{"name": f"E{i:03d}", "identification": f"id{i}"} for i in range(250)])

    async def go(c):
        ids = [r["id"] async for r in c.employees.list()]
        return ids, c.counters.snapshot()

    ids, counts = run_client(tenant, go)
    assert len(ids) == len(set(ids)) == 250
    assert counts == {("GET", "/employees", "200"): 3}


def test_read_only_resources_and_transactions(tenant):
    server, _, tid = tenant
    seed(server, tid, "access-groups", [{"name": "Gate 1"}])
    emp = seed(server, tid, "employees", [{"name": "W", "identification": "w1"}])[0]
    seed(
        server,
        tid,
        "withdrawals",
        [
            {"employeeId": emp["id"], "quantity": 1, "createdAt": "2025-01-10T10:00:00Z"},
            {"employeeId": emp["id"], "quantity": 2, "createdAt": "2025-01-20T10:00:00Z"},
        ],
    )

    async def go(c):
        assert [r["name"] async for r in c.access_groups.list()] == ["Gate 1"]
        window = [
            r["quantity"]
            async for r in c.withdrawals.list(
                createdSince=dt.datetime(2025, 1, 15, tzinfo=dt.UTC), createdUntil=dt.datetime(2025, 2, 1)
            )
        ]
        by_emp = [r["quantity"] async for r in c.withdrawals.list(employeeId=emp["id"])]
        assert window == [2] and sorted(by_emp) == [1, 2]
        assert [r async for r in c.returns.list()] == []
        assert [r async for r in c.exchanges.list()] == []
        assert [r async for r in c.training_records.list(createdSince="2025-01-01T00:00:00Z")] == []
        with pytest.raises(ContractViolation):
            await c.withdrawals.get("w-1")
        with pytest.raises(MethodNotAllowed):  # the server agrees, when asked directly
            await c.request("GET", "/withdrawals/{id}", path_params={"id": "w-1"})
        with pytest.raises(MethodNotAllowed):
            await c.request("POST", "/access-groups", json={"name": "x"})

    run_client(tenant, go)


def test_bad_keys_are_terminal_auth_errors(tenant):
    server, _, _ = tenant

    class NoAuth(SmartEPIClient):
        async def auth_headers(self):
            return {}

    async def go():
        async with SmartEPIClient(
            server + "/v1", "sk_test_wrong_key", account="t", retry=FAST, key_activation_wait=0.2
        ) as wrong:
            with pytest.raises(Forbidden) as forbidden:
                await wrong.sectors.get("x")
        async with NoAuth(server + "/v1", "sk_test_unused", account="t", retry=FAST) as anon:
            with pytest.raises(Unauthorized):
                await anon.sectors.get("x")
        return forbidden.value

    err = asyncio.run(go())
    assert err.kind == "terminal" and err.request_id is None and "sk_test_wrong_key" not in str(err)


def test_429_bursts_are_absorbed_by_retries(tenant):
    server, _, _ = tenant
    set_faults(server, p_429=0.4, seed=7)

    async def go(c):
        await asyncio.gather(*(c.sectors.create({"name": f"S{i}"}) for i in range(15)))
        names = sorted([r["name"] async for r in c.sectors.list()])
        return names, c.counters.snapshot()

    names, counts = run_client(
        tenant, go, governor=InProcessGovernor(RateLimits(rate=500, burst=50, concurrency=4))
    )
    assert names == sorted(f"S{i}" for i in range(15))  # every POST landed exactly once
    assert counts.get(("POST", "/sectors", "429"), 0) > 0


def test_quota_429s_with_a_governor_below_the_quota(tenant):
    server, _, _ = tenant
    set_faults(server, quota_rps=50, quota_burst=5)

    async def go(c):
        for _ in range(3):
            await asyncio.gather(*(_drain(c.sectors.list()) for _ in range(10)))
        return c.counters.snapshot()

    # Half the quota with a small burst: the governor stamps requests when they leave, the
    # server when they arrive, and a loaded machine bunches arrivals; this margin absorbs it.
    counts = run_client(tenant, go, governor=InProcessGovernor(RateLimits(rate=25, burst=2, concurrency=4)))
    assert counts == {("GET", "/sectors", "200"): 30}


async def _drain(aiter):
    return [x async for x in aiter]


def test_5xx_on_put_is_retried_and_on_post_is_ambiguous(tenant):
    server, _, _ = tenant

    async def go(c):
        sec = await c.sectors.create({"name": "Paint"})
        set_faults(server, p_5xx=1.0, write_methods=["POST"])
        with pytest.raises(AmbiguousWrite) as amb:
            await c.sectors.create({"name": "Assembly"})
        assert amb.value.kind == "ambiguous"
        # the injected 5xx came before the handler: lookup says absent, so resending is safe
        assert await c.sectors.find_by_name("Assembly") == []
        set_faults(server, p_5xx=1.0, write_methods=["PUT"])
        with pytest.raises(ServerError):  # idempotent: retried until the budget runs out
            await c.sectors.update(sec.record["id"], {"code": "P0"})
        set_faults(server)
        upd = await c.sectors.update(sec.record["id"], {"code": "P1"})
        return upd, c.counters.snapshot()

    upd, counts = run_client(tenant, go)
    assert upd.record["code"] == "P1"
    assert (
        sum(n for (m, _, st), n in counts.items() if m == "PUT" and st.startswith("5")) == FAST.max_attempts
    )
    assert sum(n for (m, _, st), n in counts.items() if m == "POST" and st.startswith("5")) == 1  # sent once
    assert counts[("PUT", "/sectors/{id}", "200")] == 1


def test_dropped_response_after_commit_is_ambiguous_and_found_by_lookup(tenant):
    server, _, _ = tenant

    async def go(c):
        set_faults(server, p_drop_after_commit=1.0, write_methods=["POST"])
        with pytest.raises(AmbiguousWrite):
            await c.employees.create({"name": "Joao", "identification": "555"})
        set_faults(server)
        found = await c.employees.find_by_natural_key({"identification": "555"})
        return found, c.counters.snapshot()

    found, counts = run_client(tenant, go)
    assert [r["name"] for r in found] == ["Joao"]
    assert sum(n for (m, _, _), n in counts.items() if m == "POST") == 1  # never resent
