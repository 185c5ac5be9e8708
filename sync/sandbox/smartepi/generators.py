"""Seeded device activity: withdrawals, returns, exchanges and training records.

Transactions are read-only in the API (they originate on devices), so tests and demos
create them here. The same seed over the same employees and products produces the
same transactions (ids aside), so inbound-sync runs are reproducible. Each
transaction copies the employee's cost center and sector, as a device would.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sync.sandbox.smartepi.problems import ApiError
from sync.sandbox.smartepi.store import Record, Store, Tenant

KINDS = ("withdrawals", "returns", "exchanges", "training-records")
_STATUS_FIELD = {"withdrawals": "withdrawalStatus", "returns": "returnStatus", "exchanges": "exchangeStatus"}
_TRAININGS = ("NR-06 Uso de EPI", "NR-35 Trabalho em altura", "NR-10 Eletricidade", "NR-12 Máquinas")


def _live(store: Store, tenant: Tenant, resource: str) -> list[Record]:
    table = tenant.tables[resource]
    return [table.by_seq[seq] for _, seq in table.by_created]


def generate(
    store: Store,
    tenant: Tenant,
    kind: str,
    count: int,
    *,
    seed: int = 0,
    start: dt.datetime | None = None,
    spacing_s: float = 1.0,
    p_failed: float = 0.1,
) -> list[Record]:
    """Create ``count`` records of ``kind``; ``start`` backdates them ``spacing_s`` apart."""
    if kind not in KINDS:
        raise ApiError(400, "bad_request", f"kind: must be one of {', '.join(KINDS)}")
    rng = random.Random(f"{seed}:{kind}")
    with store.lock:
        employees = _live(store, tenant, "employees")
        products = _live(store, tenant, "products")
        if not employees or (kind != "training-records" and not products):
            raise ApiError(409, "conflict", "generate needs live employees (and products for transactions)")
        created: list[Record] = []
        for i in range(count):
            employee = rng.choice(employees)
            body: dict[str, Any] = {"employeeId": employee.id}
            if kind == "training-records":
                done = (
                    dt.datetime.now(dt.UTC) if start is None else start + dt.timedelta(seconds=i * spacing_s)
                )
                body["title"] = rng.choice(_TRAININGS)
                body["completedAt"] = done.isoformat().replace("+00:00", "Z")
                body["expiresAt"] = (done + dt.timedelta(days=365)).isoformat().replace("+00:00", "Z")
            else:
                product = rng.choice(products)
                sizes = product.data.get("sizes") or []
                body.update(
                    productId=product.id,
                    sizeId=rng.choice(sizes)["id"] if sizes else None,
                    quantity=rng.randint(1, 3),
                    costCenterId=employee.data.get("costCenterId"),
                    sectorId=employee.data.get("sectorId"),
                    deviceId=f"dev_{rng.randint(1, 5)}",
                )
                body[_STATUS_FIELD[kind]] = "FAILED" if rng.random() < p_failed else "SUCCESS"
                if kind == "exchanges":
                    body["returnedProductId"] = rng.choice(products).id
            created_us = None
            if start is not None:
                moment = start + dt.timedelta(seconds=i * spacing_s)
                created_us = int(moment.timestamp() * 1_000_000)
            created.append(store.create(tenant, kind, body, created_us=created_us))
        return created
