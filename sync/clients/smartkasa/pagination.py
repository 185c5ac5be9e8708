"""Kaminari-style pagination (contract §3) as a lazy async iterator.

Rules: ask ``page``/``per_page`` but never assume ``per_page`` was honoured; follow
``meta.next_page``; stop when it is null, when ``data`` is empty, or when
``current_page >= total_pages``. A "total_count-only" list (cards, unit types,
subgroups…) has no pager and is expected whole in one response; should such a list
ever hold back records (``total_count`` above what was received), the next page is
asked for until the count is reached or a page comes back empty. A ``next_page``
that does not move forward would loop forever: that is a :class:`ContractViolation`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sync import errors as E

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
    nxt = _int(meta.get("next_page"))
    if nxt is None:
        return None
    current = _int(meta.get("current_page")) or requested
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
    while page is not None:
        fetched += 1
        if fetched > MAX_PAGES:
            raise E.ContractViolation("list exceeds the page safety limit", platform="smartkasa")
        body = await fetch(page)
        data = body.get("data") if isinstance(body, dict) else None
        seen += len(data) if isinstance(data, list) else 0
        after = next_page_of(body, page, seen)
        for record in body["data"]:
            if isinstance(record, dict):
                yield record
        page = after
