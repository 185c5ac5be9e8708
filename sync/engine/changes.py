"""Change detection: which ERP rows changed since a watermark (SQL/file polling).

The Celery beat task ``poll_watermarks`` asks ``erp_changes_since`` per ERP entity and
emits ``sync_keys`` for the keys it returns; the watermark advances only after that sync
commits (``advance_watermark``), so a crash between the two re-polls instead of losing
the change. Watermarks live in the state store's cursors under ``watermark_stream``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from sync.sources.base import key_str, try_timestamp

if TYPE_CHECKING:
    from sync.engine.runtime import TenantRuntime

log = logging.getLogger("erpsync.engine")


def watermark_stream(entity: str) -> str:
    """The cursor name under which an ERP entity's polling watermark is stored."""
    return f"watermark:{entity}"


def parse_stamp(value: str | None) -> dt.datetime | None:
    """A stored watermark (ISO text) as an aware datetime, or None."""
    if not value:
        return None
    stamp = dt.datetime.fromisoformat(value)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def erp_changes_since(
    rt: TenantRuntime, entity: str, since: dt.datetime | None
) -> tuple[list[str], dt.datetime | None]:
    """ERP keys of ``entity`` rows changed after ``since``, and the newest change stamp.

    The stamp is the entity's change column (``erp.entities.<x>.updated_at``: any name;
    ISO text, SQL datetime or epoch seconds, see ``parse_timestamp``). An entity without
    one cannot be polled: ``([], since)``, said once in the log (and by ``config
    check``); only reconciles see its changes. Rows of a child source (a product's stock
    rows) give their parent's key (the ``parent_key`` column): ``sync_keys`` of that
    entity syncs those parents.

    The source reads inclusively (``>= since``: a row written in the watermark's own
    second is not missed), so rows stamped exactly ``since`` come back; they ride along
    only when some row is strictly newer, so a quiet ERP emits nothing. The first poll
    (``since`` None) only dates the newest row.
    """
    key_column, _ = change_keys(rt, entity)
    column = rt.source.change_column(entity)
    if key_column is None:
        return [], since
    if column is None:
        warn_unpolled(rt.tenant_id, entity)
        return [], since
    if since is None:
        return [], rt.source.max_updated_at(entity)
    keys: dict[str, None] = {}
    newest, fresh, bad = since, False, 0
    for row in rt.source.read(entity, since=since):
        stamp = try_timestamp(row.get(column))
        key = key_str(row.get(key_column))
        if stamp is None or key is None:
            bad += 1  # no date or no key: only a reconcile can tell whether it changed
            continue
        if stamp < since:
            continue
        keys[key] = None
        if stamp > since:
            fresh = True
            newest = max(newest, stamp)
    if bad:
        log.warning(
            "%s/%s: %d row(s) have no readable %r or %r value; only reconciles sync them",
            rt.tenant_id,
            entity,
            bad,
            column,
            key_column,
        )
    return (list(keys), newest) if fresh else ([], since)


def change_keys(rt: TenantRuntime, entity: str) -> tuple[str | None, list[str]]:
    """(the column of ``entity``'s rows that names ERP keys, the mapped ERP entities they
    belong to): the entity's own key when a mapping reads it as records, else the
    ``parent_key`` column of the child collections it feeds, naming their parents."""
    own: str | None = None
    parents: dict[str, str] = {}
    for platform in rt.platforms():
        for em in rt.mappings.entities(platform):
            if em.source_entity == entity:
                own = em.erp_key_field
            for source, parent_col in em.child_sources.values():
                if source == entity:
                    parents.setdefault(em.source_entity, parent_col)
    if own is not None:
        return own, [entity]
    if parents:
        return next(iter(parents.values())), list(parents)
    return None, []


_UNPOLLED: set[tuple[str, str]] = set()


def warn_unpolled(tenant: str, entity: str) -> None:
    """Say once per process that an entity's changes wait for reconciles (no change column)."""
    if (tenant, entity) in _UNPOLLED:
        return
    _UNPOLLED.add((tenant, entity))
    log.warning(
        "%s: ERP entity %r has no change column, so polling cannot see its edits; only "
        "reconciles sync them. Set erp.entities.%s.updated_at to the column that dates a "
        "row's last change (ISO text, SQL datetime or epoch seconds)",
        tenant,
        entity,
        entity,
    )
