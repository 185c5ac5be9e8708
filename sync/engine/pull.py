"""Pulls: fill what webhooks missed and bring back SmartKasa sales, with safe cursors.

One cursor per (tenant, platform, stream), an ISO-8601 UTC instant meaning "everything the
stream holds before this is committed to the ERP sink". The rules (design §3):

- a run reads up to its own start time (``now``), never beyond, and a cursor is set only
  after the sink committed what it covers; so a run killed between fetch and commit leaves
  the cursor where it was and the rerun fetches the same records again;
- the next run starts ``overlap`` before the cursor, for records that become visible late;
- every record is upserted by its remote id (sink + ``InboundRecord`` markers), so the
  overlap, a rerun and a webhook delivering the same record all land it once;
- every record is mapped and checked on its own: a malformed one (or one the ERP refuses,
  found by bisecting the write) is held as a ``failed`` inbox row and the cursor moves on;
- every stream has its own error boundary: a stream that fails keeps its cursor where its
  last commit left it, and the other streams (the other platform's too) still run.

Streams:

- SmartEPI ``withdrawals``, ``returns``, ``exchanges``, ``training_records``: time windows
  ``createdSince``/``createdUntil`` (never combined with a relationship filter; the client
  refuses that), pages of 100. A record whose references are not bound yet is parked in the
  inbox (under its webhook's event id) and quarantined, so the cursor can move on without
  losing it; ``process_inbox`` retries it when the binding appears.
- SmartKasa ``shifts``: there is no date filter on shifts or receipts (contract §6.1–6.2),
  so the shift list is read whole and each ended shift not imported yet (or ended within
  the overlap) has its receipts read with ``shift_id``; the receipts (with items and
  payments, which only the list endpoint carries) are committed first, the shift row last,
  so a shift's marker means "all its receipts are in". The cursor is the latest end time
  imported. A shift has ended when it has a ``closed_at``; one that will never close
  normally (``closed_at`` null with a ``state`` other than 0, the contract's "stale" ``2``,
  or still open 24 hours after it opened: a fiscal shift lasts at most a day) ended when it
  opened. Offline receipts reach a shift late (§6.6): every
  ``smartkasa.late_receipts_check_minutes`` the shifts that ended in the last
  ``smartkasa.late_receipts_days`` are read again (markers skip what is already in). A
  server that ignores the ``shift_id`` filter (§6.2 does not say it filters) answers with
  the whole list: that one pass then serves every shift of the run, not one shift each.
- SmartKasa ``z_reports`` by ``date_start``/``date_end``; ``stock``: every card of every
  shop, a snapshot written only where the count changed (markers compare content hashes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.engine.inbound import (
    EPI,
    KASA,
    STREAM_EVENTS,
    InboundSummary,
    Unit,
    event_id_for,
    inbox_insert,
    map_kasa,
    map_smartepi,
    park_failed,
    process_inbox,
    shop_keys_of,
    write_units,
)
from sync.engine.inbound_fields import RecordError, get, shown
from sync.errors import ConfigError, ErpsyncError, StatusError, utcnow
from sync.observability import metrics
from sync.redact import scrub
from sync.sinks.base import Sink
from sync.state.store import StateStore

log = logging.getLogger(__name__)

EPI_STREAMS = ("withdrawals", "returns", "exchanges", "training_records")
# Streams with no documented REST endpoint (smartepi.md §3.9: training records are seen only as
# a webhook event). A server that does not serve one answers 404/405, or, like API Gateway for
# an unknown resource, 403 {"message":"Missing Authentication Token"}: the stream is then marked
# unavailable (a warning, cursor untouched, no error) and the others go on.
OPTIONAL_STREAMS = frozenset({(EPI, "training_records")})
_UNKNOWN_ROUTE_403 = "missing authentication token"
KASA_STREAMS = ("shifts", "z_reports", "stock")
# When the ended shifts were last read again for late receipts. A ``:`` in a cursor's stream
# name marks bookkeeping, not a pull position (``erpsync_pull_lag_seconds`` leaves it out).
LATE_CHECK_CURSOR = "shifts:late_check"
# A fiscal shift (PRRO) lasts at most 24 hours: one still open after that will not close normally.
STALE_OPEN_SHIFT = dt.timedelta(hours=24)
FLUSH_ROWS = 1000
PAGE_LIMIT = 100
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(slots=True)
class StreamResult:
    platform: str
    stream: str
    fetched: int = 0
    written: int = 0
    parked: int = 0  # waiting for a binding (SmartEPI)
    failed: int = 0  # records held as failed (malformed, or refused by the sink)
    cursor_before: str | None = None
    cursor_after: str | None = None
    error: str | None = None  # the stream stopped here; the others went on
    unavailable: str | None = None  # the platform does not serve this stream: skipped, no error


@dataclass(slots=True)
class PullSummary:
    started_at: dt.datetime
    streams: list[StreamResult] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    inbox: InboundSummary | None = None
    inbox_error: str | None = None

    @property
    def fetched(self) -> int:
        return sum(s.fetched for s in self.streams)

    @property
    def written(self) -> int:
        return sum(s.written for s in self.streams)

    @property
    def errors(self) -> list[str]:
        out = [f"{s.platform}/{s.stream}: {s.error}" for s in self.streams if s.error]
        return out + ([f"inbox: {self.inbox_error}"] if self.inbox_error else [])


def iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_instant(text: Any) -> dt.datetime | None:
    """An ISO-8601 instant (any offset, ``Z`` allowed) as aware UTC; None when absent or unreadable."""
    if not text or not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def shift_end(shift: Any, now: dt.datetime) -> tuple[bool, dt.datetime | None]:
    """Whether a SmartKasa shift has ended for the pull, and when (None: unknown).

    Its ``closed_at`` when it has one (not after ``now``: the next run takes it). Without
    one, a shift whose ``state`` is not 0 (``2``: "stale or expired", §6.1; other values are
    not documented) or that opened over 24 hours ago will never close normally: it ended
    when it opened, so its receipts are not left behind for ever. Otherwise it is open."""
    closed_at = parse_instant(get(shift, "closed_at"))
    if closed_at is not None:
        return closed_at <= now, closed_at
    opened_at = parse_instant(get(shift, "opened_at"))
    if str(get(shift, "state")) not in ("0", "None"):
        return True, opened_at
    if opened_at is not None and now - opened_at >= STALE_OPEN_SHIFT:
        return True, opened_at
    return False, None


def as_instant(value: dt.datetime | dt.date | None) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _error_text(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, ErpsyncError) else f"{type(exc).__name__}: {exc}"
    return scrub(text)[:1000]


def _kasa_time(moment: dt.datetime | None, *, end: bool = False) -> str | None:
    """A z-report date filter (contract §6.3: ISO time with milliseconds). An upper bound is
    rounded up to the next millisecond: truncated, it would leave out a report stamped in the
    same millisecond as ``now`` but after it (found by the next pull's overlap, but late)."""
    if moment is None:
        return None
    if end and moment.microsecond % 1000:
        moment += dt.timedelta(microseconds=1000 - moment.microsecond % 1000)
    return moment.isoformat(timespec="milliseconds")


class _Buffer:
    """Records (units) waiting for one sink transaction; refused ones are held as failed."""

    def __init__(self, puller: Puller, platform: str, result: StreamResult) -> None:
        self.puller = puller
        self.platform = platform
        self.result = result
        self.units: list[Unit] = []

    def add(self, unit: Unit) -> None:
        self.units.append(unit)

    def size(self) -> int:
        return sum(len(rows) for u in self.units for rows in u.rows.values())

    def flush(self) -> None:
        if not self.units:
            return
        units, self.units = self.units, []
        written, refused = write_units(self.puller.sink, units)
        self.result.written += written
        for unit, reason in refused:
            stream, record = unit.ref
            rid = shown(get(record, "id"), 80)
            self.result.failed += 1
            self.puller.hold(self.platform, stream, record, None, f"{stream} {rid}: sink_refused: {reason}")


class Puller:
    """One pull run of one tenant (``pull`` / ``pull_async`` build and run it).

    Every record is mapped on its own (a malformed one is held as a ``failed`` inbox row,
    see ``sync.engine.inbound``) and every stream has its own error boundary and cursor:
    a stream that fails stops there, with its cursor at what it committed, and the next
    stream runs."""

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

    def hold(self, platform: str, stream: str, record: Any, err: RecordError | None, reason: str) -> None:
        park_failed(self.store, self.tenant, platform, stream, record, err, reason)

    def _mapped_kasa(self, stream: str, record: Any, reverse: Any, result: StreamResult) -> Unit | None:
        """One SmartKasa record as a unit, or None when it is malformed (then held as failed)."""
        try:
            return Unit(map_kasa(stream, record, reverse, self.shop_keys), (stream, record))
        except RecordError as err:
            result.failed += 1
            rid = shown(get(record, "id"), 80)
            self.hold(KASA, stream, record, err, err.reason(stream, rid))
            return None

    def _not_served(self, result: StreamResult, exc: BaseException, key_works: bool) -> bool:
        """Whether ``exc`` says the platform has no endpoint for this optional stream. A 403
        counts when its body is API Gateway's unknown-route text, or when another stream of the
        same platform was read in this run (the key works, so the 403 is about the path)."""
        if (result.platform, result.stream) not in OPTIONAL_STREAMS or not isinstance(exc, StatusError):
            return False
        if exc.status in (404, 405):
            return True
        if exc.status == 403:
            return key_works or _UNKNOWN_ROUTE_403 in str(exc.message).lower()
        return False

    async def run(self, result: StreamResult, work: Any, *, key_works: bool = False) -> StreamResult:
        """The error boundary of one stream: a failure is recorded, never propagated."""
        try:
            await work(result)
        except Exception as exc:
            if self._not_served(result, exc, key_works):
                status = getattr(exc, "status", None)
                result.unavailable = f"the API answered {status}: this stream has no endpoint there"
                log.warning(
                    "pull %s %s/%s unavailable: the API answered %s (it documents no endpoint for"
                    " it); skipped, cursor stays at %s, the other streams went on. Nothing to fix:"
                    " subscribe the webhook to training_record.created to receive these records;"
                    " the next pull asks again.",
                    self.tenant,
                    result.platform,
                    result.stream,
                    status,
                    result.cursor_before,
                )
                return result
            result.error = _error_text(exc)
            log.warning(
                "pull %s %s/%s stopped: %s (cursor stays at %s)",
                self.tenant,
                result.platform,
                result.stream,
                result.error,
                result.cursor_after or result.cursor_before,
            )
        return result

    # --- SmartEPI --------------------------------------------------------------------

    async def smartepi(self, client: Any, stream: str, result: StreamResult) -> None:
        result.cursor_before, lo = self._start(EPI, stream)
        resource = client.resource(stream.replace("_", "-"))
        reverse = self.store.reverse_bindings(self.tenant, EPI)
        buffer = _Buffer(self, EPI, result)
        for since, until in self._windows(lo):
            filters: dict[str, Any] = {"createdUntil": until}
            if since is not None:
                filters["createdSince"] = since
            async for page in resource.pages(limit=PAGE_LIMIT, **filters):
                for record in page:
                    result.fetched += 1
                    if not isinstance(record, dict):
                        result.failed += 1
                        self.hold(
                            EPI, stream, {"value": record}, None, f"{stream}: a list item is not an object"
                        )
                        continue
                    try:
                        row, missing = map_smartepi(stream, record, reverse)
                    except RecordError as err:
                        result.failed += 1
                        rid = shown(record.get("id"), 80)
                        self.hold(EPI, stream, record, err, err.reason(stream, rid))
                        continue
                    if missing:
                        result.parked += self._park(stream, row.remote_id, record)
                    else:
                        buffer.add(Unit({stream: [row]}, (stream, record)))
                if buffer.size() >= FLUSH_ROWS:
                    buffer.flush()
            buffer.flush()
            # everything created before ``until`` is committed (or held in the inbox)
            result.cursor_after = iso(until)
            self.store.set_cursor(self.tenant, EPI, stream, result.cursor_after)

    def _held(self, stream: str, remote_ids: Sequence[str]) -> set[str]:
        """Which of ``remote_ids`` sit in the inbox as held (failed/dead) records of ``stream``."""
        wanted = {event_id_for(stream, rid): rid for rid in remote_ids}
        return {wanted[e] for e in self.store.inbox_held(self.tenant, list(wanted))}

    def _park(self, stream: str, remote_id: str, record: Mapping[str, Any]) -> int:
        event_id, event_type = event_id_for(stream, remote_id), STREAM_EVENTS[stream]
        event = {
            "id": event_id,
            "type": event_type,
            "createdAt": None,
            "data": dict(record),
            "source": "pull",
        }
        return 1 if inbox_insert(self.store, self.tenant, EPI, event_id, event_type, event) else 0

    # --- SmartKasa -------------------------------------------------------------------
    # Raw list records (``iter_list``), not the client's models: a model that refuses one
    # field would fail the whole page; the mappers check each record on its own instead.

    async def shifts(self, client: Any, result: StreamResult) -> None:
        result.cursor_before, lo = self._start(KASA, "shifts")
        ended: list[tuple[dt.datetime | None, Any]] = []
        async for shift in client.iter_list(client.shifts.path):
            if get(shift, "id") in (None, ""):
                continue
            has_ended, at = shift_end(shift, self.now)
            if has_ended:
                ended.append((at, shift))
            # else open (or closed after this run started): the next run takes it
        ended.sort(key=lambda pair: (pair[0] or _EPOCH, str(pair[1]["id"])))
        ids = [str(s["id"]) for _, s in ended]
        # a shift held as failed counts as seen: its receipts are in, its row waits for retry-failed
        seen = self.store.inbound_seen(self.tenant, KASA, "shifts", ids) | self._held("shifts", ids)
        reverse = self.store.reverse_bindings(self.tenant, KASA)
        late = self._late_receipts_from()
        todo: list[tuple[dt.datetime | None, Any]] = []
        for at, shift in ended:
            recent = lo is None or (at is not None and (at >= lo or (late is not None and at >= late)))
            if str(shift["id"]) in seen and not recent:
                continue
            if lo is not None and self.since is not None and (at is None or at < self.since):
                continue
            todo.append((at, shift))
        latest = parse_instant(result.cursor_before)
        wanted = {str(s["id"]) for _, s in todo}
        for i, (_, shift) in enumerate(todo):
            shift_id = str(shift["id"])
            buffer = _Buffer(self, KASA, result)
            whole_list = False
            async for receipt in client.iter_list(client.receipts.path, {"shift_id": shift_id}):
                of = get(receipt, "shift_id")
                if of not in (None, shift_id, shift["id"]):
                    # The server ignored the filter (§6.2 does not say it filters): this pass
                    # holds every receipt, so it serves every shift still to do in this run.
                    whole_list = True
                    if str(of) not in wanted:
                        continue
                result.fetched += 1
                unit = self._mapped_kasa("receipts", receipt, reverse, result)
                if unit is not None:
                    buffer.add(unit)
                if buffer.size() >= FLUSH_ROWS:
                    buffer.flush()
            # last: a shift's marker says "all its receipts are in" (failed ones are held in the inbox)
            done = todo[i:] if whole_list else [todo[i]]
            for _, ended_shift in done:
                unit = self._mapped_kasa("shifts", ended_shift, reverse, result)
                if unit is not None:
                    buffer.add(unit)
            buffer.flush()
            for at, _ in done:
                if at is not None and (latest is None or at > latest):
                    latest = at
                    result.cursor_after = iso(min(latest, self.now))
                    self.store.set_cursor(self.tenant, KASA, "shifts", result.cursor_after)
            if whole_list:
                log.info(
                    "pull %s smartkasa/receipts: the server ignored the shift_id filter; one pass over"
                    " the whole receipt list served %d shift(s)",
                    self.tenant,
                    len(done),
                )
                break
            wanted.discard(shift_id)
        if late is not None or lo is None:
            self.store.set_cursor(self.tenant, KASA, LATE_CHECK_CURSOR, iso(self.now))

    def _late_receipts_from(self) -> dt.datetime | None:
        """Since when ended shifts are read again for late offline receipts in this run, or
        None when it is not time yet (every ``late_receipts_check_minutes``), the window is 0
        or the run is an explicit ``--since`` backfill (which reads all of it anyway)."""
        kasa = getattr(self.settings, "smartkasa", None)
        days = float(getattr(kasa, "late_receipts_days", 3.0))
        every = dt.timedelta(minutes=float(getattr(kasa, "late_receipts_check_minutes", 60)))
        if days <= 0 or self.since is not None:
            return None
        last = parse_instant(self.store.get_cursor(self.tenant, KASA, LATE_CHECK_CURSOR))
        if last is not None and last <= self.now < last + every:
            return None
        return self.now - dt.timedelta(days=days)

    async def z_reports(self, client: Any, result: StreamResult) -> None:
        result.cursor_before, lo = self._start(KASA, "z_reports")
        buffer = _Buffer(self, KASA, result)
        params = {"date_start": _kasa_time(lo), "date_end": _kasa_time(self.now, end=True)}
        async for report in client.iter_list(client.z_reports.path, params):
            result.fetched += 1
            unit = self._mapped_kasa("z_reports", report, {}, result)
            if unit is not None:
                buffer.add(unit)
            if buffer.size() >= FLUSH_ROWS:
                buffer.flush()
        buffer.flush()
        result.cursor_after = iso(self.now)
        self.store.set_cursor(self.tenant, KASA, "z_reports", result.cursor_after)

    async def stock(self, client: Any, result: StreamResult) -> None:
        result.cursor_before = self.store.get_cursor(self.tenant, KASA, "stock")
        shops = [str(s) for s in (getattr(self.settings.smartkasa, "shops", None) or {}).values()]
        if not shops:
            shops = [str(shop.id) async for shop in client.shops.iterate()]
        reverse = self.store.reverse_bindings(self.tenant, KASA)
        buffer = _Buffer(self, KASA, result)
        for shop in shops:
            async for card in client.iter_list(client.cards.path, {"shop_id": shop}):
                if get(card, "shop_id") not in (None, shop) and str(get(card, "shop_id")) != shop:
                    continue
                result.fetched += 1
                unit = self._mapped_kasa("stock", card, reverse, result)
                if unit is not None:
                    buffer.add(unit)
            if buffer.size() >= FLUSH_ROWS:
                buffer.flush()
        buffer.flush()
        result.cursor_after = iso(self.now)
        self.store.set_cursor(self.tenant, KASA, "stock", result.cursor_after)


ClientFactory = Callable[[str], Any]
"""Platform name → a new client the puller owns: ``TenantRuntime.new_clients``, so a pull shares
the tenant's rate governor, token store and transports with the workers."""


def _client_from(factory: ClientFactory | None, platform: str) -> Any:
    if factory is None:
        raise ConfigError(f"pull: no client for {platform}", hint="pass clients= (TenantRuntime.new_clients)")
    client = factory(platform)
    if client is None:
        raise ConfigError(f"pull: {platform} is not configured for this tenant")
    return client


async def pull_async(
    store: StateStore,
    tenant_id: str,
    tenant_settings: Any,
    sink: Sink,
    *,
    epi_client: Any = None,
    kasa_client: Any = None,
    clients: ClientFactory | None = None,
    since: dt.datetime | dt.date | None = None,
    now: dt.datetime | None = None,
    overlap: dt.timedelta = dt.timedelta(minutes=10),
    window: dt.timedelta | None = None,
    streams: Sequence[str] | None = None,
) -> PullSummary:
    """Pull every configured stream of one tenant (or ``streams``, e.g. ``["withdrawals"]``).

    Never raises for a stream's failure: each ``StreamResult`` carries its ``error`` (and
    ``summary.errors`` lists them), so one platform's outage never holds back the other."""
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
        raise ConfigError(
            f"unknown pull stream(s): {', '.join(sorted(unknown))}",
            hint=f"--stream takes one of: {', '.join(sorted(set(EPI_STREAMS) | set(KASA_STREAMS)))}",
        )
    owned: list[Any] = []
    try:
        if tenant_settings.smartepi is not None and wanted & set(EPI_STREAMS):
            await _pull_platform(puller, summary, EPI, wanted, epi_client, owned, clients)
            try:
                summary.inbox = process_inbox(store, tenant_id, tenant_settings, sink, now=run_start)
            except Exception as exc:  # the rows stay in the inbox with a backoff
                summary.inbox_error = _error_text(exc)
                log.warning("pull %s: inbox processing stopped: %s", tenant_id, summary.inbox_error)
        if tenant_settings.smartkasa is not None and wanted & set(KASA_STREAMS):
            await _pull_platform(puller, summary, KASA, wanted, kasa_client, owned, clients)
    finally:
        for client in owned:
            await client.aclose()
    return summary


async def _pull_platform(
    puller: Puller,
    summary: PullSummary,
    platform: str,
    wanted: set[str],
    client: Any,
    owned: list[Any],
    factory: ClientFactory | None,
) -> None:
    """Each wanted stream of one platform inside its own error boundary (``Puller.run``)."""
    streams = [s for s in (EPI_STREAMS if platform == EPI else KASA_STREAMS) if s in wanted]
    try:
        if client is None:
            client = _client_from(factory, platform)
            owned.append(client)
    except Exception as exc:  # a bad client setting fails this platform's streams, not the other's
        summary.streams += [StreamResult(platform, s, error=_error_text(exc)) for s in streams]
        return
    kasa = {"shifts": puller.shifts, "z_reports": puller.z_reports, "stock": puller.stock}
    before = client.counters.total
    for stream in streams:

        async def work(result: StreamResult, stream: str = stream) -> None:
            if platform == EPI:
                await puller.smartepi(client, stream, result)
            else:
                await kasa[stream](client, result)

        key_works = any(s.platform == platform and not s.error for s in summary.streams)
        summary.streams.append(await puller.run(StreamResult(platform, stream), work, key_works=key_works))
    summary.requests[platform] = client.counters.total - before


def pull(
    store: StateStore,
    tenant_id: str,
    tenant_settings: Any,
    sink: Sink,
    *,
    epi_client: Any = None,
    kasa_client: Any = None,
    clients: ClientFactory | None = None,
    since: dt.datetime | dt.date | None = None,
    now: dt.datetime | None = None,
    overlap: dt.timedelta = dt.timedelta(minutes=10),
    window: dt.timedelta | None = None,
    streams: Sequence[str] | None = None,
) -> PullSummary:
    """Blocking ``pull_async`` for the CLI and Celery; clients passed in must not be bound to another loop."""
    started = time.monotonic()
    try:
        summary = asyncio.run(
            pull_async(
                store,
                tenant_id,
                tenant_settings,
                sink,
                epi_client=epi_client,
                kasa_client=kasa_client,
                clients=clients,
                since=since,
                now=now,
                overlap=overlap,
                window=window,
                streams=streams,
            )
        )
    except BaseException:
        metrics.run_finished(tenant_id, "pull", "full", "failed", time.monotonic() - started)
        raise
    metrics.pull_finished(tenant_id, summary, time.monotonic() - started)
    return summary
