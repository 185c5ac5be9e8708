"""SmartKasaClient on httpx.MockTransport: auth flows, pagination, resources, batches, redaction.

The fake below is a small stateful SmartKasa: it checks ``X-API-KEY`` and the session
token on every data call, rotates single-use refresh tokens, paginates with a silent
per_page cap, and has knobs for the batch quirks the client must survive.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import itertools
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sync import errors as E
from sync.clients.retry import RetryPolicy
from sync.clients.smartkasa import (
    BatchAmbiguous,
    BatchChunkRejected,
    MemoryTokenStore,
    SmartKasaClient,
    SmartKasaSettings,
    TokenSet,
)

API_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
PHONE = "380971112233"
PASSWORD = "s3cret-pass-word"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


async def nosleep(_: float) -> None:
    return None


class FakeSK:
    """Just enough SmartKasa for the client's unit tests."""

    def __init__(self, clock: Clock, *, scheme: str = "bearer", style: str = "plain") -> None:
        self.clock = clock
        self.scheme = scheme
        self.style = style
        self.access_ttl = dt.timedelta(hours=23)
        self.refresh_ttl = dt.timedelta(days=30)
        self.valid_access: set[str] = set()
        self.valid_refresh: set[str] = set()
        self.seq = itertools.count(1)
        self.calls: list[tuple[str, str]] = []
        self.requests: list[httpx.Request] = []
        self.per_page_cap = 2
        self.batch_order = "same"  # same | reversed
        self.batch_drop = 0  # ids left out of a batch answer
        self.batch_status: int | None = None  # force a status on batch create
        self.refresh_status: int | None = None
        self.products: dict[str, dict[str, Any]] = {}
        self.categories: dict[str, dict[str, Any]] = {}
        self.cards: dict[str, dict[str, Any]] = {}
        self.yield_every_call = False
        self.skew = dt.timedelta(0)  # the server's clock minus ours
        self.send_date = False  # a Date header on the session answers (the server's clock)

    # --- helpers ------------------------------------------------------------------
    def count(self, method: str, path: str) -> int:
        return sum(1 for c in self.calls if c == (method, path))

    def tokens(self) -> dict[str, Any]:
        n = next(self.seq)
        access, refresh = f"acc.{n}.{uuid.uuid4().hex}", f"ref.{n}.{uuid.uuid4().hex}"
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        now = self.clock() + self.skew
        return {
            "id": None,
            "access": access,
            "access_expires_at": (now + self.access_ttl).isoformat(timespec="milliseconds"),
            "csrf": "x",
            "refresh": refresh,
            "refresh_expires_at": (now + self.refresh_ttl).isoformat(timespec="milliseconds"),
        }

    def unwrap(self, body: Any, key: str) -> Any:
        if self.style == "wrapped":
            assert set(body) == {key}, body
            return body[key]
        assert key not in body, body
        return body

    def page(self, items: list[dict[str, Any]], query: httpx.QueryParams) -> dict[str, Any]:
        page = int(query.get("page", "1"))
        per = min(int(query.get("per_page", "25")), self.per_page_cap)
        total_pages = max(1, -(-len(items) // per))
        chunk = items[(page - 1) * per : page * per]
        return {
            "data": chunk,
            "meta": {
                "current_page": page,
                "next_page": page + 1 if page < total_pages else None,
                "prev_page": page - 1 if page > 1 else None,
                "total_pages": total_pages,
                "total_count": len(items),
                "limit_value": per,
                "offset_value": (page - 1) * per,
            },
        }

    def authorized(self, request: httpx.Request) -> bool:
        if request.headers.get("x-api-key") != API_KEY:
            return False
        auth = request.headers.get("authorization", "")
        if self.scheme == "bearer":
            if not auth.startswith("Bearer "):
                return False
            auth = auth[len("Bearer ") :]
        return auth in self.valid_access

    # --- the handler ----------------------------------------------------------------
    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.yield_every_call:
            await asyncio.sleep(0.01)
        self.requests.append(request)
        method, path, query = request.method, request.url.path, request.url.params
        self.calls.append((method, path))
        body = json.loads(request.content) if request.content else None

        def ok(data: Any, status: int = 200, meta: Any = None) -> httpx.Response:
            headers = {}
            if self.send_date:
                headers["date"] = email.utils.format_datetime(self.clock() + self.skew, usegmt=True)
            return httpx.Response(status, json={"data": data, "meta": meta or {}}, headers=headers)

        if path == "/api/v1/auth/sessions" and method == "POST":
            # login carries both forms at once, whatever the body style (a server reads one)
            creds = (
                body["session"]
                if self.style == "wrapped"
                else {k: body.get(k) for k in ("phone_number", "password")}
            )
            if request.headers.get("x-api-key") != API_KEY:
                return httpx.Response(401, json={"message": "Unauthorized"})
            if creds != {"phone_number": PHONE, "password": PASSWORD}:
                return httpx.Response(
                    422, json={"errors": {"base": [{"error": "phone_number_or_password_invalid"}]}}
                )
            return ok(self.tokens(), 201)
        if path == "/api/v1/auth/refresh" and method == "POST":
            assert "authorization" not in request.headers
            token = request.headers.get("x-refresh-token")
            if self.refresh_status:
                return httpx.Response(self.refresh_status, json={"message": "Unauthorized"})
            if token not in self.valid_refresh:
                return httpx.Response(401, json={"message": "Unauthorized"})
            self.valid_refresh.discard(token)
            return ok(self.tokens(), 201)
        if not self.authorized(request):
            return httpx.Response(401, json={"message": "Unauthorized"})

        parts = path.split("/")[3:]  # after /api/v1
        if parts[:2] == ["inventory", "products"]:
            return self.products_route(method, parts[2:], query, body, ok)
        if parts[:2] == ["inventory", "categories"]:
            return self.categories_route(method, parts[2:], query, body, ok)
        if parts[:2] == ["inventory", "cards"]:
            return self.cards_route(method, parts[2:], query, body, ok)
        if parts == ["reports", "z-reports"]:
            return ok([{"id": 51, "cash_total": 12276.25, "shift_id": "s1"}], meta={"total_count": 1})
        if parts == ["pos", "receipts"]:
            receipt = {
                "id": "r1",
                "total_amount": "1438.0",
                "items": [{"id": "i1", "price": "1438.0", "quantity": "1.0", "amount": "1438.0"}],
                "payment_transactions": [{"id": "t1", "amount": "1438.0", "transaction_type_id": 0}],
            }
            return httpx.Response(200, json=self.page([receipt], query))
        if parts == ["inventory", "unit_types"]:
            return ok([{"id": 4, "code": 2009, "name": "Штука"}], meta={"total_count": 1})
        return httpx.Response(404, json={"message": "Not Found"})

    def products_route(self, method, rest, query, body, ok):
        if rest == [] and method == "GET":
            items = list(self.products.values())
            if "number" in query:
                items = [p for p in items if query["number"] in p["number"]]  # partial match, like `q`
            return httpx.Response(200, json=self.page(items, query))
        if rest == [] and method == "POST":
            fields = self.unwrap(body, "product")
            pid = str(uuid.uuid4())
            self.products[pid] = {"id": pid, **fields}
            return ok({"id": pid}, 201)
        if rest == ["batch"] and method == "POST":
            items = self.unwrap(body, "batch")["products"] if self.style == "wrapped" else body["products"]
            if self.batch_status:
                return httpx.Response(self.batch_status, json={"message": "boom"})
            if any(not i.get("title") for i in items):
                return httpx.Response(
                    422,
                    json={
                        "errors": {
                            "products": [{"error": "invalid", "messages": "title: Не може бути пустим"}]
                        }
                    },
                )
            ids = []
            for item in items:
                pid = str(uuid.uuid4())
                self.products[pid] = {"id": pid, **item}
                ids.append({"id": pid})
            if self.batch_order == "reversed":
                ids.reverse()
            if self.batch_drop:
                ids = ids[: len(ids) - self.batch_drop]
            return ok(ids, 201)
        if len(rest) == 1 and rest[0] in self.products:
            pid = rest[0]
            if method == "GET":
                return ok({**self.products[pid], "price": str(self.products[pid].get("price"))})
            if method == "PATCH":
                self.products[pid].update(self.unwrap(body, "product"))
                return ok({"id": pid})
            if method == "DELETE":
                del self.products[pid]
                return ok({"id": pid})
        return httpx.Response(422, json={"errors": {"id": [{"error": "invalid"}]}})

    def categories_route(self, method, rest, query, body, ok):
        if rest == [] and method == "GET":
            return httpx.Response(200, json=self.page(list(self.categories.values()), query))
        if rest == ["batch"] and method == "POST":
            items = body["batch"]["categories"] if self.style == "wrapped" else body["categories"]
            out = []
            for item in items:
                cid = str(uuid.uuid4())
                self.categories[cid] = {"id": cid, "parent_id": None, "color_id": None, **item}
                out.append(self.categories[cid])
            if self.batch_order == "reversed":
                out.reverse()
            return ok(out, 201)
        if rest == [] and method == "POST":
            cid = str(uuid.uuid4())
            self.categories[cid] = {"id": cid, "parent_id": None, **self.unwrap(body, "category")}
            return ok(self.categories[cid], 201)
        if len(rest) == 1 and rest[0] in self.categories and method == "PUT":
            self.categories[rest[0]].update(self.unwrap(body, "category"))
            return ok(self.categories[rest[0]])
        return httpx.Response(404, json={"message": "Not Found"})

    def cards_route(self, method, rest, query, body, ok):
        if rest == [] and method == "GET":
            cards = [
                c
                for c in self.cards.values()
                if ("product_id" not in query or c["product_id"] == query["product_id"])
                and ("shop_id" not in query or str(c["shop_id"]) == query["shop_id"])
            ]
            return ok([{**c, "count": str(c["count"])} for c in cards], meta={"total_count": len(cards)})
        if rest == [] and method == "POST":
            fields = self.unwrap(body, "card")
            cid = next(self.seq) + 10_000
            self.cards[str(cid)] = {"id": cid, **fields}
            return ok({**self.cards[str(cid)], "count": str(fields["count"])}, 201)
        if len(rest) == 1 and rest[0] in self.cards and method == "PUT":
            self.cards[rest[0]].update(self.unwrap(body, "card"))
            return ok({"id": int(rest[0])})
        return httpx.Response(422, json={"errors": {"id": [{"error": "invalid"}]}})


def make(
    fake: FakeSK, clock: Clock, store: MemoryTokenStore | None = None, **overrides: Any
) -> SmartKasaClient:
    settings = SmartKasaSettings(
        base_url="https://sk.test",
        api_key=API_KEY,
        phone_number=PHONE,
        password=PASSWORD,
        auth_scheme=fake.scheme,
        body_style=fake.style,
        **overrides,
    )
    return SmartKasaClient(
        settings,
        transport=httpx.MockTransport(fake),
        token_store=store,
        clock=clock,
        sleep=nosleep,
        retry=RetryPolicy(max_attempts=3, base_delay=0.0),
    )


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "style"), [("bearer", "plain"), ("bare", "wrapped")])
def test_login_then_calls_carry_api_key_and_token(clock, scheme, style):
    fake = FakeSK(clock, scheme=scheme, style=style)
    store = MemoryTokenStore()

    async def go():
        async with make(fake, clock, store) as sk:
            await sk.products.create({"number": "1", "title": "Tea", "price": Decimal("71.89")})
            units = [u async for u in sk.unit_types.iterate()]
            return units

    units = run(go())
    assert units[0].code == 2009 and units[0].id == "4"
    assert fake.count("POST", "/api/v1/auth/sessions") == 1
    assert store.saves == 1 and store.tokens is not None
    data_calls = [r for r in fake.requests if not r.url.path.startswith("/api/v1/auth")]
    for r in data_calls:
        assert r.headers["x-api-key"] == API_KEY
        auth = r.headers["authorization"]
        assert auth.startswith("Bearer ") == (scheme == "bearer")
    login = next(r for r in fake.requests if r.url.path == "/api/v1/auth/sessions")
    assert "authorization" not in login.headers
    sent = json.loads(login.content)
    creds = {"phone_number": PHONE, "password": PASSWORD}
    assert sent == {"session": creds, **creds}  # the Blueprint and the OpenAPI form in one body


def test_stored_tokens_are_reused_without_login(clock):
    fake = FakeSK(clock)
    data = fake.tokens()
    store = MemoryTokenStore(TokenSet.from_response(data, now=clock()))

    async def go():
        async with make(fake, clock, store) as sk:
            return [u async for u in sk.unit_types.iterate()]

    assert len(run(go())) == 1
    assert (
        fake.count("POST", "/api/v1/auth/sessions") == 0 and fake.count("POST", "/api/v1/auth/refresh") == 0
    )


def test_proactive_refresh_before_expiry(clock):
    fake = FakeSK(clock)
    fake.access_ttl = dt.timedelta(hours=1)
    store = MemoryTokenStore()

    async def go():
        async with make(fake, clock, store) as sk:
            await sk.unit_types.iterate().__anext__()
            first = store.tokens
            clock.now += dt.timedelta(minutes=50)  # 10 min left: still fine with a 5 min margin
            await sk.unit_types.iterate().__anext__()
            assert fake.count("POST", "/api/v1/auth/refresh") == 0
            clock.now += dt.timedelta(minutes=6)  # 4 min left: refresh before sending
            await sk.unit_types.iterate().__anext__()
            return first

    first = run(go())
    assert fake.count("POST", "/api/v1/auth/refresh") == 1
    assert store.tokens is not None and store.tokens.refresh != first.refresh  # rotation persisted
    assert fake.count("GET", "/api/v1/inventory/unit_types") == 3  # no 401 round trip
    last = fake.requests[-1]
    assert last.headers["authorization"] == f"Bearer {store.tokens.access}"


def test_short_lived_tokens_do_not_refresh_on_every_call(clock):
    fake = FakeSK(clock)
    fake.access_ttl = dt.timedelta(seconds=60)  # shorter than twice the 5 min margin

    async def go():
        async with make(fake, clock) as sk:
            for _ in range(3):
                await sk.unit_types.iterate().__anext__()

    run(go())
    assert fake.count("POST", "/api/v1/auth/refresh") == 0


@pytest.mark.parametrize("send_date", [True, False])
def test_a_server_clock_two_hours_behind_does_not_renew_before_every_call(clock, send_date):
    """Expiries are on the server's clock: 1 h tokens from a server 2 h behind look an hour
    expired here. The answer's Date moves them onto our clock; without one, the expiry is
    dropped and the token is used until a 401. Before: a login or refresh before every call."""
    fake = FakeSK(clock)
    fake.access_ttl = dt.timedelta(hours=1)
    fake.skew = -dt.timedelta(hours=2)
    fake.send_date = send_date

    async def go():
        async with make(fake, clock) as sk:
            for _ in range(5):
                await sk.unit_types.iterate().__anext__()
                clock.now += dt.timedelta(minutes=5)

    run(go())
    sessions = fake.count("POST", "/api/v1/auth/sessions") + fake.count("POST", "/api/v1/auth/refresh")
    assert sessions == 1
    assert fake.count("GET", "/api/v1/inventory/unit_types") == 5


def test_a_server_clock_ahead_still_refreshes_before_the_real_expiry(clock):
    """A server 2 h ahead: its 1 h token "expires" in 3 h on our clock. With its Date, the
    refresh comes 5 minutes before the real expiry, not after a 401 two hours later."""
    fake = FakeSK(clock)
    fake.access_ttl = dt.timedelta(hours=1)
    fake.skew = dt.timedelta(hours=2)
    fake.send_date = True

    async def go():
        async with make(fake, clock) as sk:
            await sk.unit_types.iterate().__anext__()
            clock.now += dt.timedelta(minutes=56)
            await sk.unit_types.iterate().__anext__()

    run(go())
    assert fake.count("POST", "/api/v1/auth/refresh") == 1
    assert fake.count("GET", "/api/v1/inventory/unit_types") == 2  # no 401 round trip


def test_single_flight_refresh_under_20_concurrent_401s(clock):
    fake = FakeSK(clock)
    fake.yield_every_call = True
    valid_refresh = fake.tokens()["refresh"]  # a live refresh token; its access twin is never used
    stale = TokenSet("acc.revoked", valid_refresh, T0 + dt.timedelta(hours=5), T0 + dt.timedelta(days=5), T0)
    store = MemoryTokenStore(stale)

    async def go():
        async with make(fake, clock, store) as sk:
            results = await asyncio.gather(
                *(sk.cards.iterate(shop_id="1").__anext__() for _ in range(20)), return_exceptions=True
            )
            return results, sk.session

    fake.cards["5"] = {"id": 5, "product_id": "p", "shop_id": 1, "count": "1.0"}
    results, session = run(go())
    assert all(not isinstance(r, BaseException) for r in results), results
    assert fake.count("POST", "/api/v1/auth/refresh") == 1
    assert fake.count("POST", "/api/v1/auth/sessions") == 0
    assert fake.count("GET", "/api/v1/inventory/cards") == 40  # 20 rejected + 20 retried
    assert store.saves == 1 and store.tokens.refresh in fake.valid_refresh
    assert session.refreshes == 1 and session.logins == 0


def test_relogin_when_refresh_is_rejected(clock):
    fake = FakeSK(clock)
    store = MemoryTokenStore(
        TokenSet("acc.revoked", "ref.unknown", T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=1), T0)
    )

    async def go():
        async with make(fake, clock, store) as sk:
            return await sk.unit_types.iterate().__anext__()

    assert run(go()).id == "4"
    assert fake.count("POST", "/api/v1/auth/refresh") == 1
    assert fake.count("POST", "/api/v1/auth/sessions") == 1
    assert store.tokens is not None and store.tokens.access in fake.valid_access


def test_relogin_when_refresh_answer_is_lost(clock):
    fake = FakeSK(clock)
    fake.refresh_status = 502
    live = fake.tokens()
    fake.valid_access.clear()
    store = MemoryTokenStore(TokenSet.from_response(live, now=clock()))

    async def go():
        async with make(fake, clock, store) as sk:
            return await sk.unit_types.iterate().__anext__()

    assert run(go()).id == "4"
    assert fake.count("POST", "/api/v1/auth/refresh") == 1  # never resent: single-use token
    assert fake.count("POST", "/api/v1/auth/sessions") == 1


def test_expired_refresh_token_goes_straight_to_login(clock):
    fake = FakeSK(clock)
    store = MemoryTokenStore(
        TokenSet("acc.old", "ref.old", T0 - dt.timedelta(hours=1), T0 - dt.timedelta(seconds=1), T0)
    )

    async def go():
        async with make(fake, clock, store) as sk:
            await sk.unit_types.iterate().__anext__()

    run(go())
    assert (
        fake.count("POST", "/api/v1/auth/refresh") == 0 and fake.count("POST", "/api/v1/auth/sessions") == 1
    )


def test_bad_credentials_raise_auth_failed_without_secrets(clock):
    fake = FakeSK(clock)
    settings = SmartKasaSettings(
        base_url="https://sk.test", api_key=API_KEY, phone_number=PHONE, password="wrong-pw-1"
    )

    async def go():
        async with SmartKasaClient(
            settings, transport=httpx.MockTransport(fake), clock=clock, sleep=nosleep
        ) as sk:
            await sk.unit_types.iterate().__anext__()

    with pytest.raises(E.AuthFailed) as info:
        run(go())
    assert "phone_number_or_password_invalid" in str(info.value)
    for secret in (API_KEY, PHONE, "wrong-pw-1"):
        assert secret not in f"{info.value} {info.value!r} {info.value.body}"


def test_persistent_401_is_retried_once_then_raised(clock):
    fake = FakeSK(clock)

    async def go():
        async with make(fake, clock) as sk:
            fake.authorized = lambda request: False  # type: ignore[method-assign]
            await sk.unit_types.iterate().__anext__()

    with pytest.raises(E.Unauthorized):
        run(go())
    assert fake.count("GET", "/api/v1/inventory/unit_types") == 2


def test_403_is_not_cured_by_reauth(clock):
    fake = FakeSK(clock)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/auth"):
            return await fake(request)
        fake.calls.append((request.method, request.url.path))
        return httpx.Response(403, json={"message": "Forbidden"})

    settings = SmartKasaSettings(
        base_url="https://sk.test", api_key=API_KEY, phone_number=PHONE, password=PASSWORD
    )

    async def go():
        async with SmartKasaClient(settings, transport=httpx.MockTransport(handler), clock=clock) as sk:
            await sk.shops.get("1")

    with pytest.raises(E.Forbidden):
        run(go())
    assert fake.count("GET", "/api/v1/rsn/shops/1") == 1
    assert fake.count("POST", "/api/v1/auth/sessions") == 1


# --- pagination ------------------------------------------------------------------------


def test_pagination_follows_next_page_despite_per_page_cap(clock):
    fake = FakeSK(clock)
    for i in range(5):
        fake.products[f"p{i}"] = {"id": f"p{i}", "number": f"N{i}", "title": f"T{i}", "price": "1.0"}

    async def go():
        async with make(fake, clock, per_page=100) as sk:
            return [p.id async for p in sk.products.iterate()]

    assert run(go()) == ["p0", "p1", "p2", "p3", "p4"]
    pages = [r.url.params["page"] for r in fake.requests if r.url.path == "/api/v1/inventory/products"]
    assert pages == ["1", "2", "3"]
    assert all(r.url.params["per_page"] == "100" for r in fake.requests if r.url.path.endswith("/products"))


def test_pagination_is_lazy(clock):
    fake = FakeSK(clock)
    for i in range(6):
        fake.products[f"p{i}"] = {"id": f"p{i}", "number": f"N{i}", "title": "T"}

    async def go():
        async with make(fake, clock) as sk:
            it = sk.products.iterate()
            await it.__anext__()
            await it.aclose()

    run(go())
    assert fake.count("GET", "/api/v1/inventory/products") == 1


# --- resources -------------------------------------------------------------------------


def test_find_by_number_returns_every_exact_match(clock):
    fake = FakeSK(clock)
    fake.products = {
        "a": {"id": "a", "number": "4820001", "title": "Tea", "price": "71.89"},
        "b": {"id": "b", "number": "4820001", "title": "Tea 2", "price": "1.0"},
        "c": {"id": "c", "number": "48200011", "title": "Other", "price": "1.0"},
    }

    async def go():
        async with make(fake, clock) as sk:
            return await sk.products.find_by_number("4820001"), await sk.products.find_by_number("999")

    found, none = run(go())
    assert sorted(p.id for p in found) == ["a", "b"] and none == []
    assert found[0].price == Decimal("71.89") and isinstance(found[0].price, Decimal)


def test_decimals_are_sent_as_exact_json_numbers_and_ids_typed(clock):
    fake = FakeSK(clock)

    async def go():
        async with make(fake, clock) as sk:
            pid = await sk.products.create(
                {
                    "number": "1",
                    "title": "T",
                    "price": Decimal("71.89"),
                    "procurement_price": Decimal("50.10"),
                    "subgroup_id": "7277",
                    "user_id": 1,
                    "owner_id": 2,
                }
            )
            await sk.products.update(pid, {"price": Decimal("0.1")})
            return pid

    pid = run(go())
    create = next(
        r for r in fake.requests if r.method == "POST" and r.url.path == "/api/v1/inventory/products"
    )
    text = create.content.decode()
    assert '"price":71.89' in text and '"procurement_price":50.1' in text and '"subgroup_id":7277' in text
    assert "user_id" not in text and "owner_id" not in text
    patch = next(r for r in fake.requests if r.method == "PATCH")
    assert patch.url.path == f"/api/v1/inventory/products/{pid}" and json.loads(patch.content) == {
        "price": 0.1
    }


def test_decimal_too_long_for_a_json_number_is_refused(clock):
    fake = FakeSK(clock)

    async def go():
        async with make(fake, clock) as sk:
            await sk.products.create({"number": "1", "title": "T", "price": Decimal("1.00000000000000001")})

    with pytest.raises(ValueError, match="digits"):
        run(go())


def test_categories_find_by_title_and_parent(clock):
    fake = FakeSK(clock)
    fake.categories = {
        "r": {"id": "r", "title": "Drinks", "parent_id": None},
        "c": {"id": "c", "title": " drinks ", "parent_id": "r"},
        "d": {"id": "d", "title": "Food", "parent_id": None},
    }

    async def go():
        async with make(fake, clock) as sk:
            return await sk.categories.find("DRINKS"), await sk.categories.find("drinks", "r")

    roots, children = run(go())
    assert [c.id for c in roots] == ["r"] and [c.id for c in children] == ["c"]


def test_category_update_uses_put(clock):
    fake = FakeSK(clock, style="wrapped")
    fake.categories = {"r": {"id": "r", "title": "Drinks", "parent_id": None}}

    async def go():
        async with make(fake, clock) as sk:
            return await sk.categories.update("r", {"title": "Beverages", "color_id": "3"})

    cat = run(go())
    assert cat.title == "Beverages" and fake.count("PUT", "/api/v1/inventory/categories/r") == 1
    put = next(r for r in fake.requests if r.method == "PUT")
    # the inner id repeats the path's, as the Blueprint does (contract §1)
    assert json.loads(put.content) == {"category": {"id": "r", "title": "Beverages", "color_id": 3}}


def test_card_upsert_posts_then_puts(clock):
    fake = FakeSK(clock)

    async def go():
        async with make(fake, clock) as sk:
            first = await sk.cards.upsert("p1", "37919", count=Decimal("5.5"), counting_enabled=True)
            second = await sk.cards.upsert("p1", "37919", count=Decimal("9.99"))
            other_shop = await sk.cards.upsert("p1", "40000", count=1)
            cards = [c async for c in sk.cards.iterate(shop_id="37919")]
            return first, second, other_shop, cards

    first, second, other, cards = run(go())
    assert first.created and not second.created and second.id == first.id and other.created
    assert [(c.id, c.count, c.shop_id) for c in cards] == [(first.id, Decimal("9.99"), "37919")]
    post = next(r for r in fake.requests if r.method == "POST" and r.url.path.endswith("/cards"))
    assert json.loads(post.content) == {
        "product_id": "p1",
        "shop_id": 37919,
        "count": 5.5,
        "counting_enabled": True,
    }
    assert fake.count("PUT", f"/api/v1/inventory/cards/{first.id}") == 1


def test_receipts_with_transactions_and_z_report_params(clock):
    fake = FakeSK(clock)

    async def go():
        async with make(fake, clock) as sk:
            receipts = [r async for r in sk.receipts.iterate(shift_id="s1")]
            z = [
                z
                async for z in sk.z_reports.iterate(
                    date_start=dt.datetime(2024, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=3))),
                    date_end=dt.date(2024, 5, 2),
                    terminal_user_id="7",
                )
            ]
            return receipts, z

    receipts, z = run(go())
    assert receipts[0].total_amount == Decimal("1438.0")
    assert receipts[0].payment_transactions[0].amount == Decimal("1438.0")
    assert receipts[0].items[0].quantity == Decimal("1.0")
    assert z[0].cash_total == Decimal("12276.25") and z[0].id == "51"
    zreq = next(r for r in fake.requests if r.url.path == "/api/v1/reports/z-reports")
    assert zreq.url.params["date_start"] == "2024-05-01T00:00:00.000+03:00"
    assert zreq.url.params["date_end"] == "2024-05-02"
    assert zreq.url.params["termianl_user_id"] == "7" and zreq.url.params["terminal_user_id"] == "7"
    rreq = next(r for r in fake.requests if r.url.path == "/api/v1/pos/receipts")
    assert rreq.url.params["shift_id"] == "s1"


def test_unknown_id_is_not_found(clock):
    fake = FakeSK(clock)

    async def go():
        async with make(fake, clock) as sk:
            await sk.products.update("nope", {"title": "x"})

    with pytest.raises(E.NotFound) as info:
        run(go())
    assert info.value.field == "id"


# --- batches ---------------------------------------------------------------------------


def items(n: int, prefix: str = "N") -> list[dict[str, Any]]:
    return [
        {"number": f"{prefix}{i}", "title": f"Item {i}", "price": Decimal(i) + Decimal("0.5")}
        for i in range(n)
    ]


def test_batch_create_chunks_and_maps_in_order(clock):
    fake = FakeSK(clock)

    async def go():
        async with make(fake, clock, batch_size=3, verify_batch_order=False) as sk:
            return await sk.products.create_many(items(7))

    ids = run(go())
    assert [fake.products[i]["number"] for i in ids] == [f"N{i}" for i in range(7)]
    assert fake.count("POST", "/api/v1/inventory/products/batch") == 3
    assert fake.count("GET", "/api/v1/inventory/products/" + ids[0]) == 0  # opted out: no read-back


def test_batch_verify_order_option_fixes_shuffled_answers(clock):
    fake = FakeSK(clock)
    fake.batch_order = "reversed"

    async def go():
        async with make(fake, clock, batch_size=4) as sk:  # verification is the default
            return await sk.products.create_many(items(6))

    ids = run(go())
    assert [fake.products[i]["number"] for i in ids] == [f"N{i}" for i in range(6)]
    # a chunk of 4 is read back by listing (2 pages of 2: cheaper than 4 GETs), a chunk of 2 by id
    assert fake.count("GET", "/api/v1/inventory/products") == 2
    assert sum(1 for m, p in fake.calls if m == "GET" and p.startswith("/api/v1/inventory/products/")) == 2


def test_batch_marker_maps_identical_products_without_barcode(clock):
    """Products without a barcode and with one title: only the marker tells them apart."""
    fake = FakeSK(clock)
    fake.batch_order = "reversed"
    rows = [{"title": "Same", "price": Decimal(1), "alter_number": f"ERP-{i}"} for i in range(5)]

    async def go():
        async with make(fake, clock, batch_size=5) as sk:
            return await sk.products.create_many(rows, marker="alter_number")

    ids = run(go())
    assert [fake.products[i]["alter_number"] for i in ids] == [f"ERP-{i}" for i in range(5)]


def test_batch_count_mismatch_verifies_and_reports_unconfirmed_items(clock):
    fake = FakeSK(clock)
    fake.batch_drop = 1

    async def go():
        async with make(fake, clock, batch_size=3) as sk:
            return await sk.products.create_many(items(5))

    with pytest.raises(BatchAmbiguous) as info:
        run(go())
    err = info.value
    assert err.offset == 0 and len(err.chunk) == 3 and err.done == []
    assert [fake.products[i]["number"] if i else None for i in err.ids] == ["N0", "N1", None]
    assert err.kind == "ambiguous"


def test_categories_batch_maps_shuffled_answer_by_title_and_parent(clock):
    fake = FakeSK(clock)
    fake.batch_order = "reversed"

    async def go():
        async with make(fake, clock, verify_batch_order=True) as sk:
            return await sk.categories.create_many(
                [{"title": "A"}, {"title": "B", "parent_id": "r"}, {"title": "B"}]
            )

    ids = run(go())
    got = [(fake.categories[i]["title"], fake.categories[i].get("parent_id")) for i in ids]
    assert got == [("A", None), ("B", "r"), ("B", None)]
    assert fake.count("GET", "/api/v1/inventory/categories") == 0  # answer holds full objects


def test_batch_422_raises_chunk_rejected_with_progress(clock):
    fake = FakeSK(clock)
    batch = items(5)
    batch[3]["title"] = ""

    async def go():
        async with make(fake, clock, batch_size=2) as sk:
            return await sk.products.create_many(batch)

    with pytest.raises(BatchChunkRejected) as info:
        run(go())
    err = info.value
    assert isinstance(err, E.BatchRejected) and err.field == "title"
    assert err.offset == 2 and [c["number"] for c in err.chunk] == ["N2", "N3"]
    assert [fake.products[i]["number"] for i in err.done] == ["N0", "N1"]


@pytest.mark.parametrize("status", [500, 503])
def test_batch_5xx_is_ambiguous_and_never_resent(clock, status):
    fake = FakeSK(clock)
    fake.batch_status = status

    async def go():
        async with make(fake, clock) as sk:
            await sk.products.create_many(items(2))

    with pytest.raises(BatchAmbiguous) as info:
        run(go())
    assert fake.count("POST", "/api/v1/inventory/products/batch") == 1
    assert [c["number"] for c in info.value.chunk] == ["N0", "N1"] and info.value.ids == [None, None]


def test_batch_dropped_connection_is_ambiguous(clock):
    fake = FakeSK(clock)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/batch"):
            await fake(request)  # committed, then the answer is lost
            raise httpx.ReadError("connection reset")
        return await fake(request)

    settings = SmartKasaSettings(
        base_url="https://sk.test", api_key=API_KEY, phone_number=PHONE, password=PASSWORD
    )

    async def go():
        async with SmartKasaClient(
            settings, transport=httpx.MockTransport(handler), clock=clock, sleep=nosleep
        ) as sk:
            await sk.products.create_many(items(3))

    with pytest.raises(BatchAmbiguous) as info:
        run(go())
    assert fake.count("POST", "/api/v1/inventory/products/batch") == 1 and len(fake.products) == 3
    assert isinstance(info.value.cause, E.AmbiguousWrite)


def test_batch_429_is_retried(clock):
    fake = FakeSK(clock)
    hits = {"n": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/batch") and hits["n"] == 0:
            hits["n"] += 1
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"message": "slow down"})
        return await fake(request)

    settings = SmartKasaSettings(
        base_url="https://sk.test", api_key=API_KEY, phone_number=PHONE, password=PASSWORD
    )

    async def go():
        async with SmartKasaClient(
            settings, transport=httpx.MockTransport(handler), clock=clock, sleep=nosleep
        ) as sk:
            return await sk.products.create_many(items(2))

    assert len(run(go())) == 2 and len(fake.products) == 2


# --- redaction -------------------------------------------------------------------------


def test_secrets_never_in_reprs_or_logs(clock, caplog):
    fake = FakeSK(clock)
    store = MemoryTokenStore()
    caplog.set_level(logging.DEBUG)

    async def go():
        async with make(fake, clock, store) as sk:
            await sk.products.create({"number": "1", "title": "T", "price": 1})
            fake.valid_access.clear()  # force a 401 → refresh
            [p async for p in sk.products.iterate()]
            return sk

    sk = run(go())
    assert store.tokens is not None
    secrets = [API_KEY, PHONE, PASSWORD, store.tokens.access, store.tokens.refresh]
    texts = [
        repr(sk),
        repr(sk.settings),
        str(sk.settings),
        repr(store),
        repr(store.tokens),
        repr(sk.session),
        caplog.text,
    ]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def collect(pages: dict[int, Any]) -> tuple[list[Any], list[int]]:
    from sync.clients.smartkasa.pagination import iterate_pages

    asked: list[int] = []

    async def fetch(page: int) -> Any:
        asked.append(page)
        return pages[page]

    async def go() -> list[Any]:
        return [r["id"] async for r in iterate_pages(fetch)]

    return run(go()), asked


def test_pagination_stop_rules():
    full = {"current_page": 1, "next_page": 2, "total_pages": 1}
    assert collect({1: {"data": [{"id": 1}], "meta": full}}) == ([1], [1])  # current >= total_pages
    assert collect(
        {1: {"data": [{"id": 1}], "meta": {"next_page": 2}}, 2: {"data": [], "meta": {"next_page": 3}}}
    ) == (
        [1],
        [1, 2],
    )  # empty page
    assert collect({1: {"data": [{"id": 1}, {"id": 2}], "meta": {"total_count": 2}}}) == ([1, 2], [1])
    # a total_count-only list that holds records back after all: ask on until the count is reached
    held = {
        1: {"data": [{"id": 1}], "meta": {"total_count": 2}},
        2: {"data": [{"id": 2}], "meta": {"total_count": 2}},
    }
    assert collect(held) == ([1, 2], [1, 2])
    with pytest.raises(E.ContractViolation):
        collect({1: {"data": [{"id": 1}], "meta": {"current_page": 1, "next_page": 1}}})
    with pytest.raises(E.ContractViolation):
        collect({1: {"errors": "nope"}})
