"""Natural-key lookups (issue 14 item 4): only documented filters, hits confirmed locally.

Client and engine adapter against the in-process SmartEPI sandbox in its three
``list_filters`` modes: ``strict`` answers 400 to an undocumented parameter (``?email=``
aborted applies against such an API), ``ignore`` returns unfiltered pages (adopting the
first hit would bind the wrong person). A lookup that fails raises a ``sync.errors`` type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from sync.clients.retry import RetryPolicy
from sync.clients.smartepi import SmartEPIClient
from sync.core.keys import key_values
from sync.engine.adapters.smartepi import SmartEPIAdapter
from sync.errors import AmbiguousWrite, BadRequest, ContractViolation, Duplicate, ErpsyncError, ServerError
from sync.sandbox.faults import FaultConfig
from sync.sandbox.smartepi import SmartEPISandboxConfig, TenantConfig, create_app

KEY = "sk_test_lookups"
FAST = RetryPolicy(max_attempts=3, max_total_delay=1.0, base_delay=0.001, max_delay=0.01)


class Recording(httpx.ASGITransport):
    """The ASGI transport, keeping every URL sent (to check which filters went out);
    ``drop_posts`` loses POST answers, ``"after"`` the sandbox committed them or
    ``"before"`` (the request never arrived)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app=app)
        self.urls: list[httpx.URL] = []
        self.drop_posts: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        lost = httpx.RemoteProtocolError("connection lost after the request was sent", request=request)
        if self.drop_posts == "before" and request.method == "POST":
            raise lost
        response = await super().handle_async_request(request)
        if self.drop_posts == "after" and request.method == "POST":
            raise lost
        return response


Body = Callable[[SmartEPIClient, Recording, httpx.AsyncClient], Awaitable[Any]]


def with_sandbox(fn: Body, *, mode: str = "strict", faults: FaultConfig | None = None) -> Any:
    config = SmartEPISandboxConfig(tenants=[TenantConfig(api_key=KEY, id="t")], list_filters=mode)
    app = create_app(config, faults)

    async def go() -> Any:
        transport = Recording(app)
        admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")
        async with (
            admin,
            SmartEPIClient("http://sandbox/v1", KEY, account="t", transport=transport, retry=FAST) as client,
        ):
            return await fn(client, transport, admin)

    return asyncio.run(go())


async def seed(
    admin: httpx.AsyncClient, resource: str, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    response = await admin.post(f"/_admin/tenants/t/seed/{resource}", json=records)
    assert response.status_code == 201, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def sent_params(transport: Recording) -> list[set[str]]:
    return [set(u.params) for u in transport.urls if u.path.endswith("/employees")]


PEOPLE = [
    {"name": "Ana Lima", "identification": "123.456.789-00", "email": "ana@acme.com"},
    {"name": "Ana Souza", "identification": "222", "email": "souza@acme.com"},
    {"name": "Bia", "email": "Bia@Acme.com"},
    *({"name": f"Filler {i}", "identification": f"F{i}", "email": f"f{i}@acme.com"} for i in range(150)),
]


def test_strict_api_answers_400_to_email_and_the_client_never_sends_it() -> None:
    async def go(c: SmartEPIClient, transport: Recording, admin: httpx.AsyncClient) -> Any:
        await seed(admin, "employees", PEOPLE)
        raw = await admin.get("/v1/employees?email=ana@acme.com", headers={"Authorization": f"Bearer {KEY}"})
        assert raw.status_code == 400
        by_email = await c.employees.find_by_email("BIA@acme.com ")
        by_key = await c.employees.find_by_key({"identification": "999", "email": "souza@ACME.com"})
        return raw.json(), by_email, by_key, sent_params(transport)

    problem, by_email, by_key, params = with_sandbox(go)
    assert problem["type"] == "urn:smartepi:error:bad_request" and "email" in problem["detail"]
    assert [r["name"] for r in by_email] == ["Bia"]
    assert [r["name"] for r in by_key] == ["Ana Souza"]
    assert params and all("email" not in p for p in params)


def test_ambiguous_employee_creates_are_resolved_by_one_name_search_not_email() -> None:
    async def go(c: SmartEPIClient, transport: Recording, admin: httpx.AsyncClient) -> Any:
        await seed(admin, "employees", PEOPLE)
        adapter = SmartEPIAdapter(c, owns_client=False)
        out = []
        for drop, fields in [
            ("after", {"name": "Carla Dias", "email": "carla@acme.com"}),  # committed, answer lost
            ("before", {"name": "Davi Reis", "email": "davi@acme.com"}),  # never arrived
        ]:
            transport.drop_posts = drop
            with pytest.raises(AmbiguousWrite):
                await c.employees.create(fields)
            transport.drop_posts = None
            transport.urls.clear()
            found = await adapter.find("employees", {"email": fields["email"].upper()})
            out.append(([r.fields["name"] for r in found], [dict(u.params) for u in transport.urls]))
        return out

    (carla, carla_sent), (davi, davi_sent) = with_sandbox(go)
    assert carla == ["Carla Dias"] and davi == []
    # one documented search each, no e-mail filter and no listing of 153 employees
    assert carla_sent == [{"name": "Carla", "limit": "100"}]
    assert davi_sent == [{"name": "Davi", "limit": "100"}]


def test_after_a_409_on_the_email_the_lookup_pages_through_everyone() -> None:
    async def go(c: SmartEPIClient, transport: Recording, admin: httpx.AsyncClient) -> Any:
        await seed(admin, "employees", PEOPLE)
        adapter = SmartEPIAdapter(c, owns_client=False)
        with pytest.raises(Duplicate):  # the e-mail belongs to "Bia", not to the name we send
            await c.employees.create({"name": "Beatriz Melo", "email": "bia@acme.com"})
        transport.urls.clear()
        found = await adapter.find("employees", {"email": "bia@acme.com"})
        return [r.fields["name"] for r in found], [dict(u.params) for u in transport.urls]

    found, sent = with_sandbox(go)
    assert found == ["Bia"]
    assert sent[0] == {"limit": "100"} and all("email" not in q and "name" not in q for q in sent)


def _keys(entity: str, fields: dict[str, Any]) -> tuple[str, ...]:
    return ("identification", "email") if entity == "employees" else tuple(fields)


@pytest.mark.parametrize("mode", ["strict", "lenient", "ignore"])
def test_the_adapter_never_returns_a_record_whose_natural_key_differs(mode: str) -> None:
    lookups: list[tuple[str, dict[str, Any], list[str]]] = [
        ("employees", {"identification": " 123.456.789-00"}, ["Ana Lima"]),
        ("employees", {"identification": "999", "email": " SOUZA@acme.com"}, ["Ana Souza"]),
        ("employees", {"email": "bia@acme.com"}, ["Bia"]),
        ("employees", {"identification": "nobody"}, []),
        ("employees", {"email": "nobody@acme.com"}, []),
        ("sectors", {"name": "  welding "}, ["Welding"]),
        ("sectors", {"name": "Weld Shop"}, []),
        ("cost-centers", {"code": "cc  10"}, ["Main"]),  # a mapping may key cost centers by code
        ("cost-centers", {"code": "CC 1"}, []),
        ("products", {"name": "Safety Boot"}, ["safety  boot"]),
    ]

    async def go(c: SmartEPIClient, transport: Recording, admin: httpx.AsyncClient) -> Any:
        await seed(admin, "employees", PEOPLE)
        await seed(admin, "sectors", [{"name": "Weld"}, {"name": "Welding"}, {"name": "Welding Shop"}])
        await seed(
            admin, "cost-centers", [{"name": "Main", "code": "CC 10"}, {"name": "Other", "code": "CC 100"}]
        )
        await seed(
            admin, "products", [{"name": "Safety"}, {"name": "safety  boot"}, {"name": "Safety Boots"}]
        )
        adapter = SmartEPIAdapter(c, owns_client=False)
        return [await adapter.find(entity, keys) for entity, keys, _ in lookups]

    results = with_sandbox(go, mode=mode)
    for (entity, keys, expected), found in zip(lookups, results, strict=True):
        assert sorted(r.fields["name"] for r in found) == expected, (entity, keys)
        wanted = set(key_values(keys, _keys(entity, keys)))
        for r in found:
            assert wanted & set(key_values(r.fields, _keys(entity, keys))), (entity, keys, r.fields)


def test_a_lookup_that_fails_raises_a_typed_error_never_a_raw_one() -> None:
    async def go(c: SmartEPIClient, transport: Recording, admin: httpx.AsyncClient) -> Any:
        await seed(admin, "employees", PEOPLE[:3])
        adapter = SmartEPIAdapter(c, owns_client=False)
        await admin.put(
            "/_admin/faults", json={"p_5xx": 1.0, "write_methods": ["GET"], "path_regex": "^/v1/employees"}
        )
        with pytest.raises(ServerError) as failed:
            await adapter.find("employees", {"identification": "222"})
        return failed.value

    err = with_sandbox(go)
    assert isinstance(err, ErpsyncError) and err.kind == "transient"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"type": "urn:smartepi:error:bad_request", "status": 400}), BadRequest),
        (httpx.Response(200, json={"data": [{"name": "Weld"}], "cursor": None}), ContractViolation),
        (httpx.Response(200, json={"data": {"id": "s1"}, "cursor": None}), ContractViolation),
        (httpx.Response(200, json={"data": [], "cursor": "c1"}), ContractViolation),  # then repeated
    ],
)
def test_bad_lookup_answers_are_typed_errors(answer: httpx.Response, error: type[Exception]) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return answer

    async def go() -> None:
        async with SmartEPIClient(
            "https://epi.test/v1", KEY, account="t", transport=httpx.MockTransport(api), retry=FAST
        ) as c:
            await SmartEPIAdapter(c, owns_client=False).find("sectors", {"name": "Weld"})

    with pytest.raises(error):
        asyncio.run(go())
