"""Tryton client without a server: the ``__class__`` codec, error mapping, and the request
loop's session and retry behaviour on httpx.MockTransport (answers shaped as trytond's)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sync.clients.tryton import (
    SyncTrytonClient,
    TrytonAuthFailed,
    TrytonBug,
    TrytonBusy,
    TrytonClient,
    TrytonConcurrencyError,
    TrytonForbidden,
    TrytonUserError,
    TrytonWarning,
    batch_too_large,
)
from sync.clients.tryton.codec import decode, encode
from sync.clients.tryton.errors import map_rpc_error
from sync.errors import AmbiguousWrite, StaleVersion, Unprocessable

PASSWORD = "sync-Secret-2026"
KEY = "aea87749deadbeef07b1412"

# --- codec -------------------------------------------------------------------------


def test_encode_tags_every_special_type() -> None:
    value = {
        "d": dt.date(2019, 4, 6),
        "t": dt.datetime(2026, 11, 22, 4, 14, 15, 867349),
        "n": Decimal("33.2134"),
        "b": b"\x00\xffabc",
        "td": dt.timedelta(minutes=1, seconds=30),
        "tm": dt.time(8, 30, 5, 12),
        "list": (1, "x", None, True, 2.5),
    }
    out = encode(value)
    assert out["d"] == {"__class__": "date", "year": 2019, "month": 4, "day": 6}
    assert out["t"] == {
        "__class__": "datetime",
        "year": 2026,
        "month": 11,
        "day": 22,
        "hour": 4,
        "minute": 14,
        "second": 15,
        "microsecond": 867349,
    }
    assert out["n"] == {"__class__": "Decimal", "decimal": "33.2134"}
    assert out["b"] == {"__class__": "bytes", "base64": base64.b64encode(b"\x00\xffabc").decode()}
    assert out["td"] == {"__class__": "timedelta", "seconds": 90.0}
    assert out["tm"]["__class__"] == "time" and out["tm"]["microsecond"] == 12
    assert out["list"] == [1, "x", None, True, 2.5]
    json.dumps(out)  # plain JSON now
    assert decode(json.loads(json.dumps(out))) == {**value, "list": [1, "x", None, True, 2.5]}


def test_aware_datetimes_are_sent_as_naive_utc() -> None:
    kyiv = dt.timezone(dt.timedelta(hours=2))
    out = encode(dt.datetime(2026, 1, 1, 1, 30, tzinfo=kyiv))
    assert (out["year"], out["month"], out["day"], out["hour"], out["minute"]) == (2025, 12, 31, 23, 30)


def test_decode_nested_search_read_answer() -> None:
    answer = {
        "id": 1,
        "start_date": {"__class__": "date", "year": 2019, "month": 4, "day": 6},
        "party.": {
            "id": 3,
            "identifiers.": [{"id": 3, "code": "838.637.940-52"}],
            "price": {"__class__": "Decimal", "decimal": "47.90"},
        },
    }
    out = decode(answer)
    assert out["start_date"] == dt.date(2019, 4, 6)
    assert out["party."]["price"] == Decimal("47.90")
    assert out["party."]["identifiers."][0]["code"] == "838.637.940-52"


def test_decode_leaves_unknown_or_malformed_tags_as_data() -> None:
    assert decode({"__class__": "Money", "x": 1}) == {"__class__": "Money", "x": 1}
    bad = {"__class__": "Decimal", "decimal": "not a number"}
    assert decode(bad) == bad
    assert decode({"__class__": "date", "year": 2026}) == {"__class__": "date", "year": 2026}


def test_encode_refuses_what_tryton_cannot_hold() -> None:
    with pytest.raises(TypeError, match="object"):
        encode(object())
    with pytest.raises(ValueError, match="NaN"):
        encode(Decimal("NaN"))


# --- JSON-RPC error mapping ----------------------------------------------------------


def test_user_error_is_a_record_error_with_trytons_message() -> None:
    # A CPF no other test registers as a secret: redaction is process-wide (the sandbox
    # password "123456789" of other tests would mask part of "12345678900").
    msg = 'The Brazillian National Identifier "52998224725" for party "Bad CPF" is not valid.'
    exc = map_rpc_error(
        ["UserError", [msg, "", None]], rpc_method="model.party.party.create", request_id="r-1"
    )
    assert isinstance(exc, TrytonUserError) and isinstance(exc, Unprocessable)
    assert exc.kind == "record"
    assert exc.tryton_message == msg
    assert msg in str(exc) and "r-1" in str(exc) and "model.party.party.create" in str(exc)


def test_user_error_description_is_kept() -> None:
    exc = map_rpc_error(
        ["UserError", ['The value for field "Code" is not valid.', "EAN check digit", [["code", "=", 1]]]],
        rpc_method="m",
        request_id="r",
    )
    assert isinstance(exc, TrytonUserError)
    assert "EAN check digit" in exc.message and exc.domain == [["code", "=", 1]]


def test_concurrency_is_stale_version() -> None:
    exc = map_rpc_error(
        ["ConcurrencyException", "Records were modified in the meanwhile"], rpc_method="m", request_id="r"
    )
    assert isinstance(exc, TrytonConcurrencyError) and isinstance(exc, StaleVersion)
    assert exc.kind == "record" and "re-read" in exc.hint


def test_warning_and_bug() -> None:
    warn = map_rpc_error(["UserWarning", ["w1", "Are you sure?", ""]], rpc_method="m", request_id="r")
    assert isinstance(warn, TrytonWarning) and warn.name == "w1" and "res.user.warning" in warn.hint
    bug = map_rpc_error(["'bad_field'", "Traceback ..."], rpc_method="model.x.read", request_id="r-9")
    assert isinstance(bug, TrytonBug) and bug.kind == "terminal"
    assert "'bad_field'" in str(bug) and "r-9" in str(bug) and "Traceback" not in str(bug)
    assert not batch_too_large(bug)
    deep = map_rpc_error(["maximum recursion depth exceeded", ""], rpc_method="m", request_id="r")
    assert batch_too_large(deep)
    assert isinstance(map_rpc_error("garbage", rpc_method="m", request_id="r"), TrytonBug)
    assert isinstance(map_rpc_error(["UserError"], rpc_method="m", request_id="r"), TrytonUserError)


# --- the client on a mock server -----------------------------------------------------


class FakeTryton:
    """Answers like trytond: login, preferences, and a scripted queue per RPC method."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.logins = 0
        self.valid_session = f"Session {base64.b64encode(f'epi:3:{KEY}'.encode()).decode()}"
        self.script: dict[str, list[Callable[[dict[str, Any]], httpx.Response]]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append(body)
        self.headers.append(request.headers)
        method = body["method"]
        if method == "common.db.login":
            if body["params"][1] != {"password": PASSWORD}:
                return httpx.Response(401, text="<p>Unauthorized</p>")
            self.logins += 1
            return httpx.Response(200, json={"id": body["id"], "result": [3, KEY, None]})
        if request.headers.get("authorization") != self.valid_session:
            return httpx.Response(401)
        queue = self.script.get(method)
        if queue:
            return queue.pop(0)(body)
        if method == "model.res.user.get_preferences":
            return ok(body, {"company": 1, "locale": {"date": "%d"}, "language": "en"})
        return ok(body, [])


def ok(body: dict[str, Any], result: Any, **headers: str) -> httpx.Response:
    return httpx.Response(200, json={"id": body["id"], "result": result}, headers=headers)


def run(fake: FakeTryton, fn: Callable[[TrytonClient], Any], **kw: Any) -> Any:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def go() -> Any:
        async with TrytonClient(
            "http://tryton.test",
            "erp",
            "epi",
            kw.pop("password", PASSWORD),
            transport=httpx.MockTransport(fake),
            sleep=fake_sleep,
            **kw,
        ) as client:
            return await fn(client)

    return asyncio.run(go())


def test_login_context_and_session_header() -> None:
    fake = FakeTryton()

    async def go(c: TrytonClient) -> Any:
        return await c.search_read(
            "company.employee", [("id", ">", 0)], ["party.name"], limit=1000, order=[("id", "ASC")]
        )

    assert run(fake, go) == []
    login, prefs, call = fake.calls
    assert login["method"] == "common.db.login" and login["params"][0] == "epi"
    assert prefs["method"] == "model.res.user.get_preferences"
    assert call["method"] == "model.company.employee.search_read"
    assert call["params"] == [
        [["id", ">", 0]],
        0,
        1000,
        [["id", "ASC"]],
        ["party.name"],
        {"company": 1, "language": "en"},
    ]
    assert fake.headers[2]["authorization"] == fake.valid_session
    assert "gzip" in fake.headers[2]["accept-encoding"]  # Tryton labels big bodies gzip anyway
    assert fake.headers[2]["x-request-id"] == call["id"]


def test_expired_session_logs_in_again_once() -> None:
    fake = FakeTryton()

    async def go(c: TrytonClient) -> Any:
        await c.login()
        fake.valid_session = (
            f"Session {base64.b64encode(f'epi:3:{KEY}'.encode()).decode()}x"  # server restarted
        )
        with pytest.raises(TrytonAuthFailed, match="after a new login"):
            await c.search("party.party", [])
        # The new login's session is accepted again:
        fake.valid_session = f"Session {base64.b64encode(f'epi:3:{KEY}'.encode()).decode()}"
        fake.script["model.party.party.search"] = [lambda b: httpx.Response(401), lambda b: ok(b, [7, 8])]
        return await c.search("party.party", [])

    assert run(fake, go) == [7, 8]
    assert fake.logins == 3  # first login, the failed retry's login, the successful one


def test_wrong_password_is_terminal_and_never_shown() -> None:
    fake = FakeTryton()

    async def go(c: TrytonClient) -> Any:
        return await c.search("party.party", [])

    with pytest.raises(TrytonAuthFailed) as info:
        run(fake, go, password="wrong-Password-1")
    assert info.value.kind == "terminal" and "erp.password" in str(info.value)
    assert "wrong-Password-1" not in repr(info.value.__dict__) and "wrong-Password-1" not in str(info.value)


def test_user_error_from_a_call() -> None:
    fake = FakeTryton()
    msg = 'The EAN "4820000000001" is not valid.'
    fake.script["model.product.product.create"] = [
        lambda b: httpx.Response(200, json={"id": b["id"], "error": ["UserError", [msg, "", None]]})
    ]

    async def go(c: TrytonClient) -> Any:
        return await c.create("product.product", [{"code": "x", "price": Decimal("1.50")}])

    with pytest.raises(TrytonUserError) as info:
        run(fake, go)
    assert info.value.tryton_message == msg and info.value.request_id
    sent = fake.calls[-1]["params"][0][0]
    assert sent["price"] == {"__class__": "Decimal", "decimal": "1.50"}


def test_busy_write_is_retried_because_tryton_rolled_it_back() -> None:
    fake = FakeTryton()
    fake.script["model.party.party.write"] = [
        lambda b: httpx.Response(503, text="<p>database is locked</p>"),
        lambda b: ok(b, None),
    ]

    async def go(c: TrytonClient) -> Any:
        await c.write("party.party", [1], {"name": "x"})
        return c.rpc_counts["model.party.party.write"]

    assert run(fake, go) == 1
    assert [c["method"] for c in fake.calls].count("model.party.party.write") == 2


def test_sqlite_batch_ceiling_is_raised_at_once_for_splitting() -> None:
    fake = FakeTryton()
    fake.script["model.product.product.create"] = [
        lambda b: httpx.Response(503, text="<p>parser stack overflow</p>")
    ] * 5

    async def go(c: TrytonClient) -> Any:
        return await c.create("product.product", [{"code": str(i)} for i in range(95)])

    with pytest.raises(TrytonBusy) as info:
        run(fake, go)
    assert batch_too_large(info.value) and info.value.kind == "transient"
    assert [c["method"] for c in fake.calls].count("model.product.product.create") == 1


def test_timeout_after_sending_a_write_is_ambiguous() -> None:
    fake = FakeTryton()

    def hang(body: dict[str, Any]) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out")

    fake.script["model.stock.shipment.internal.create"] = [hang]

    async def go(c: TrytonClient) -> Any:
        return await c.create("stock.shipment.internal", [{"reference": "k"}])

    with pytest.raises(AmbiguousWrite) as info:
        run(fake, go)
    assert info.value.request_id


def test_reads_back_off_on_429_and_503() -> None:
    fake = FakeTryton()
    fake.script["model.party.party.search_read"] = [
        lambda b: httpx.Response(429),
        lambda b: httpx.Response(503),
        lambda b: ok(
            b,
            [
                {
                    "id": 1,
                    "write_date": {
                        "__class__": "datetime",
                        "year": 2026,
                        "month": 1,
                        "day": 2,
                        "hour": 3,
                        "minute": 4,
                        "second": 5,
                        "microsecond": 6,
                    },
                }
            ],
        ),
    ]

    async def go(c: TrytonClient) -> Any:
        return await c.search_read("party.party", [], ["write_date"])

    assert run(fake, go) == [{"id": 1, "write_date": dt.datetime(2026, 1, 2, 3, 4, 5, 6)}]


def test_forbidden_method_is_not_a_relogin() -> None:
    fake = FakeTryton()
    fake.script["model.stock.shipment.internal.pick"] = [lambda b: httpx.Response(403)]

    async def go(c: TrytonClient) -> Any:
        return await c.model("stock.shipment.internal", "pick", [1])

    with pytest.raises(TrytonForbidden):
        run(fake, go)
    assert fake.logins == 1


def test_server_time_reads_the_date_header() -> None:
    fake = FakeTryton()
    fake.script["model.ir.date.today"] = [
        lambda b: ok(
            b,
            {"__class__": "date", "year": 2026, "month": 12, "day": 7},
            date="Mon, 07 Dec 2026 01:09:35 GMT",
        )
    ]

    async def go(c: TrytonClient) -> Any:
        return await c.server_time()

    assert run(fake, go) == dt.datetime(2026, 12, 7, 1, 9, 35, tzinfo=dt.UTC)


def test_sync_facade_and_secrets_kept_out_of_repr() -> None:
    fake = FakeTryton()
    fake.script["model.party.party.search_count"] = [lambda b: ok(b, 42)]
    client = SyncTrytonClient(
        "http://tryton.test", "erp", "epi", PASSWORD, transport=httpx.MockTransport(fake)
    )
    try:
        assert client.search_count("party.party", []) == 42
        assert client.base_context == {"company": 1, "language": "en"}
        assert PASSWORD not in repr(client) and KEY not in repr(client)
    finally:
        client.close()
