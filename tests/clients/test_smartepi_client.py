"""SmartEPI client on httpx.MockTransport: pagination, contract rules, versions, lookups, redaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import httpx
import pytest

from sync.clients.retry import RetryPolicy
from sync.clients.smartepi import SmartEPIClient
from sync.clients.smartepi.models import Employee, Product, parse
from sync.errors import AmbiguousWrite, ContractViolation, Forbidden, StaleVersion

KEY = "sk_live_TESTKEY_0123456789"


class FakeApi:
    """Just enough SmartEPI to drive the client: one resource list and scripted answers."""

    def __init__(self, records=(), page_cursor=None, script=None):
        self.records = list(records)
        self.page_cursor = page_cursor  # fn(offset) -> cursor, to fake a broken server
        self.script = script  # fn(request) -> Response | None
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            scripted = self.script(request)
            if scripted is not None:
                return scripted
        params = request.url.params
        limit = int(params.get("limit", 20))
        offset = int(params.get("cursor", "0").removeprefix("c"))
        rows = self.records
        if "name" in params:
            rows = [r for r in rows if r["name"].strip().casefold().startswith(params["name"].casefold())]
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        cursor = (self.page_cursor(offset) if self.page_cursor else f"c{offset + limit}") if more else None
        return httpx.Response(200, json={"data": page, "cursor": cursor})


def client_for(api, **kw):
    kw.setdefault("retry", RetryPolicy(max_attempts=2, max_total_delay=0.01, base_delay=0.001))
    kw.setdefault("key_activation_wait", 0.0)  # a 403 is final at once (the wait has its own tests)
    return SmartEPIClient(
        "https://epi.test/v1", KEY, account="acme", transport=httpx.MockTransport(api), **kw
    )


def run(fn):
    async def go():
        async with client_for(fn.api) as c:
            return await fn(c)

    return asyncio.run(go())


def with_api(api):
    def deco(fn):
        fn.api = api
        return fn

    return deco


def employees(n):
    return [{"id": f"emp_{i}", "name": f"Person {i}", "identification": f"{i:011d}"} for i in range(n)]


def test_lists_every_page_with_limit_100_and_the_cursor_unchanged():
    api = FakeApi(employees(250))

    @with_api(api)
    async def go(c):
        return [r["id"] async for r in c.employees.list()], c.counters.snapshot()

    ids, counts = run(go)
    assert ids == [f"emp_{i}" for i in range(250)]
    assert [dict(r.url.params) for r in api.requests] == [
        {"limit": "100"},
        {"limit": "100", "cursor": "c100"},
        {"limit": "100", "cursor": "c200"},
    ]
    assert api.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert counts == {("GET", "/employees", "200"): 3}


def test_listing_is_lazy():
    api = FakeApi(employees(250))

    @with_api(api)
    async def go(c):
        async for _ in c.employees.list():
            break

    run(go)
    assert len(api.requests) == 1


def test_a_repeated_cursor_is_a_contract_violation():
    api = FakeApi(
        employees(350), page_cursor=lambda offset: "c100"
    )  # the server keeps sending page 2's cursor

    @with_api(api)
    async def go(c):
        return [r async for r in c.employees.list()]

    with pytest.raises(ContractViolation, match="repeated a pagination cursor"):
        run(go)
    assert len(api.requests) == 2


def test_empty_string_cursor_ends_the_list():
    api = FakeApi(script=lambda r: httpx.Response(200, json={"data": [{"id": "s1"}], "cursor": ""}))

    @with_api(api)
    async def go(c):
        return [r async for r in c.sectors.list()]

    assert run(go) == [{"id": "s1"}]


@pytest.mark.parametrize(
    ("resource", "filters", "message"),
    [
        ("employees", {"sectorId": "s", "costCenterId": "c"}, "at most one relationship filter"),
        ("employees", {"jobRoleId": "j", "groupId": "g", "name": "a"}, "at most one relationship filter"),
        ("withdrawals", {"employeeId": "e", "productId": "p"}, "at most one relationship filter"),
        ("withdrawals", {"employeeId": "e", "createdSince": "2025-01-01T00:00:00Z"}, "time window"),
        ("training_records", {"employeeId": "e", "createdUntil": dt.datetime(2025, 1, 1)}, "time window"),
        ("employees", {"sectorid": "s"}, "unsupported list filter"),
        ("employees", {"email": "a@x.com"}, "unsupported list filter"),
        ("employees", {"costCenter2Id": "c"}, "unsupported list filter"),
        ("sectors", {"createdSince": "2025-01-01"}, "unsupported list filter"),
        ("employees", {"limit": 0}, "limit"),
        ("employees", {"limit": 101}, "limit"),
    ],
)
def test_contract_rules_are_enforced_before_sending(resource, filters, message):
    api = FakeApi()

    @with_api(api)
    async def go(c):
        return [r async for r in c.resource(resource).list(**filters)]

    with pytest.raises(ContractViolation, match=message):
        run(go)
    assert api.requests == []


def test_allowed_combinations_are_sent():
    api = FakeApi()

    @with_api(api)
    async def go(c):
        await _drain(c.employees.list(sectorId="s1", name="Mar", identification="1", limit=50))
        await _drain(
            c.withdrawals.list(
                createdSince=dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC),
                createdUntil=dt.datetime(2025, 2, 1, 9, 30),
            )
        )
        await _drain(c.returns.list(productId="p1"))

    run(go)
    assert [dict(r.url.params) for r in api.requests] == [
        {"sectorId": "s1", "name": "Mar", "identification": "1", "limit": "50"},
        {"createdSince": "2025-01-31T12:00:00Z", "createdUntil": "2025-02-01T09:30:00Z", "limit": "100"},
        {"productId": "p1", "limit": "100"},
    ]


async def _drain(aiter):
    return [x async for x in aiter]


def test_transactions_are_list_only_and_read_only():
    api = FakeApi()

    @with_api(api)
    async def go(c):
        with pytest.raises(ContractViolation, match="list-only"):
            await c.withdrawals.get("w-1")
        with pytest.raises(ContractViolation, match="read-only"):
            await c.access_groups.create({"name": "x"})
        with pytest.raises(ContractViolation, match="read-only"):
            await c.exchanges.delete("x-1", etag="1")

    run(go)
    assert api.requests == []


def single(record, etag, status=200):
    return httpx.Response(status, json={"data": record}, headers={"ETag": etag, "X-Request-Id": "req_1"})


def test_create_validates_and_shapes_the_payload():
    api = FakeApi(script=lambda r: single({"id": "emp_1", **json.loads(r.content)}, '"1"', 201))

    @with_api(api)
    async def go(c):
        created = await c.employees.create(
            {
                "id": "ignored",
                "createdAt": "2020-01-01",
                "name": "Maria",
                "costCenter2Id": "cc_2",
                "admissionDate": dt.date(2024, 3, 1),
                "accessGroupIds": ["ag_1"],
                "active": True,
            }
        )
        with pytest.raises(ContractViolation, match="nickname"):
            await c.employees.create({"name": "x", "nickname": "y"})
        with pytest.raises(ContractViolation, match="create needs name"):
            await c.sectors.create({"code": "S1"})
        with pytest.raises(ContractViolation, match="active"):
            await c.products.create({"name": "Boot", "active": "perhaps"})
        return created

    created = run(go)
    assert created.etag == '"1"' and created.record["id"] == "emp_1"
    assert json.loads(api.requests[0].content) == {
        "name": "Maria",
        "costCenter2Id": "cc_2",
        "admissionDate": "2024-03-01",
        "accessGroupIds": ["ag_1"],
        "active": True,
    }
    assert len(api.requests) == 1


def test_product_nested_sizes_and_certificates():
    api = FakeApi(script=lambda r: single({"id": "prd_1", **json.loads(r.content)}, '"2"'))

    @with_api(api)
    async def go(c):
        return await c.products.update(
            "prd_1",
            {
                "sizes": [{"id": "sz_1", "name": "42"}, {"name": "43"}],
                "certificates": [{"number": "CA-1", "expiresAt": "2026-01-31"}],
            },
            etag='"1"',
        )

    out = run(go)
    assert json.loads(api.requests[0].content) == {
        "sizes": [{"id": "sz_1", "name": "42"}, {"name": "43"}],
        "certificates": [{"number": "CA-1", "expiresAt": "2026-01-31"}],
    }
    product = parse(Product, {**out.record, "futureField": 1})
    assert product.sizes[1].name == "43" and product.certificates[0].expires_at == dt.date(2026, 1, 31)


def test_update_and_delete_send_if_match_from_the_last_read():
    def script(r):
        if r.method == "GET":
            return single({"id": "sec_1", "name": "Welding"}, '"4"')
        if r.method == "PUT":
            return single({"id": "sec_1", "name": "Welding & Cutting"}, '"5"')
        return single({"id": "sec_1", "name": "Welding & Cutting"}, '"6"')

    api = FakeApi(script=script)

    @with_api(api)
    async def go(c):
        with pytest.raises(ContractViolation, match="no version known"):
            await c.sectors.update("sec_1", {"name": "x"})
        await c.sectors.get("sec_1")
        updated = await c.sectors.update("sec_1", {"name": "Welding & Cutting"})
        deleted = await c.sectors.delete("sec_1")
        return updated, deleted

    updated, deleted = run(go)
    assert [(r.method, r.headers.get("if-match")) for r in api.requests] == [
        ("GET", None),
        ("PUT", '"4"'),
        ("DELETE", '"5"'),
    ]
    assert updated.etag == '"5"' and deleted.etag == '"6"'


@pytest.mark.parametrize(("given", "sent"), [(7, '"7"'), ("7", '"7"'), ('"7"', '"7"'), ('W/"7"', '"7"')])
def test_etag_forms_are_quoted(given, sent):
    api = FakeApi(script=lambda r: single({"id": "g1"}, '"8"'))

    @with_api(api)
    async def go(c):
        await c.groups.update("g1", {"description": "d"}, etag=given)

    run(go)
    assert api.requests[0].headers["if-match"] == sent


def test_stale_update_hands_back_the_fresh_record():
    stale = httpx.Response(
        409,
        json={
            "type": "urn:smartepi:error:conflict",
            "title": "Conflict",
            "status": 409,
            "detail": "version mismatch",
        },
        headers={"X-Request-Id": "req_9"},
    )

    def script(r):
        if r.method in ("PUT", "DELETE"):
            return stale
        return single({"id": "jr_1", "name": "Fresh"}, '"9"')

    api = FakeApi(script=script)

    @with_api(api)
    async def go(c):
        with pytest.raises(StaleVersion) as info:
            await c.job_roles.update("jr_1", {"name": "Mine"}, etag='"3"')
        assert info.value.request_id == "req_9"
        out = await c.job_roles.update_or_reread("jr_1", {"name": "Mine"}, etag='"3"')
        gone = await c.job_roles.delete_or_reread("jr_1", etag='"3"')
        return out, gone

    out, gone = run(go)
    assert (out.applied, out.record["name"], out.etag) == (False, "Fresh", '"9"')
    assert not gone.applied


def test_find_by_name_sends_a_prefix_and_matches_exactly_client_side():
    api = FakeApi(
        [
            {"id": "1", "name": "Welding"},
            {"id": "2", "name": "  welding  "},
            {"id": "3", "name": "Welding Cutting"},
            {"id": "4", "name": "Weld"},
            {"id": "5", "name": "welding  & cutting"},
        ]
    )

    @with_api(api)
    async def go(c):
        a = [r["id"] for r in await c.sectors.find_by_name(" WELDING ")]
        b = [r["id"] for r in await c.sectors.find_by_name("Welding & Cutting")]
        return a, b, await c.sectors.find_by_name("   ")

    a, b, empty = run(go)
    assert a == ["1", "2"] and b == ["5"] and empty == []
    assert [r.url.params["name"] for r in api.requests] == ["WELDING", "Welding"]


PEOPLE = [
    {"id": "e1", "name": "Ana Lima", "identification": "123.456.789-00", "email": "A@X.com"},
    {"id": "e2", "name": "Bia", "identification": None, "email": "b@x.com"},
    {"id": "e3", "name": "Ana Souza", "identification": "555", "email": "ana.souza@x.com"},
]


def strict_people_api(people=PEOPLE):
    """Employees as the contract documents them: ``identification`` exact, ``name`` prefix,
    anything else (``email``) 400."""

    def script(r):
        p = r.url.params
        if set(p) - {"identification", "name", "limit", "cursor"}:
            return httpx.Response(400, json={"type": "urn:smartepi:error:bad_request", "status": 400})
        rows = people
        if "identification" in p:
            rows = [x for x in rows if (x["identification"] or "") == p["identification"]]
        if "name" in p:
            rows = [x for x in rows if x["name"].casefold().startswith(p["name"].casefold())]
        return httpx.Response(200, json={"data": rows, "cursor": None})

    return FakeApi(script=script)


def test_employee_lookups_by_identification_then_email_send_only_documented_filters():
    api = strict_people_api()

    @with_api(api)
    async def go(c):
        e = c.employees
        return (
            [r["id"] for r in await e.find_by_identification(" 123.456.789-00 ")],
            [r["id"] for r in await e.find_by_email("b@X.COM")],
            [r["id"] for r in await e.find_by_natural_key({"identification": "999", "email": "a@x.com"})],
            [r["id"] for r in await e.find_by_email("ANA.SOUZA@x.com", name="Ana Souza")],
            await e.find_by_natural_key({}),
        )

    by_id, by_email, fallback, by_name_hint, none = run(go)
    assert by_id == ["e1"] and by_email == ["e2"] and fallback == ["e1"] and by_name_hint == ["e3"]
    assert none == []
    sent = [dict(r.url.params) for r in api.requests]
    assert all("email" not in q for q in sent)
    assert {"name": "Ana", "limit": "100"} in sent  # the name hint narrows the e-mail search
    assert parse(Employee, PEOPLE[0]).identification == "123.456.789-00"


def test_a_server_ignoring_filters_never_yields_a_record_with_another_key():
    everyone = [*PEOPLE, "not a record", {"id": "x", "name": None, "email": None}]
    api = FakeApi(script=lambda r: httpx.Response(200, json={"data": everyone, "cursor": None}))

    @with_api(api)
    async def go(c):
        e = c.employees
        return (
            await e.find_by_identification("000"),
            [r["id"] for r in await e.find_by_identification("12345678900")],
            await e.find_by_email("nobody@x.com", name="Ana"),
            [r["id"] for r in await e.find_by_natural_key({"email": "b@x.com", "name": "Bia"})],
            [r["id"] for r in await e.find_by_name("ana lima")],
        )

    none_id, by_id, none_email, by_email, by_name = run(go)
    assert none_id == [] and none_email == [] and by_id == ["e1"] and by_email == ["e2"]
    assert by_name == ["e1"]


def test_post_5xx_is_ambiguous_and_sent_once():
    api = FakeApi(
        script=lambda r: httpx.Response(
            500, json={"type": "urn:smartepi:error:internal_error", "detail": "boom"}
        )
    )

    @with_api(api)
    async def go(c):
        await c.sectors.create({"name": "Welding"})

    with pytest.raises(AmbiguousWrite):
        run(go)
    assert len(api.requests) == 1


def test_the_api_key_never_leaks(caplog):
    def script(r):
        # A hostile gateway that echoes the key back in its body.
        return httpx.Response(
            403,
            json={
                "Message": f"denied for {r.headers['authorization']}",
                "authorization": r.headers["authorization"],
            },
        )

    api = FakeApi(script=script)
    caplog.set_level(logging.DEBUG)
    from sync.redact import install_log_redaction

    install_log_redaction()

    @with_api(api)
    async def go(c):
        logging.getLogger("test").info("client is %r, key %s", c, KEY)
        try:
            await c.sectors.get("sec_1")
        except Forbidden as exc:
            return c, exc

    client, exc = run(go)
    assert exc.kind == "terminal" and exc.status == 403
    texts = [
        str(exc),
        repr(exc),
        repr(exc.body),
        repr(client),
        repr(vars(client)),
        caplog.text,
        *(r.getMessage() for r in caplog.records),
    ]
    for text in texts:
        assert KEY not in text
