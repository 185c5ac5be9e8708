"""Kaminari-style pagination (contract §3) as a lazy async iterator.

Rules: ask ``page``/``per_page`` but never assume ``per_page`` was honoured; follow
``meta.next_page``; stop when it is null, when ``data`` is empty, or when
``current_page >= total_pages``. A "total_count-only" list (cards, unit types,
subgroups…) has no pager and is expected whole in one response; should such a list
ever hold back records (``total_count`` above what was received), the next page is
asked for until the count is reached or a page comes back empty. A ``next_page``
that does not move forward would loop forever: that is a :class:`ContractViolation`.

A server that ignores ``page`` (the contract documents it on four lists only, §3) must
neither loop nor duplicate records:

- records are de-duplicated by ``id`` (a record shifted across a page boundary while the
  data changed, §3 "never assume consistency", is yielded once);
- a Kaminari answer whose ``current_page`` is not the page asked for is a
  :class:`ContractViolation` naming both (the rest of the list cannot be reached, and a
  silently truncated listing would let records be created twice);
- a non-empty page that brings no new id: for a Kaminari list that still announces a
  next page, a :class:`ContractViolation` (the same reason); for a "total_count-only"
  list (expected whole in one answer, §3) the listing stops there, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sync import errors as E

log = logging.getLogger(__name__)

FetchPage = Callable[[int], Awaitable[Any]]
"""Fetch one page by number; returns the decoded body ``{"data": [...], "meta": {...}}``."""

MAX_PAGES = 100_000


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def next_page_of(body: Any, requested: int, seen: int = 0) -> int | None:
    """The page to fetch after ``requested`` (``seen`` records received so far, this page
    included), or ``None`` when the list is done."""
    if not isinstance(body, dict):
        raise E.ContractViolation("list answer is not a JSON object", platform="smartkasa")
    data = body.get("data")
    if not isinstance(data, list):
        raise E.ContractViolation("list answer without a data array", platform="smartkasa")
    if not data:
        return None
    raw_meta = body.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    if "next_page" not in meta and "total_pages" not in meta:  # total_count-only list
        total_count = _int(meta.get("total_count"))
        return requested + 1 if total_count is not None and seen < total_count else None
    current = _int(meta.get("current_page"))
    if current is not None and current != requested:
        raise E.ContractViolation(
            f"the server ignores the page parameter: asked for page {requested}, the answer is "
            f"current_page={current}; the rest of the list cannot be read",
            platform="smartkasa",
        )
    current = requested
    nxt = _int(meta.get("next_page"))
    if nxt is None:
        return None
    total = _int(meta.get("total_pages"))
    if total is not None and current >= total:
        return None
    if nxt <= current:
        raise E.ContractViolation(
            f"pagination does not advance (current_page={current}, next_page={nxt})", platform="smartkasa"
        )
    return nxt


async def iterate_pages(fetch: FetchPage, *, first_page: int = 1) -> AsyncIterator[dict[str, Any]]:
    """Yield every record of a list lazily, one page request at a time."""
    page: int | None = first_page
    fetched = 0
    seen = 0
    ids: set[str] = set()
    while page is not None:
        fetched += 1
        if fetched > MAX_PAGES:
            raise E.ContractViolation("list exceeds the page safety limit", platform="smartkasa")
        body = await fetch(page)
        data = body.get("data") if isinstance(body, dict) else None
        seen += len(data) if isinstance(data, list) else 0
        after = next_page_of(body, page, seen)
        fresh: list[dict[str, Any]] = []
        for record in body["data"]:
            if not isinstance(record, dict):
                continue
            ident = record.get("id")
            if ident is not None:
                if str(ident) in ids:
                    continue
                ids.add(str(ident))
            fresh.append(record)
        if page != first_page and body["data"] and not fresh and after is not None:
            meta = body.get("meta")
            if isinstance(meta, dict) and ("next_page" in meta or "total_pages" in meta):
                raise E.ContractViolation(
                    f"page {page} repeats only records already listed and the pager goes on: "
                    "the server ignores the page parameter; the rest of the list cannot be read",
                    platform="smartkasa",
                )
            log.warning(
                "smartkasa list: page %d repeats only records already listed (total_count %s); "
                "taking the %d records received as the whole list",
                page,
                meta.get("total_count") if isinstance(meta, dict) else None,
                len(ids),
            )
            after = None
        for record in fresh:
            yield record
        page = after
