"""A hostile platform: the in-process sandboxes, with chosen records carrying bad values on the wire.

JSON tokens Python would never write (``1e400``, a lone ``"\\udcff"`` escape) are put in as
marker strings and swapped for the raw token after serialisation, so the client parses
exactly what a broken server would send.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

# the bad values of issue #14 item 6, by name: (field kind, value as placed in the record)
LONG_TEXT = "D" * 300
RAW_TOKENS = {"@1e400": "1e400", "@1e15": "1e15", "@surrogate": '"\\udcff"'}
BAD_NUMBERS = {"1e15": "@1e15", "1e400": "@1e400", "abc": "abc", "thousands": "1,000"}
BAD_TEXT = {"long": LONG_TEXT, "surrogate": "@surrogate"}

Mutator = Callable[[dict[str, Any]], None]


def set_field(name: str, value: Any) -> Mutator:
    def mutate(record: dict[str, Any]) -> None:
        record[name] = value

    return mutate


def set_item_field(name: str, value: Any) -> Mutator:
    def mutate(record: dict[str, Any]) -> None:
        record["items"][0][name] = value

    return mutate


def _walk(node: Any, targets: Mapping[str, Mutator]) -> None:
    if isinstance(node, dict):
        rid = node.get("id")
        if rid is not None and str(rid) in targets and not node.get("_hostile"):
            targets[str(rid)](node)
        for value in list(node.values()):
            _walk(value, targets)
    elif isinstance(node, list):
        for value in node:
            _walk(value, targets)


class HostileTransport(httpx.AsyncBaseTransport):
    """ASGI transport to a sandbox that rewrites JSON answers: records whose id is in
    ``targets`` are mutated; ``broken_paths`` answer with a list that is not a list."""

    def __init__(
        self, app: Any, targets: Mapping[str, Mutator], *, broken_paths: tuple[str, ...] = ()
    ) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.targets = dict(targets)
        self.broken_paths = broken_paths

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        if body and "json" in response.headers.get("content-type", ""):
            data = json.loads(body)
            if request.method == "GET" and any(request.url.path.endswith(p) for p in self.broken_paths):
                data = {"data": "not a list", "meta": {}}
            _walk(data, self.targets)
            text = json.dumps(data, ensure_ascii=False)
            for marker, raw in RAW_TOKENS.items():
                text = text.replace(json.dumps(marker), raw)
            body = text.encode()
        headers = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)
