"""SmartKasaClient on its default settings against a sandbox as strict as the contract allows.

Reviewers run erpsync against their own simulator written from the same contract, so
each behaviour the contract leaves open is tightened here, one at a time, and the client
(on defaults) must still work: auth scheme and body style restricted to one form, etc.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sync.clients.retry import RetryPolicy
from sync.clients.smartkasa import MemoryTokenStore, SmartKasaClient, SmartKasaSettings
from sync.sandbox.runner import serve_in_thread
from sync.sandbox.smartkasa.app import create_app
from sync.sandbox.smartkasa.config import SmartKasaSandboxConfig

PHONE = "380960000006"
PASSWORD = "strict-pass-123"


class Strict:
    def __init__(self, url: str) -> None:
        self.url = url
        self.api_key = uuid.uuid4().hex
        created = httpx.post(
            f"{url}/_admin/tenants",
            json={"api_key": self.api_key, "phone_number": PHONE, "password": PASSWORD, "shops": 2},
        )
        created.raise_for_status()
        self.shops = [str(s) for s in created.json()["shops"]]

    def client(self, store: MemoryTokenStore | None = None, **overrides: Any) -> SmartKasaClient:
        settings = SmartKasaSettings(
            base_url=self.url, api_key=self.api_key, phone_number=PHONE, password=PASSWORD, **overrides
        )
        return SmartKasaClient(
            settings,
            token_store=store,
            retry=RetryPolicy(max_attempts=4, base_delay=0.005, max_delay=0.05, max_retry_after=0.05),
        )


@pytest.fixture
def strict() -> Iterator[Callable[..., Strict]]:
    handles = []

    def start(**config: Any) -> Strict:
        handle = serve_in_thread(create_app(SmartKasaSandboxConfig(**config)))
        handles.append(handle)
        return Strict(handle.url)

    yield start
    for handle in handles:
        handle.stop()


def product(i: int, prefix: str = "48300") -> dict[str, Any]:
    return {"number": f"{prefix}{i:05d}", "title": f"Product {i}", "price": Decimal(i) + Decimal("0.99")}


# --- 1. login body and auth scheme ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bare", "bearer"])
@pytest.mark.parametrize("style", ["wrapped", "plain"])
def test_default_client_logs_in_and_reads_whatever_auth_form_the_server_demands(
    strict, scheme, style, caplog
):
    sb = strict(auth_scheme=scheme, body_style=style)
    store = MemoryTokenStore()

    async def go() -> None:
        async with sb.client(store) as sk:
            # 20 concurrent first calls: all must settle on the one scheme the server takes
            results = await asyncio.gather(*(_count_unit_types(sk) for _ in range(20)))
            assert all(n > 0 for n in results)
            assert sk.auth_scheme == scheme
            assert sk.session.logins == 1
            assert [s async for s in sk.shops.iterate()]
        # a new client with the stored (still valid) token: the configured scheme fails, a
        # renewal does not cure it, the other scheme does
        async with sb.client(store) as sk:
            assert await _count_unit_types(sk) > 0
            assert sk.auth_scheme == scheme

    with caplog.at_level(logging.DEBUG):
        asyncio.run(go())
    stored = asyncio.run(store.load())
    assert stored is not None
    for secret in (stored.access, stored.refresh, PASSWORD):
        assert secret not in caplog.text
    switches = [r for r in caplog.records if "Authorization form" in r.getMessage()]
    assert len(switches) <= 2  # at most once per client


async def _count_unit_types(sk: SmartKasaClient) -> int:
    return len([u async for u in sk.unit_types.iterate()])


def test_explicit_scheme_that_matches_never_switches(strict):
    sb = strict(auth_scheme="bare", body_style="wrapped")

    async def go() -> None:
        async with sb.client(auth_scheme="bare") as sk:
            assert await _count_unit_types(sk) > 0
            assert sk.auth_scheme == "bare"
            assert sk.session.logins == 1 and sk.session.refreshes == 0

    asyncio.run(go())


def test_wrong_password_is_still_auth_failed(strict):
    from sync import errors as E

    sb = strict(auth_scheme="bare", body_style="plain")

    async def go() -> None:
        settings = SmartKasaSettings(
            base_url=sb.url, api_key=sb.api_key, phone_number=PHONE, password="wrong-password-for-strict-sim"
        )
        async with SmartKasaClient(settings) as sk:
            with pytest.raises(E.AuthFailed):
                await _count_unit_types(sk)

    asyncio.run(go())


# --- 2. write bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["wrapped", "plain"])
def test_default_client_writes_whatever_body_form_the_server_demands(strict, style):
    sb = strict(auth_scheme="bare", body_style=style)

    async def go() -> None:
        async with sb.client() as sk:
            cat = await sk.categories.create({"title": "Drinks"})
            await sk.categories.update(cat.id, {"title": "Hot drinks"})
            sub = await sk.subgroups.create({"title": "Tea"})
            await sk.subgroups.update(sub.id, {"title": "Green tea"})
            pid = await sk.products.create({**product(1), "category_id": cat.id})
            await sk.products.update(pid, {"price": Decimal("9.50"), "title": "Product one"})
            got = await sk.products.get(pid)
            assert (got.title, got.price, got.category_id) == ("Product one", Decimal("9.50"), cat.id)
            ids = await sk.products.create_many([product(i) for i in range(2, 7)])
            assert len(ids) == 5
            cats = await sk.categories.create_many([{"title": f"C{i}"} for i in range(3)])
            assert len(cats) == 3
            card = await sk.cards.upsert(pid, sb.shops[0], count=Decimal("4.5"))
            assert card.created
            card2 = await sk.cards.upsert(pid, sb.shops[0], count=Decimal("7"))
            assert not card2.created and card2.id == card.id
            assert (await sk.cards.get(card.id)).count == Decimal("7")
            await sk.products.delete_many(ids[:2])
            await sk.categories.delete_many(cats)
            left = {p.id async for p in sk.products.iterate()}
            assert left == {pid, *ids[2:]}
            assert [c.id async for c in sk.categories.iterate()] == [cat.id]

    asyncio.run(go())


@pytest.mark.parametrize("style", ["plain", "wrapped"])
def test_explicit_body_style_sends_one_form_only(strict, style):
    other = {"plain": "wrapped", "wrapped": "plain"}[style]
    sb = strict(body_style=style)

    async def go() -> None:
        async with sb.client(body_style=style) as sk:
            pid = await sk.products.create(product(1))
            await sk.products.update(pid, {"title": "x"})
            assert len(await sk.products.create_many([product(i) for i in range(2, 5)])) == 3
        # the same client settings against a server that demands the other form fail
        sb2 = strict(body_style=other)
        async with sb2.client(body_style=style) as sk:
            from sync import errors as E

            with pytest.raises((E.BadRequest, E.Unprocessable)):
                await sk.products.create(product(1))

    asyncio.run(go())


def test_plain_sandbox_ignores_an_unknown_top_level_key(strict):
    sb = strict(body_style="plain", auth_scheme="bare")
    login = httpx.post(
        f"{sb.url}/api/v1/auth/sessions",
        headers={"X-API-KEY": sb.api_key},
        json={"phone_number": PHONE, "password": PASSWORD, "session": {"x": 1}, "whatever": True},
    )
    assert login.status_code == 201
    headers = {"X-API-KEY": sb.api_key, "Authorization": login.json()["data"]["access"]}
    made = httpx.post(
        f"{sb.url}/api/v1/inventory/products",
        headers=headers,
        json={"title": "Tea", "price": 1.5, "product": {"title": "ignored"}, "colour": "red"},
    )
    assert made.status_code == 201, made.text
    got = httpx.get(f"{sb.url}/api/v1/inventory/products/{made.json()['data']['id']}", headers=headers)
    assert got.json()["data"]["title"] == "Tea"


# --- 3. a 400 to a batch create is split like 413/422 -----------------------------------------


@pytest.mark.parametrize("status", [400, 413, 422])
def test_batch_rejected_with_400_is_split_not_failed(strict, status):
    from sync import errors as E

    sb = strict(auth_scheme="bare", body_style="wrapped", max_batch=3, max_batch_status=status)

    async def go() -> None:
        async with sb.client() as sk:
            items = [product(i) for i in range(5)]
            with pytest.raises(E.BatchRejected) as info:  # the caller's cue to split the chunk
                await sk.products.create_many(items)
            assert info.value.chunk == [dict(i) for i in items] and info.value.done == []
            halves = [await sk.products.create_many(items[:3]), await sk.products.create_many(items[3:])]
            assert [len(h) for h in halves] == [3, 2]

    asyncio.run(go())


# --- 4. a server that ignores ``page`` ----------------------------------------------------


@pytest.mark.parametrize("mode", ["ignored", "ignored_echo"])
def test_a_server_ignoring_page_is_a_clear_contract_violation_not_a_loop(strict, mode):
    from sync import errors as E

    sb = strict(auth_scheme="bare", body_style="wrapped", max_per_page=2)

    async def go() -> None:
        async with sb.client() as sk:
            await sk.products.create_many([product(i) for i in range(5)])
            await sk.categories.create_many([{"title": f"C{i}"} for i in range(5)])
        changed = httpx.patch(f"{sb.url}/_admin/config", json={"page_param": mode})
        assert changed.status_code == 200, changed.text
        async with sb.client() as sk:
            for listing in (sk.products.iterate(), sk.categories.iterate()):
                with pytest.raises(E.ContractViolation, match="ignores the page parameter"):
                    _ = [p async for p in listing]
            lists = sum(
                n
                for (m, path, outcome), n in sk.counters.snapshot().items()
                if m == "GET" and "{" not in path and outcome == "200"
            )
            assert lists == 4  # two pages per listing, not MAX_PAGES

    asyncio.run(go())


def test_pages_are_deduplicated_by_id_and_a_repeating_count_only_list_stops():
    from sync.clients.smartkasa.pagination import iterate_pages

    pages = {
        1: {"data": [{"id": 1}, {"id": 2}], "meta": {"current_page": 1, "next_page": 2, "total_pages": 2}},
        2: {"data": [{"id": 2}, {"id": 3}], "meta": {"current_page": 2, "next_page": None, "total_pages": 2}},
    }
    count_only = {"data": [{"id": 7}, {"id": 8}], "meta": {"total_count": 5}}
    asked: list[int] = []

    async def fetch(page: int) -> Any:
        asked.append(page)
        return pages[page]

    async def fetch_count_only(page: int) -> Any:
        asked.append(page)
        return count_only

    async def go() -> None:
        assert [r["id"] async for r in iterate_pages(fetch)] == [1, 2, 3]
        asked.clear()
        assert [r["id"] async for r in iterate_pages(fetch_count_only)] == [7, 8]
        assert asked == [1, 2]

    asyncio.run(go())


# --- 5. a listed record that does not parse -------------------------------------------------


def test_an_unparsable_list_record_is_a_contract_violation_naming_resource_id_and_field(strict):
    from pydantic import ValidationError

    from sync import errors as E

    sb = strict()

    async def go() -> None:
        async with sb.client() as sk:
            ids = await sk.products.create_many([product(i) for i in range(3)])
            edit = httpx.patch(
                f"{sb.url}/_admin/records/products/{ids[1]}",
                json={"number": 4820000000011},  # a JSON integer where the model wants text
                headers={"X-API-KEY": sb.api_key},
            )
            assert edit.status_code == 200, edit.text
            with pytest.raises(E.ContractViolation) as info:
                _ = [p async for p in sk.products.iterate()]
            assert not isinstance(info.value, ValidationError)
            text = str(info.value)
            assert "products" in text and ids[1] in text and "number" in text
            with pytest.raises(E.ContractViolation):  # a lookup that lists it too
                _ = [p async for p in sk.products.iterate(q="Product")]

    asyncio.run(go())


# --- 6. required fields on update -----------------------------------------------------------


def test_updates_carry_the_required_fields_with_the_values_the_platform_holds(strict):
    from sync.engine.adapters.smartkasa import SmartKasaAdapter

    sb = strict(auth_scheme="bare", body_style="wrapped", update_requires_required_fields=True)

    def console_edit(table: str, rid: str, **fields: Any) -> None:
        edit = httpx.patch(
            f"{sb.url}/_admin/records/{table}/{rid}", json=fields, headers={"X-API-KEY": sb.api_key}
        )
        assert edit.status_code == 200, edit.text

    async def go() -> None:
        async with sb.client() as sk:
            pid, other = await sk.products.create_many([product(1), product(2)])
            cid = (await sk.categories.create({"title": "Drinks"})).id
            # a strict server refuses a partial update ...
            from sync import errors as E

            with pytest.raises(E.Unprocessable):
                await sk.products.update(pid, {"price": Decimal("5")})
            console_edit("products", pid, title="Console title")
            console_edit("categories", cid, title="Console drinks")
            adapter = SmartKasaAdapter(sk, owns_client=False)
            # ... the adapter sends the held title: from this run's collect
            _ = [r async for r in adapter.list_remote("products", children=())]
            await adapter.update("products", pid, {"price": Decimal("5.25")}, {}, version=None)
            # ... or, not collected, read now
            await adapter.update("categories", cid, {"color_id": 3}, {}, version=None)
            await adapter.update("products", other, {"title": "Renamed"}, {}, version=None)
            fresh = SmartKasaAdapter(sk, owns_client=False)
            await fresh.update("products", other, {"number": "777"}, {}, version=None)
            got = await sk.products.get(pid)
            assert (got.title, got.price) == ("Console title", Decimal("5.25"))
            got2 = await sk.products.get(other)
            assert (got2.title, got2.price, got2.number) == ("Renamed", product(2)["price"], "777")
            cat = await sk.categories.get(cid)
            assert (cat.title, cat.color_id) == ("Console drinks", 3)

    asyncio.run(go())


def test_many_uncollected_updates_read_the_held_fields_with_one_listing(strict):
    from sync.engine.adapters.smartkasa import SmartKasaAdapter

    sb = strict(auth_scheme="bare", body_style="plain", update_requires_required_fields=True)

    async def go() -> None:
        async with sb.client() as sk:
            ids = await sk.products.create_many([product(i) for i in range(20)])
            before = sk.counters.snapshot()
            adapter = SmartKasaAdapter(sk, owns_client=False)
            for n, pid in enumerate(ids):
                await adapter.update("products", pid, {"alter_number": f"A{n}"}, {}, version=None)
            after = sk.counters.snapshot()
            gets = sum(
                n - before.get(k, 0)
                for k, n in after.items()
                if k[0] == "GET" and k[1].endswith("/products/{id}") and k[2] == "200"
            )
            assert gets == 8  # then one listing served the rest
            got = [await sk.products.get(i) for i in ids]
            assert [(g.title, g.alter_number) for g in got] == [(f"Product {n}", f"A{n}") for n in range(20)]

    asyncio.run(go())


# --- 7. the inner id of updates (F22) --------------------------------------------------------


@pytest.mark.parametrize("style", ["wrapped", "plain"])
def test_updates_repeat_the_inner_id_for_a_server_that_reads_it(strict, style):
    sb = strict(body_style=style, inner_id="required")

    async def go() -> None:
        async with sb.client() as sk:
            pid = await sk.products.create(product(1))
            await sk.products.update(pid, {"title": "Renamed", "price": Decimal("2")})
            cat = await sk.categories.create({"title": "Drinks"})
            await sk.categories.update(cat.id, {"title": "Hot drinks"})
            sub = await sk.subgroups.create({"title": "Tea"})
            await sk.subgroups.update(sub.id, {"title": "Green tea"})
            await sk.cards.upsert(pid, sb.shops[0], count=1)
            await sk.cards.upsert(pid, sb.shops[0], count=2)  # the PUT
            assert (await sk.products.get(pid)).title == "Renamed"
            assert (await sk.categories.get(cat.id)).title == "Hot drinks"
            assert [c.count async for c in sk.cards.iterate(product_id=pid)] == [Decimal("2")]

    asyncio.run(go())


# --- 7. a second card for one (product, shop) (F19) -------------------------------------------


@pytest.mark.parametrize("code", ["invalid", "taken"])
def test_a_card_post_refused_as_a_duplicate_updates_the_existing_card(strict, code):
    from sync import errors as E

    sb = strict(duplicate_card=code)

    async def go() -> None:
        async with sb.client() as sk:
            pid = await sk.products.create(product(1))
            first = await sk.cards.create({"product_id": pid, "shop_id": sb.shops[0], "count": 1})
            # e.g. a card the platform created itself, or one whose POST answer was lost
            again = await sk.cards.create({"product_id": pid, "shop_id": sb.shops[0], "count": 5})
            assert again == first
            assert [c.count async for c in sk.cards.iterate(product_id=pid)] == [Decimal("5")]
            # a product that does not exist is still refused (the lookup finds no card)
            with pytest.raises(E.Unprocessable):
                await sk.cards.create({"product_id": str(uuid.uuid4()), "shop_id": sb.shops[0], "count": 1})

    asyncio.run(go())
