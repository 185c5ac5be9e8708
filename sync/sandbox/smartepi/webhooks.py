"""Signed SmartEPI webhook deliveries, at least once, with seeded misbehaviour.

The signature recipe is an assumption (contract §4, §5.5) and lives only in
``sign``/``signature_header``/``verify_signature``: HMAC-SHA256 over
``"<t>.<raw body>"``, lowercase hex, keyed with the whole secret including ``whsec_``
(``WebhookOptions.key_mode = "strip_prefix"`` signs with the part after it instead,
to test a receiver against the other plausible reading).

Delivery runs in one background thread: each event is POSTed with
``X-SmartEPI-Signature: t=<unix>,v1=<hex>``; any non-2xx, error or timeout is retried
with exponential backoff up to ``max_attempts``. Misbehaviour a receiver must survive
is seeded per event (and per attempt), so a run is reproducible:

- ``p_duplicate``: the event is delivered twice (two deliveries, same event id);
- ``reorder``: each batch of events is shuffled before delivery;
- ``p_bad_signature``: this attempt is signed with a wrong key ("forged");
- ``p_stale_timestamp``: this attempt is signed with a timestamp ``stale_by_s`` old.

A forged or stale attempt that the receiver rejects is retried like any failure, so a
correct receiver still gets every event. Test events (``webhook.test``) never count
toward the per-endpoint failure tracking. Secrets never enter the delivery log.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from sync.sandbox.faults import decision

SIGNATURE_HEADER = "X-SmartEPI-Signature"
SECRET_PREFIX = "whsec_"


def sign(secret: str, timestamp: int, body: bytes, encoding: str = "hex") -> str:
    """The HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with ``secret`` as given, in lowercase
    hex (the assumption) or standard base64 (``WebhookOptions.encoding``; undocumented, §4)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest() if encoding == "hex" else base64.b64encode(mac.digest()).decode()


def signature_header(secret: str, timestamp: int, body: bytes, encoding: str = "hex") -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body, encoding)}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """Receiver-side check: some ``v1`` matches and ``t`` is within the tolerance."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


class WebhookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_deliver: bool = True  # False: hold events until ``deliver_now``
    max_attempts: int = Field(5, ge=1)
    backoff_s: float = Field(0.5, ge=0)
    backoff_factor: float = Field(2.0, ge=1)
    backoff_max_s: float = Field(30.0, ge=0)
    timeout_s: float = Field(10.0, gt=0)
    seed: int = 0
    p_duplicate: float = Field(0.0, ge=0, le=1)
    reorder: bool = False
    p_bad_signature: float = Field(0.0, ge=0, le=1)
    p_stale_timestamp: float = Field(0.0, ge=0, le=1)
    stale_by_s: int = Field(3600, ge=0)
    key_mode: Literal["full", "strip_prefix"] = "full"
    encoding: Literal["hex", "base64"] = "hex"  # of the v1 digest
    # False: every retry resends the first attempt's signature timestamp (the retry schedule is
    # undocumented, §4), so a retry more than 300 s later is refused as stale by the receiver
    resign_on_retry: bool = True


def event_for(event_type: str, entity_id: str, data: dict[str, Any], created_at: int) -> dict[str, Any]:
    """The documented envelope; the id is deterministic, so it is stable across retries."""
    return {
        "id": f"evt_{event_type.replace('.', '_')}_{entity_id}",
        "type": event_type,
        "createdAt": created_at,
        "data": data,
    }


@dataclass(slots=True)
class _Delivery:
    delivery_id: str
    event_id: str
    event_type: str
    tenant_id: str
    url: str
    secret: str = field(repr=False)
    body: bytes = field(repr=False)
    copy: int = 0
    test: bool = False
    attempt: int = 0
    first_timestamp: int | None = None  # the ``t`` of the first attempt (``resign_on_retry`` off)


class WebhookEmitter:
    """Queues events per endpoint and delivers them from one daemon thread."""

    def __init__(self, options: WebhookOptions | None = None) -> None:
        self.options = options or WebhookOptions()
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Delivery]] = []
        self._held: list[_Delivery] = []
        self._order = itertools.count()
        self._batches = itertools.count()
        self._in_flight = 0
        self._log: list[dict[str, Any]] = []
        self._failures: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- producer side --------------------------------------------------------------

    def enqueue(
        self, tenant_id: str, url: str, secret: str, events: list[dict[str, Any]], *, test: bool = False
    ) -> list[str]:
        """Queue events for one endpoint; returns their delivery ids."""
        opts = self.options
        deliveries: list[_Delivery] = []
        for event in events:
            body = json.dumps(event, separators=(",", ":")).encode()
            copies = (
                2
                if opts.p_duplicate and decision(opts.seed, "duplicate", event["id"]) < opts.p_duplicate
                else 1
            )
            for copy in range(copies):
                deliveries.append(
                    _Delivery(
                        delivery_id=f"dlv_{next(self._order)}",
                        event_id=event["id"],
                        event_type=event["type"],
                        tenant_id=tenant_id,
                        url=url,
                        secret=secret,
                        body=body,
                        copy=copy,
                        test=test,
                    )
                )
        if opts.reorder:
            random.Random(f"{opts.seed}:{next(self._batches)}").shuffle(deliveries)
        with self._cond:
            if opts.auto_deliver:
                now = time.monotonic()
                for d in deliveries:
                    heapq.heappush(self._heap, (now, next(self._order), d))
                self._ensure_thread()
                self._cond.notify_all()
            else:
                self._held.extend(deliveries)
        return [d.delivery_id for d in deliveries]

    def deliver_now(self) -> int:
        """Release held deliveries and retry-waiting ones immediately; returns how many."""
        with self._cond:
            now = time.monotonic()
            released = [d for _, _, d in self._heap] + self._held
            self._heap = [(now, next(self._order), d) for d in released]
            heapq.heapify(self._heap)
            self._held.clear()
            if released:
                self._ensure_thread()
            self._cond.notify_all()
            return len(released)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or in flight (held events excluded)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "queued": len(self._heap),
                "held": len(self._held),
                "in_flight": self._in_flight,
                "failures": dict(self._failures),
                "log": list(self._log),
            }

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()
            self._held.clear()
            self._log.clear()
            self._failures.clear()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- worker side ----------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="smartepi-webhooks", daemon=True)
            self._thread.start()

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        self._in_flight += 1
                        return heapq.heappop(self._heap)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        with httpx.Client() as client:
            while (delivery := self._next()) is not None:
                try:
                    self._attempt(client, delivery)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _attempt(self, client: httpx.Client, d: _Delivery) -> None:
        opts = self.options
        d.attempt += 1
        salt = f"{d.event_id}:{d.copy}:{d.attempt}"
        forged = (
            opts.p_bad_signature > 0 and decision(opts.seed, "bad_signature", salt) < opts.p_bad_signature
        )
        stale = opts.p_stale_timestamp > 0 and decision(opts.seed, "stale", salt) < opts.p_stale_timestamp
        timestamp = int(time.time()) - (opts.stale_by_s if stale else 0)
        if d.first_timestamp is None:
            d.first_timestamp = timestamp
        elif not opts.resign_on_retry:
            timestamp = d.first_timestamp
        key = d.secret
        if opts.key_mode == "strip_prefix" and key.startswith(SECRET_PREFIX):
            key = key[len(SECRET_PREFIX) :]
        if forged:
            key = "whsec_forged_" + hashlib.sha256(key.encode()).hexdigest()[:16]
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(key, timestamp, d.body, opts.encoding),
            "User-Agent": "SmartEPI-Webhooks/1.0",
        }
        status: int | str
        try:
            response = client.post(d.url, content=d.body, headers=headers, timeout=opts.timeout_s)
            status = response.status_code
        except httpx.TimeoutException:
            status = "timeout"
        except httpx.HTTPError:
            status = "error"
        ok = isinstance(status, int) and 200 <= status < 300
        retry_in: float | None = None
        if not ok and d.attempt < opts.max_attempts:
            retry_in = min(opts.backoff_max_s, opts.backoff_s * opts.backoff_factor ** (d.attempt - 1))
        with self._cond:
            self._log.append(
                {
                    "delivery_id": d.delivery_id,
                    "event_id": d.event_id,
                    "type": d.event_type,
                    "tenant_id": d.tenant_id,
                    "attempt": d.attempt,
                    "status": status,
                    "ok": ok,
                    "forged": forged,
                    "stale": stale,
                    "duplicate": d.copy > 0,
                    "test": d.test,
                    "gave_up": not ok and retry_in is None,
                    "at": time.time(),
                }
            )
            if not d.test:
                self._failures[d.url] = 0 if ok else self._failures.get(d.url, 0) + 1
            if retry_in is not None:
                heapq.heappush(self._heap, (time.monotonic() + retry_in, next(self._order), d))
