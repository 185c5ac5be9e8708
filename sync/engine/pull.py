"""Pulls: fill what webhooks missed and bring back SmartKasa sales, with safe cursors.

One cursor per (tenant, platform, stream), an ISO-8601 UTC instant meaning "everything the
stream holds before this is committed to the ERP sink". The rules (design §3):

- a run reads up to its own start time (``now``), never beyond, and a cursor is set only
  after the sink committed what it covers; so a run killed between fetch and commit leaves
  the cursor where it was and the rerun fetches the same records again;
- the next run starts ``overlap`` before the cursor, for records that become visible late;
- every record is upserted by its remote id (sink + ``InboundRecord`` markers), so the
  overlap, a rerun and a webhook delivering the same record all land it once.

Streams:

- SmartEPI ``withdrawals``, ``returns``, ``exchanges``, ``training_records``: time windows
  ``createdSince``/``createdUntil`` (never combined with a relationship filter; the client
  refuses that), pages of 100. A record whose references are not bound yet is parked in the
  inbox (under its webhook's event id) and quarantined, so the cursor can move on without
  losing it; ``process_inbox`` retries it when the binding appears.
- SmartKasa ``shifts``: there is no date filter on shifts or receipts (contract §6.1–6.2),
  so the shift list is read whole and each closed shift not imported yet (or closed within
  the overlap) has its receipts read with ``shift_id``; the receipts (with items and
  payments, which only the list endpoint carries) are committed first, the shift row last,
  so a shift's marker means "all its receipts are in". The cursor is the latest close time
  imported.
- SmartKasa ``z_reports`` by ``date_start``/``date_end``; ``stock``: every card of every
  shop, a snapshot written only where the count changed (markers compare content hashes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.engine.inbound import (
    EPI,
    KASA,
    STREAM_EVENTS,
    InboundSummary,
    event_id_for,
    inbox_insert,
    map_card,
    map_receipt,
    map_shift,
    map_smartepi,
    map_z_report,
    process_inbox,
    shop_keys_of,
)
from sync.errors import ConfigError, utcnow
from sync.sinks.base import InboundRow, Sink
from sync.state.store import StateStore

log = logging.getLogger(__name__)

EPI_STREAMS = ("withdrawals", "returns", "exchanges", "training_records")
KASA_STREAMS = ("shifts", "z_reports", "stock")
FLUSH_ROWS = 1000
PAGE_LIMIT = 100


@dataclass(slots=True)
class StreamResult:
    platform: str
    stream: str
    fetched: int = 0
    written: int = 0
    parked: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None


@dataclass(slots=True)
class PullSummary:
    started_at: dt.datetime
    streams: list[StreamResult] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    inbox: InboundSummary | None = None

    @property
    def fetched(self) -> int:
        return sum(s.fetched for s in self.streams)

    @property
    def written(self) -> int:
        return sum(s.written for s in self.streams)


def iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_instant(text: str | None) -> dt.datetime | None:
    """An ISO-8601 instant (any offset, ``Z`` allowed) as aware UTC; None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def as_instant(value: dt.datetime | dt.date | None) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class _Buffer:
    """Rows waiting for one sink transaction (several streams may share it)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.rows: dict[str, list[InboundRow]] = {}

    def add(self, stream: str, rows: Sequence[InboundRow]) -> None:
        if rows:
            self.rows.setdefault(stream, []).extend(rows)

    def size(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def flush(self) -> int:
        if not self.rows:
            return 0
        batches, self.rows = self.rows, {}
        return self.sink.write_many(batches)


class Puller:
    """One pull run of one tenant (``pull`` / ``pull_async`` build and run it)."""

    def __init__(
        self,
        store: StateStore,
        tenant_id: str,
        tenant_settings: Any,
        sink: Sink,
        *,
        now: dt.datetime,
        since: dt.datetime | None,
        overlap: dt.timedelta,
        window: dt.timedelta | None,
    ) -> None:
        self.store = store
        self.tenant = tenant_id
        self.settings = tenant_settings
        self.sink = sink
        self.now = now
        self.since = since
        self.overlap = overlap
        self.window = window
        self.shop_keys = shop_keys_of(tenant_settings)

    def _start(self, platform: str, stream: str) -> tuple[str | None, dt.datetime | None]:
        before = self.store.get_cursor(self.tenant, platform, stream)
        if self.since is not None:
            return before, self.since
        cursor = parse_instant(before)
        return before, (cursor - self.overlap if cursor is not None else None)

    def _windows(self, lo: dt.datetime | None) -> list[tuple[dt.datetime | None, dt.datetime]]:
        if lo is None or self.window is None or lo >= self.now:
            return [(lo, self.now)]
        out: list[tuple[dt.datetime | None, dt.datetime]] = []
        while lo < self.now:
            hi = min(lo + self.window, self.now)
            out.append((lo, hi))
            lo = hi
        return out

    # --- SmartEPI --------------------------------------------------------------------

    async def smartepi(self, client: Any, stream: str) -> StreamResult:
        result = StreamResult(EPI, stream)
        result.cursor_before, lo = self._start(EPI, stream)
        resource = client.resource(stream.replace("_", "-"))
        reverse = self.store.reverse_bindings(self.tenant, EPI)
        buffer = _Buffer(self.sink)
        for since, until in self._windows(lo):
            filters: dict[str, Any] = {"createdUntil": until}
            if since is not None:
                filters["createdSince"] = since
            async for page in resource.pages(limit=PAGE_LIMIT, **filters):
                rows = []
                for record in page:
                    if not isinstance(record, dict) or record.get("id") in (None, ""):
                        continue
                    result.fetched += 1
                    row, missing = map_smartepi(stream, record, reverse)
                    if missing:
                        result.parked += self._park(stream, record)
                    else:
                        rows.append(row)
                buffer.add(stream, rows)
                if buffer.size() >= FLUSH_ROWS:
                    result.written += buffer.flush()
            result.written += buffer.flush()
            # everything created before ``until`` is committed (or parked in the inbox)
            result.cursor_after = iso(until)
            self.store.set_cursor(self.tenant, EPI, stream, result.cursor_after)
        return result

    def _park(self, stream: str, record: Mapping[str, Any]) -> int:
        event_id, event_type = event_id_for(stream, str(record["id"])), STREAM_EVENTS[stream]
        event = {
            "id": event_id,
            "type": event_type,
            "createdAt": None,
            "data": dict(record),
            "source": "pull",
        }
        return 1 if inbox_insert(self.store, self.tenant, EPI, event_id, event_type, event) else 0

    # --- SmartKasa -------------------------------------------------------------------

    async def shifts(self, client: Any) -> StreamResult:
        result = StreamResult(KASA, "shifts")
        result.cursor_before, lo = self._start(KASA, "shifts")
        closed = []
        async for shift in client.shifts.iterate():
            closed_at = parse_instant(getattr(shift, "closed_at", None))
            if closed_at is None or closed_at > self.now:
                continue  # open (or closed after this run started: the next run takes it)
            closed.append((closed_at, shift))
        closed.sort(key=lambda pair: (pair[0], str(pair[1].id)))
        seen = self.store.inbound_seen(self.tenant, KASA, "shifts", [str(s.id) for _, s in closed])
        reverse = self.store.reverse_bindings(self.tenant, KASA)
        latest = parse_instant(result.cursor_before)
        for closed_at, shift in closed:
            recent = lo is None or closed_at >= lo
            if str(shift.id) in seen and not recent:
                continue
            if lo is not None and self.since is not None and closed_at < self.since:
                continue
            buffer = _Buffer(self.sink)
            async for receipt in client.receipts.iterate(shift_id=str(shift.id)):
                if getattr(receipt, "shift_id", None) not in (None, str(shift.id)):
                    continue  # the server ignored the filter: keep only this shift's receipts
                result.fetched += 1
                row, items, payments = map_receipt(receipt, reverse, self.shop_keys)
                buffer.add("receipts", [row])
                buffer.add("receipt_items", items)
                buffer.add("payments", payments)
                if buffer.size() >= FLUSH_ROWS:
                    result.written += buffer.flush()
            buffer.add("shifts", [map_shift(shift)])  # last: its marker says "all receipts are in"
            result.written += buffer.flush()
            if latest is None or closed_at > latest:
                latest = closed_at
                result.cursor_after = iso(min(latest, self.now))
                self.store.set_cursor(self.tenant, KASA, "shifts", result.cursor_after)
        return result

    async def z_reports(self, client: Any) -> StreamResult:
        result = StreamResult(KASA, "z_reports")
        result.cursor_before, lo = self._start(KASA, "z_reports")
        buffer = _Buffer(self.sink)
        async for report in client.z_reports.iterate(date_start=lo, date_end=self.now):
            result.fetched += 1
            buffer.add("z_reports", [map_z_report(report, self.shop_keys)])
            if buffer.size() >= FLUSH_ROWS:
                result.written += buffer.flush()
        result.written += buffer.flush()
        result.cursor_after = iso(self.now)
        self.store.set_cursor(self.tenant, KASA, "z_reports", result.cursor_after)
        return result

    async def stock(self, client: Any) -> StreamResult:
        result = StreamResult(KASA, "stock")
        result.cursor_before = self.store.get_cursor(self.tenant, KASA, "stock")
        shops = [str(s) for s in (getattr(self.settings.smartkasa, "shops", None) or {}).values()]
        if not shops:
            shops = [str(shop.id) async for shop in client.shops.iterate()]
        reverse = self.store.reverse_bindings(self.tenant, KASA)
        buffer = _Buffer(self.sink)
        for shop in shops:
            async for card in client.cards.iterate(shop_id=shop):
                if getattr(card, "shop_id", None) not in (None, shop):
                    continue
                result.fetched += 1
                buffer.add("stock", [map_card(card, reverse, self.shop_keys)])
            if buffer.size() >= FLUSH_ROWS:
                result.written += buffer.flush()
        result.written += buffer.flush()
        result.cursor_after = iso(self.now)
        self.store.set_cursor(self.tenant, KASA, "stock", result.cursor_after)
        return result


def _epi_client(tenant_id: str, settings: Any) -> Any:
    from sync.clients.smartepi.client import SmartEPIClient

    epi = settings.smartepi
    return SmartEPIClient(epi.base_url, epi.api_key, account=tenant_id, timeout=epi.timeout_seconds)


def _kasa_client(tenant_id: str, settings: Any) -> Any:
    from sync.clients.smartkasa.client import SmartKasaClient
    from sync.clients.smartkasa.config import SmartKasaSettings as ClientSettings

    kasa = settings.smartkasa
    config = ClientSettings(
        base_url=kasa.base_url,
        api_key=kasa.api_key,
        phone_number=kasa.phone,
        password=kasa.password,
        auth_scheme=kasa.auth_scheme,
        body_style=kasa.body_style,
        timeout=kasa.timeout_seconds,
    )
    return SmartKasaClient(config, account=tenant_id)


async def pull_async(
    store: StateStore,
    tenant_id: str,
    tenant_settings: Any,
    sink: Sink,
    *,
    epi_client: Any = None,
    kasa_client: Any = None,
    since: dt.datetime | dt.date | None = None,
    now: dt.datetime | None = None,
    overlap: dt.timedelta = dt.timedelta(minutes=10),
    window: dt.timedelta | None = None,
    streams: Sequence[str] | None = None,
) -> PullSummary:
    """Pull every configured stream of one tenant (or ``streams``, e.g. ``["withdrawals"]``)."""
    run_start = as_instant(now) or utcnow()
    puller = Puller(
        store,
        tenant_id,
        tenant_settings,
        sink,
        now=run_start,
        since=as_instant(since),
        overlap=overlap,
        window=window,
    )
    summary = PullSummary(started_at=run_start)
    wanted = set(streams) if streams is not None else set(EPI_STREAMS) | set(KASA_STREAMS)
    unknown = wanted - set(EPI_STREAMS) - set(KASA_STREAMS)
    if unknown:
        raise ConfigError(f"unknown pull stream(s): {', '.join(sorted(unknown))}")
    owned: list[Any] = []
    try:
        if tenant_settings.smartepi is not None and wanted & set(EPI_STREAMS):
            if epi_client is None:
                epi_client = _epi_client(tenant_id, tenant_settings)
                owned.append(epi_client)
            before = epi_client.counters.total
            for stream in EPI_STREAMS:
                if stream in wanted:
                    summary.streams.append(await puller.smartepi(epi_client, stream))
            summary.requests[EPI] = epi_client.counters.total - before
            summary.inbox = process_inbox(store, tenant_id, tenant_settings, sink)
        if tenant_settings.smartkasa is not None and wanted & set(KASA_STREAMS):
            if kasa_client is None:
                kasa_client = _kasa_client(tenant_id, tenant_settings)
                owned.append(kasa_client)
            before = kasa_client.counters.total
            if "shifts" in wanted:
                summary.streams.append(await puller.shifts(kasa_client))
            if "z_reports" in wanted:
                summary.streams.append(await puller.z_reports(kasa_client))
            if "stock" in wanted:
                summary.streams.append(await puller.stock(kasa_client))
            summary.requests[KASA] = kasa_client.counters.total - before
    finally:
        for client in owned:
            await client.aclose()
    return summary


def pull(
    store: StateStore,
    tenant_id: str,
    tenant_settings: Any,
    sink: Sink,
    *,
    epi_client: Any = None,
    kasa_client: Any = None,
    since: dt.datetime | dt.date | None = None,
    now: dt.datetime | None = None,
    overlap: dt.timedelta = dt.timedelta(minutes=10),
    window: dt.timedelta | None = None,
    streams: Sequence[str] | None = None,
) -> PullSummary:
    """Blocking ``pull_async`` for the CLI and Celery; clients passed in must not be bound to another loop."""
    return asyncio.run(
        pull_async(
            store,
            tenant_id,
            tenant_settings,
            sink,
            epi_client=epi_client,
            kasa_client=kasa_client,
            since=since,
            now=now,
            overlap=overlap,
            window=window,
            streams=streams,
        )
    )
