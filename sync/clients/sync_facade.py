"""Call async clients from sync code (CLI, Celery tasks) through a loop running in a thread.

A ``Portal`` owns one event loop on a daemon thread; ``call`` runs a coroutine
function there and waits for it, ``iterate`` turns an async iterator into a plain one
(pulling one item at a time, so pagination stays lazy). Async clients must be created
*and* used through the same portal because httpx and Redis connections bind to a loop::

    with Portal() as portal:
        client = portal.call(make_client)          # an async factory, or a sync one
        rows = list(portal.iterate(client.employees.list()))
        portal.call(client.aclose)

``wrap(obj)`` gives a proxy whose coroutine methods block and whose async-iterator
results iterate synchronously; plain attributes pass through.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="erpsync-portal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def call(self, fn: Callable[..., Awaitable[T] | T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the portal loop and return its result (or raise)."""

        async def runner() -> T:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                return await result
            return result

        if threading.current_thread() is self._thread:
            raise RuntimeError("Portal.call from the portal's own loop would deadlock")
        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result()

    def iterate(self, aiter: AsyncIterator[T]) -> Iterator[T]:
        """Iterate an async iterator from sync code, lazily; closing the generator closes it."""
        try:
            while True:
                try:
                    yield self.call(aiter.__anext__)  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(aiter, "aclose", None)
            if aclose is not None and self._loop.is_running():
                self.call(aclose)

    def wrap(self, obj: Any) -> Any:
        return _Blocking(self, obj)

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> Portal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Blocking:
    """Proxy that makes an async object's methods blocking (see ``Portal.wrap``)."""

    def __init__(self, portal: Portal, target: Any) -> None:
        self._portal = portal
        self._target = target

    def __repr__(self) -> str:
        return f"Blocking({self._target!r})"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return _Blocking(self._portal, attr) if _has_async_methods(attr) else attr
        portal = self._portal

        def blocking(*args: Any, **kwargs: Any) -> Any:
            if inspect.iscoroutinefunction(attr):
                return portal.call(attr, *args, **kwargs)
            result = attr(*args, **kwargs)
            if hasattr(result, "__anext__"):
                return portal.iterate(result)
            if inspect.isawaitable(result):
                return portal.call(lambda: result)
            return result

        return blocking


def _has_async_methods(obj: Any) -> bool:
    return any(
        inspect.iscoroutinefunction(getattr(type(obj), name, None))
        or inspect.isasyncgenfunction(getattr(type(obj), name, None))
        for name in dir(type(obj))
        if not name.startswith("_")
    )
