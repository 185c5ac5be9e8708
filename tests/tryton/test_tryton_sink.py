"""sink: {kind: tryton} against a real trytond: exactly once through crashes, bad rows held alone.

Crashes are real: the Tryton server is SIGKILLed after it committed a create and before its
answer reached erpsync (a transport that forwards the request, then kills the server and loses
the answer), and an erpsync worker process is SIGKILLed in the middle of a batch (after
Tryton answered the create, before the workflow and the ledger finished). Afterwards the
same records are delivered again and must end in Tryton once each, in their final state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.clients.tryton.client import SyncTrytonClient
from sync.engine.inbound import Unit, write_units
from sync.errors import ErpsyncError
from sync.settings import TrytonSinkSettings
from sync.sinks.base import InboundRow
from sync.sinks.tryton import TrytonSink
from sync.state.store import StateStore

# rows name the variant by its code; a crash's open intents are recovered at once (not after 5 min)
BY_CODE = TrytonSinkSettings(ppe_product_key="code", claim_seconds=0)
AT_ONCE = TrytonSinkSettings(claim_seconds=0)

HERE = Path(__file__).resolve().parent


# --- rows -----------------------------------------------------------------------------


def withdrawal(i: int, *, product: str = "EPI-0001-G", cc: str = "CC-1001", qty: str = "2") -> InboundRow:
    fields = {
        "employee_key": f"{10_000_000_000 + i}",
        "product_key": product,
        "quantity": Decimal(qty),
        "cost_center_key": cc,
        "status": "SUCCESS",
        "created_at": "2026-11-30T10:00:00Z",
    }
    return InboundRow.make("smartepi", f"w-{i}", fields, {"id": f"w-{i}"})


def receipt_unit(i: int, products: list[dict[str, Any]], shop: str = "KYIV") -> Unit:
    rid = f"r-{i}"
    items, total = [], Decimal(0)
    for k, p in enumerate(products):
        qty = Decimal(1 + (i + k) % 3)
        price = Decimal(str(p["gross_price_used"]))
        items.append(
            InboundRow.make(
                "smartkasa",
                f"{rid}-{k}",
                {
                    "receipt_id": rid,
                    "product_key": p["code"],
                    "quantity": qty,
                    "price": price,
                    "amount": qty * price,
                },
                {},
            )
        )
        total += qty * price
    receipt = InboundRow.make(
        "smartkasa",
        rid,
        {
            "shop_key": shop,
            "state": 2,
            "type": 0,
            "total_amount": total,
            "created_at": "2026-11-30T11:00:00Z",
        },
        {"id": rid},
    )
    pay = InboundRow.make(
        "smartkasa",
        f"{rid}-p",
        {"receipt_id": rid, "amount": total, "payment_type_id": 0, "transaction_type_id": 1},
        {},
    )
    return Unit({"receipts": [receipt], "receipt_items": items, "payments": [pay]})


# --- helpers --------------------------------------------------------------------------


class KillOn(httpx.AsyncHTTPTransport):
    """Forwards every request; after the server answered ``method`` it runs ``action`` and
    loses that answer (a reset connection), as when the server dies before replying."""

    def __init__(self, method: str, action: Callable[[], None]) -> None:
        super().__init__()
        self.method = f'"{method}"'.encode()
        self.action = action
        self.fired = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not self.fired and self.method in request.content:
            await response.aread()
            self.fired = True
            self.action()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def client(handle: Any, login: str, transport: httpx.AsyncBaseTransport | None = None) -> SyncTrytonClient:
    user, password = handle.credentials(login)
    return SyncTrytonClient(handle.url, handle.database, user, password, transport=transport)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    yield StateStore(f"sqlite:///{tmp_path}/state.db")


def shipments(c: SyncTrytonClient, prefix: str) -> list[dict[str, Any]]:
    return c.search_read(
        "stock.shipment.internal",
        [("reference", "like", prefix + "%")],
        ["reference", "state", "moves.quantity"],
    )


def kasa_products(c: SyncTrytonClient, n: int = 2) -> list[dict[str, Any]]:
    return c.search_read(
        "product.product",
        [("code", "like", "UA-%"), ("default_uom.symbol", "=", "u")],
        ["code", "gross_price_used"],
        limit=n,
        order=[("id", "ASC")],
    )


def assert_once(rows: list[dict[str, Any]], keys: list[str], state: str) -> None:
    refs = sorted(r["reference"].split("|", 1)[0] for r in rows)
    assert refs == sorted(keys), "each record must land exactly once"
    assert {r["state"] for r in rows} == {state}


# --- tests ----------------------------------------------------------------------------


def test_withdrawals_batch_in_four_calls_and_replay_is_a_noop(tryton: Any, store: StateStore) -> None:
    c = client(tryton, "epi")
    sink = TrytonSink(c, tenant="t-batch", store=store, options=BY_CODE)
    rows = [withdrawal(i) for i in range(30)]
    rows.append(InboundRow.make("smartepi", "ret-1", withdrawal(99).fields, {"id": "ret-1"}))
    assert sink.write("withdrawals", rows[:30]) == 30
    calls = {k: v for k, v in c.rpc_counts.items() if k.startswith("model.stock.shipment.internal.")}
    assert calls == {
        "model.stock.shipment.internal.fields_get": 1,
        "model.stock.shipment.internal.create": 1,
        "model.stock.shipment.internal.wait": 1,
        "model.stock.shipment.internal.assign_force": 1,
        "model.stock.shipment.internal.do": 1,
    }
    assert sink.write("withdrawals", rows[:30]) == 0  # markers: nothing sent again
    assert sink.write("returns", [rows[30]]) == 1
    got = shipments(c, "erpsync:t-batch:")
    assert len(got) == 31 and {r["state"] for r in got} == {"done"}
    ret = next(r for r in got if ":returns:" in r["reference"])
    cons = c.search_read("stock.location", [("code", "=", "CONS-CC-1001")], ["id"])[0]["id"]
    moved = c.search_read("stock.shipment.internal", [("id", "=", ret["id"])], ["from_location"])
    assert moved[0]["from_location"] == cons  # a return comes back from the consumption location
    c.close()


def test_template_key_and_size_pick_the_variant(tryton: Any, store: StateStore) -> None:
    """The shipped mapping keys PPE products by template id; the size names the variant."""
    c = client(tryton, "epi")
    (tpl,) = c.search_read("product.template", [("code", "=", "EPI-0001")], ["products.code"])
    sizes = {"w-t1": ("sz-9", "G"), "w-t2": ("sz-7", "P")}
    sink = TrytonSink(c, tenant="t-size", store=store, size_name=lambda row: sizes[row.remote_id][1])
    rows = []
    for rid, (size_id, _) in sizes.items():
        fields = {**withdrawal(0).fields, "product_key": str(tpl["id"]), "size_id": size_id}
        rows.append(InboundRow.make("smartepi", rid, fields, {"id": rid}))
    other = InboundRow.make(
        "smartepi", "w-t3", {**withdrawal(0).fields, "product_key": str(tpl["id"]), "size_id": "x"}, {}
    )
    assert sink.write("withdrawals", rows) == 2
    got = c.search_read(
        "stock.shipment.internal",
        [("reference", "like", "erpsync:t-size:%")],
        ["reference", "moves.product.code"],
    )
    codes = {g["reference"].split("|")[0].rsplit(":", 1)[1]: g["moves."][0]["product."]["code"] for g in got}
    assert codes == {"w-t1": "EPI-0001-G", "w-t2": "EPI-0001-P"}
    sizes["w-t3"] = ("x", "XXL")
    with pytest.raises(Exception, match="no variant of size 'XXL'"):
        sink.write("withdrawals", [other])
    c.close()


def test_bad_rows_are_held_with_their_reason_the_others_land(tryton: Any, store: StateStore) -> None:
    c = client(tryton, "epi")
    sink = TrytonSink(c, tenant="t-bad", store=store, options=BY_CODE)
    good = [withdrawal(i) for i in range(6)]
    unknown = withdrawal(50, product="EPI-9999-X")  # no such product in Tryton
    fractional = withdrawal(51, qty="1.5")  # Tryton: the unit "u" does not take 1.5
    units = [Unit({"withdrawals": [r]}, r.remote_id) for r in [*good[:3], unknown, fractional, *good[3:]]]
    _, refused = write_units(sink, units)  # (the count misses rows written by a call that also refused one)
    reasons = {u.ref: reason for u, reason in refused}
    assert set(reasons) == {"w-50", "w-51"}
    assert "EPI-9999-X" in reasons["w-50"] and "not in Tryton" in reasons["w-50"]
    # Tryton's own message (a UserError), not a generic failure
    assert "Tryton refused the record" in reasons["w-51"]
    assert "rounding" in reasons["w-51"].lower() or "quantity" in reasons["w-51"].lower()
    got = shipments(c, "erpsync:t-bad:")
    assert_once(got, [f"erpsync:t-bad:withdrawals:w-{i}" for i in range(6)], "done")
    c.close()


@pytest.mark.parametrize("with_module", [False, True], ids=["ledger", "module"])
def test_server_killed_between_create_and_answer(
    with_module: bool, store: StateStore, request: pytest.FixtureRequest
) -> None:
    handle = request.getfixturevalue("tryton_module_fresh" if with_module else "tryton_fresh")
    rows = [withdrawal(i) for i in range(12)]
    c1 = client(handle, "epi", KillOn("model.stock.shipment.internal.create", handle.kill))
    sink = TrytonSink(c1, tenant="t-kill", store=store, options=BY_CODE)
    with pytest.raises(ErpsyncError):
        sink.write("withdrawals", rows)
    c1.close()
    handle.restart()
    c2 = client(handle, "epi")
    landed = shipments(c2, "erpsync:t-kill:")
    assert len(landed) == 12 and {r["state"] for r in landed} == {"draft"}  # committed, answer lost
    sink = TrytonSink(c2, tenant="t-kill", store=store, options=BY_CODE)
    assert sink.write("withdrawals", rows) == 12
    assert c2.rpc_counts["model.stock.shipment.internal.create"] == 0  # adopted, not resent
    assert_once(
        shipments(c2, "erpsync:t-kill:"), [f"erpsync:t-kill:withdrawals:w-{i}" for i in range(12)], "done"
    )
    if with_module:
        ext = c2.search_read("stock.shipment.internal", [("external_id", "like", "erpsync:t-kill:%")], ["id"])
        assert len(ext) == 12
    assert sink.write("withdrawals", rows) == 0
    c2.close()


@pytest.mark.parametrize("with_module", [False, True], ids=["fingerprint", "module"])
def test_receipts_server_killed_between_create_and_answer(
    with_module: bool, store: StateStore, request: pytest.FixtureRequest
) -> None:
    handle = request.getfixturevalue("tryton_module_fresh" if with_module else "tryton_fresh")
    c0 = client(handle, "kasa")
    products = kasa_products(c0, 3)
    c0.close()
    units = [receipt_unit(i, products[: 1 + i % 3]) for i in range(8)]
    # two identical receipts (same till, day, lines, payment): the fingerprint must not merge them
    twin = receipt_unit(100, products[:1])
    twin2 = receipt_unit(100, products[:1])
    twin2.rows["receipts"] = [
        InboundRow.make("smartkasa", "r-101", twin2.rows["receipts"][0].fields, {"id": "r-101"})
    ]
    twin2.rows["receipt_items"] = [
        InboundRow.make("smartkasa", "r-101-0", {**r.fields, "receipt_id": "r-101"}, {})
        for r in twin2.rows["receipt_items"]
    ]
    twin2.rows["payments"] = [
        InboundRow.make("smartkasa", "r-101-p", {**r.fields, "receipt_id": "r-101"}, {})
        for r in twin2.rows["payments"]
    ]
    units += [twin, twin2]
    c1 = client(handle, "kasa", KillOn("model.sale.point.sale.create", handle.kill))
    sink = TrytonSink(c1, tenant="t-pos", store=store)
    with pytest.raises(ErpsyncError):
        write_units(sink, units)
    c1.close()
    handle.restart()
    c2 = client(handle, "kasa")
    assert c2.search_count("sale.point.sale", []) == 10  # landed before the crash, answer lost
    sink = TrytonSink(c2, tenant="t-pos", store=store, options=AT_ONCE)
    written, refused = write_units(sink, units)
    assert refused == [] and written > 0
    assert c2.rpc_counts["model.sale.point.sale.create"] == 0
    sales = c2.search_read("sale.point.sale", [], ["state", "total"])
    assert len(sales) == 10 and {s["state"] for s in sales} == {"posted"}
    assert write_units(sink, units) == (0, [])
    c2.close()


WORKER = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import httpx
from test_tryton_sink import BY_CODE, KillOn, withdrawal, receipt_unit, client_from
from sync.engine.inbound import write_units
from sync.sinks.tryton import TrytonSink
from sync.state.store import StateStore
url, db, login, password, state, kind = sys.argv[2:8]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
method = "model.stock.shipment.internal.wait" if kind == "withdrawals" else "model.sale.point.sale.process"
c = client_from(url, db, login, password, KillOn(method, die))
sink = TrytonSink(c, tenant="t-worker", store=StateStore(state), options=BY_CODE)
if kind == "withdrawals":
    sink.write("withdrawals", [withdrawal(i) for i in range(45)])
else:
    import json
    products = json.loads(sys.argv[8])
    write_units(sink, [receipt_unit(i, products[: 1 + i % 2]) for i in range(6)])
print("not killed")
"""


def client_from(url: str, db: str, login: str, password: str, transport: Any = None) -> SyncTrytonClient:
    return SyncTrytonClient(url, db, login, password, transport=transport)


def _run_worker(
    handle: Any, login: str, state: str, kind: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    user, password = handle.credentials(login)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(HERE),
            handle.url,
            handle.database,
            user,
            password,
            state,
            kind,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
        check=False,
    )


def test_worker_killed_mid_batch_withdrawals(tryton_fresh: Any, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path}/state.db"
    proc = _run_worker(tryton_fresh, "epi", state, "withdrawals")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    c = client(tryton_fresh, "epi")
    mid = shipments(c, "erpsync:t-worker:")
    assert len(mid) == 45 and {r["state"] for r in mid} == {"waiting"}  # killed between wait and assign
    sink = TrytonSink(c, tenant="t-worker", store=StateStore(state), options=BY_CODE)
    assert sink.write("withdrawals", [withdrawal(i) for i in range(45)]) == 45
    assert c.rpc_counts["model.stock.shipment.internal.create"] == 0
    keys = [f"erpsync:t-worker:withdrawals:w-{i}" for i in range(45)]
    assert_once(shipments(c, "erpsync:t-worker:"), keys, "done")
    c.close()


def test_worker_killed_mid_batch_receipts(tryton_fresh: Any, tmp_path: Path) -> None:
    import json

    state = f"sqlite:///{tmp_path}/state.db"
    c = client(tryton_fresh, "kasa")
    products = [
        {"id": p["id"], "code": p["code"], "gross_price_used": str(p["gross_price_used"])}
        for p in kasa_products(c, 2)
    ]
    proc = _run_worker(tryton_fresh, "kasa", state, "receipts", json.dumps(products))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert {s["state"] for s in c.search_read("sale.point.sale", [], ["state"])} == {
        "done"
    }  # processed, not posted
    sink = TrytonSink(c, tenant="t-worker", store=StateStore(state), options=AT_ONCE)
    _, refused = write_units(sink, [receipt_unit(i, products[: 1 + i % 2]) for i in range(6)])
    assert refused == []
    assert c.rpc_counts["model.sale.point.sale.create"] == 0
    sales = c.search_read("sale.point.sale", [], ["state"])
    assert len(sales) == 6 and {s["state"] for s in sales} == {"posted"}
    c.close()


def test_a_record_another_worker_is_writing_is_left_to_it(tryton: Any, store: StateStore) -> None:
    """A fresh open intent is a live claim: the record is neither looked up nor resent now."""
    from sync.errors import SinkError

    busy, free = withdrawal(700), withdrawal(701)
    store.open_intents_many("t-claim", "tryton", "sink.withdrawals", [("smartepi:w-700", {}, busy.chash)])
    c = client(tryton, "epi")
    sink = TrytonSink(c, tenant="t-claim", store=store, options=TrytonSinkSettings(ppe_product_key="code"))
    with pytest.raises(SinkError, match="another worker"):
        sink.write("withdrawals", [busy, free])
    assert [r["reference"].split("|")[0] for r in shipments(c, "erpsync:t-claim:")] == [
        "erpsync:t-claim:withdrawals:w-701"
    ]
    assert sink.write("withdrawals", [free]) == 0  # landed and marked despite the error
    c.close()
