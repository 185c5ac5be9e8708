"""The one table of query parameters the SmartEPI contract documents, per endpoint.

Why: a client that sends a parameter the contract does not have (``?email=`` on
``/employees``) works against a lenient server and breaks against a strict one, or gets
unfiltered records back. The sandbox therefore answers 400 (problem+json, type
``urn:smartepi:error:bad_request``, as for any malformed request, contract §2.5) to any
parameter outside this table, unless ``list_filters`` says otherwise (see ``FilterMode``).

Sources (smartepi.md): paging ``limit``/``cursor`` on every list (§2.4); ``name`` on any
entity and ``code`` on cost centers (§2.4 B); on employees the relationship filters
``sectorId``/``costCenterId``/``jobRoleId``/``groupId`` and an ``identification`` search
(§0); on transactions ``employeeId``/``productId``/``costCenterId``/``sectorId`` and the
``createdSince``/``createdUntil`` window (§0, §3.8); ``_version`` on deletes (§2.6).
Assumptions: training records list like the other transactions, with ``employeeId`` as
their only relationship (§5.5); ``email``, ``costCenter2Id`` and the other "probably"
filters of §3.1 are *not* documented, so they are rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from sync.sandbox.smartepi.problems import bad_request

Operation = Literal["list", "get", "create", "update", "delete"]
FilterMode = Literal["strict", "lenient", "ignore"]
"""``strict`` (default): undocumented parameters are 400. ``lenient``: they are ignored,
as many real APIs do. ``ignore``: every list filter is ignored too (only ``limit`` and
``cursor`` count), the hostile case a client must survive by confirming hits locally."""

PAGING = frozenset({"limit", "cursor"})
WINDOW = frozenset({"createdSince", "createdUntil"})
_TX = frozenset({"employeeId", "productId", "costCenterId", "sectorId"}) | WINDOW


def _entity(*filters: str) -> dict[Operation, frozenset[str]]:
    return {
        "list": PAGING | {"name", *filters},
        "get": frozenset(),
        "create": frozenset(),
        "update": frozenset(),
        "delete": frozenset({"_version"}),
    }


def _transaction(filters: frozenset[str]) -> dict[Operation, frozenset[str]]:
    return {"list": PAGING | filters}


DOCUMENTED: dict[str, dict[Operation, frozenset[str]]] = {
    "sectors": _entity(),
    "cost-centers": _entity("code"),
    "job-roles": _entity(),
    "groups": _entity(),
    "access-groups": {"list": PAGING | {"name"}, "get": frozenset()},
    "employees": _entity("identification", "sectorId", "costCenterId", "jobRoleId", "groupId"),
    "products": _entity(),
    "withdrawals": _transaction(_TX),
    "returns": _transaction(_TX),
    "exchanges": _transaction(_TX),
    "training-records": _transaction(frozenset({"employeeId"}) | WINDOW),
}


def documented(resource: str, operation: Operation) -> frozenset[str]:
    """Parameters the contract documents for ``operation`` on ``resource`` (empty if none)."""
    return DOCUMENTED.get(resource, {}).get(operation, frozenset())


def accepted_params(
    resource: str, operation: Operation, params: Iterable[tuple[str, str]], mode: FilterMode
) -> list[tuple[str, str]]:
    """The parameters the handler should act on; 400 for an undocumented one in strict mode."""
    allowed = documented(resource, operation)
    out: list[tuple[str, str]] = []
    for key, value in params:
        if key not in allowed:
            if mode == "strict":
                raise bad_request(
                    f"{key}: unknown query parameter for {operation} /{resource}; "
                    f"documented: {', '.join(sorted(allowed)) or 'none'}"
                )
            continue
        if mode == "ignore" and operation == "list" and key not in PAGING:
            continue
        out.append((key, value))
    return out
