"""``POST /webhooks/smartepi/{tenant}``: the SmartEPI webhook receiver.

Order of checks, cheapest and least revealing first, and nothing touches state until the
signature is good:

1. body over the cap → 413 (``Content-Length`` first, then counted while streaming);
2. missing/malformed signature header → 400; wrong signature or timestamp outside the
   (non-negotiable, ≤ 300 s) tolerance → 401; verified over the raw bytes, in constant time.
   An unknown tenant, or one without a SmartEPI section or webhook secret, goes through the
   same steps against a random secret, so it gets exactly the answer of a wrong signature:
   a caller cannot probe which tenants exist;
3. body not a JSON object with string ``id`` and ``type`` (or nested deeper than
   ``MAX_DEPTH``) → 400;
4. the event goes into the inbox (unique event id) in its own transaction; only after the
   commit is 200 sent. A duplicate is answered 200 and not enqueued again.

``on_stored(tenant, [inbox row id])`` enqueues the apply task. If it fails (Redis down) the
answer is still 200: the event is durable in the inbox and the relay re-enqueues it.
"""

from __future__ import annotations

import logging
import secrets as _secrets
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from sync.core.signature import MAX_TOLERANCE, SignatureMalformed, WebhookRejected, verify
from sync.engine.inbound import EPI, inbox_insert
from sync.observability import metrics
from sync.redact import scrub
from sync.settings import Settings
from sync.state.store import StateStore
from sync.web.limits import MAX_DEPTH, TooDeep, loads_capped

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SmartEPI-Signature"
MAX_BODY_BYTES = 1024 * 1024
_UNKNOWN_SECRET = "whsec_" + _secrets.token_hex(32)  # per process; never matches a real sender


class _TooLarge(Exception):
    pass


def _answer(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, **extra}, status_code=status)


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def make_webhook_router(
    get_settings: Callable[[], Settings],
    get_store: Callable[[], StateStore],
    on_stored: Callable[[str, list[int]], None],
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    clock: Callable[[], float] = time.time,
    on_verified: Callable[[str, bool], None] | None = None,
) -> APIRouter:
    """The receiver's router; the app mounts it and wires ``on_stored`` to the Celery task."""
    router = APIRouter(tags=["webhooks"])

    @router.post("/webhooks/smartepi/{tenant}", include_in_schema=True)
    async def receive(tenant: str, request: Request) -> JSONResponse:
        answer = await _receive(tenant, request)
        verified = getattr(request.state, "erpsync_verified", False)
        body = bytes(answer.body)
        metrics.webhook_answered(tenant, get_settings().tenants, EPI, answer.status_code, verified, body)
        return answer

    async def _receive(tenant: str, request: Request) -> JSONResponse:
        tenant_settings = get_settings().tenants.get(tenant)
        epi = tenant_settings.smartepi if tenant_settings is not None else None
        secrets = [s.get_secret_value() for s in epi.webhook_secrets if s.get_secret_value()] if epi else []
        known = epi is not None and bool(secrets)
        if not known:  # same steps and answers as a wrong signature (see the module doc)
            secrets = [_UNKNOWN_SECRET]
        try:
            body = await _read_capped(request, max_body_bytes)
        except _TooLarge:
            return _answer(413, f"body larger than {max_body_bytes} bytes")
        try:
            header = request.headers.get(SIGNATURE_HEADER)
            if not header:
                raise SignatureMalformed(f"missing {SIGNATURE_HEADER} header")
            verify(
                header,
                body,
                secrets,
                now=int(clock()),
                tolerance=epi.signature_tolerance_seconds if known and epi else MAX_TOLERANCE,
                key_includes_prefix=epi.signature_key_includes_prefix if known and epi else True,
            )
            request.state.erpsync_verified = known
        except WebhookRejected as exc:
            if known:
                log.warning("smartepi webhook for tenant %s rejected: %s", tenant, exc.message)
            else:
                log.warning("smartepi webhook for an unknown or unconfigured tenant rejected")
            answer = _answer(exc.status, exc.message)
            if known and on_verified is not None:  # failures in a row (sync.alerts), counted after
                answer.background = BackgroundTask(on_verified, tenant, False)  # the answer: no timing tell
            return answer
        if not known:  # unreachable (a random secret never verifies); never store for it
            return _answer(401, "signature does not match")
        try:
            event = loads_capped(body, parse_constant=_reject_constant)
        except TooDeep:
            return _answer(400, f"body is nested deeper than {MAX_DEPTH} levels")
        except (ValueError, UnicodeDecodeError):
            return _answer(400, "body is not valid JSON")
        if not isinstance(event, dict):
            return _answer(400, "body must be a JSON object")
        event_id, event_type = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
            return _answer(400, "event id must be a non-empty string of at most 255 characters")
        if not isinstance(event_type, str) or not event_type or len(event_type) > 64:
            return _answer(400, "event type must be a non-empty string of at most 64 characters")
        stored = await run_in_threadpool(_store_and_enqueue, get_store(), tenant, event_id, event_type, event)
        return _answer(200, "stored" if stored else "duplicate", event_id=event_id)

    def _store_and_enqueue(store: StateStore, tenant: str, event_id: str, type_: str, event: Any) -> bool:
        """One worker-thread hop: commit to the inbox, then enqueue (a failed enqueue is the relay's job)."""
        if on_verified is not None:
            on_verified(tenant, True)
        row_id = inbox_insert(store, tenant, EPI, event_id, type_, event)
        if row_id is None:
            return False
        try:
            on_stored(tenant, [row_id])
        except Exception as exc:  # the inbox holds it; the relay re-enqueues
            log.warning("enqueue of inbox row %s failed (the relay will retry): %s", row_id, scrub(str(exc)))
        return True

    return router
