"""``POST /erp/events``: the ERP (or a trigger in its database) announces changed rows.

Body: ``{"tenant": "acme", "entity": "employees", "keys": ["E1", "E2"], "op": "upsert"}``
with ``Authorization: Bearer <tenants.acme.event_token>``. Answers:

- 202 ``{"task_id", "task_ids", "accepted", "coalesced"}``: the keys are synced by those
  tasks (``coalesced`` keys were already covered by a queued or running sync: the throttle);
- 400 malformed body (our own shape errors, not FastAPI's 422: ERP-side integrations
  expect a plain client error; also JSON nested deeper than ``MAX_DEPTH``), or an
  ``entity`` no mapping reads (``known_entities`` lists those it may name: an event for an
  unknown entity would be accepted and synced nothing), 401 bad or
  missing token (also for an unknown tenant, so tenant ids cannot be probed), 413 body
  over ``MAX_BODY`` bytes, 503 queue unreachable.

The token is checked before the body is parsed: an unauthenticated caller costs one
capped read and never reaches the JSON parser. The token names the tenant (it is
compared, in constant time, with every tenant's token); the body's ``tenant`` must then
be that tenant. ``op`` is informational:
the sync reads the row from the ERP, so a delete and an update are handled the same way.
``entity`` is an ERP entity (a table such as ``funcionarios``), not a platform entity; for
a child source (``kasa_stock``) the keys are the parents' keys (its ``parent_key`` column).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from sync.engine.entities import refuse_event
from sync.engine.throttle import Admission
from sync.settings import Settings
from sync.web.limits import MAX_DEPTH, TooDeep, loads_capped

log = logging.getLogger("erpsync.web.events")

MAX_BODY = 256 * 1024
MAX_KEYS = 1000
_DUMMY = b"erpsync-no-token-configured-" + b"x" * 32

Submit = Callable[[str, str, Sequence[str]], Admission]
Key = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ChangeEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tenant: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    entity: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")]
    keys: list[Key] = Field(min_length=1, max_length=MAX_KEYS)
    op: Literal["upsert", "create", "update", "delete"] = "upsert"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def tenant_for_token(settings: Settings, presented: str | None) -> str | None:
    """The tenant whose event token is ``presented`` (constant-time compare with every one)."""
    found = None
    given = (presented or "").encode()
    for tenant, conf in settings.tenants.items():
        expected = conf.event_token.get_secret_value().encode() if conf.event_token else _DUMMY
        if hmac.compare_digest(given, expected) and conf.event_token is not None and presented:
            found = tenant  # no early exit: the time taken does not tell which tenant matched
    return found


def token_matches(settings: Settings, tenant: str, presented: str | None) -> bool:
    """Constant-time check of a tenant's event token (unknown tenant or no token: False)."""
    conf = settings.tenants.get(tenant)
    expected = conf.event_token.get_secret_value().encode() if conf and conf.event_token else None
    given = (presented or "").encode()
    ok = hmac.compare_digest(given, expected if expected is not None else _DUMMY)
    return ok and expected is not None and presented is not None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (stops reading there)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def make_events_router(get_settings: Callable[[], Settings], submit: Submit) -> APIRouter:
    router = APIRouter()

    @router.post("/erp/events", status_code=202, response_model=None)
    async def erp_events(request: Request) -> JSONResponse:
        settings = get_settings()
        token_tenant = tenant_for_token(settings, _bearer(request))
        if token_tenant is None:
            return _error(401, "missing or invalid event token")
        body = await _read_limited(request, MAX_BODY)
        if body is None:
            return _error(413, f"body larger than {MAX_BODY} bytes; send at most {MAX_KEYS} keys per event")
        try:
            data = loads_capped(body)
        except TooDeep:
            return _error(400, f"body is nested deeper than {MAX_DEPTH} levels")
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body is not valid JSON")
        tenant = data.get("tenant") if isinstance(data, dict) else None
        if not isinstance(tenant, str):
            return _error(400, "invalid change event", problems=["tenant: must be a string"])
        if tenant != token_tenant or not token_matches(settings, tenant, _bearer(request)):
            return _error(401, "missing or invalid event token")
        try:
            event = ChangeEvent.model_validate(data)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            ]
            return _error(400, "invalid change event", problems=problems)
        refused = await run_in_threadpool(refuse_event, settings.tenants[event.tenant], event.entity)
        if refused is not None:
            why, known = refused
            return _error(400, "invalid change event", problems=[f"entity: {why}"], known_entities=known)
        keys = list(dict.fromkeys(event.keys))
        try:
            admission = await run_in_threadpool(submit, event.tenant, event.entity, keys)
        except Exception:
            log.exception("could not enqueue a change event for %s/%s", event.tenant, event.entity)
            return _error(503, "the task queue is unavailable; retry later")
        ids = list(dict.fromkeys([*admission.send, *admission.task_ids.values()]))
        fresh = sum(len(group) for group, _ in admission.send.values())
        return JSONResponse(
            {
                "task_id": admission.primary_task_id,
                "task_ids": ids,
                "accepted": len(keys),
                "coalesced": len(keys) - fresh,
            },
            status_code=202,
        )

    return router
