"""The private httpx hooks the clients use, in one place, each detected and with a public fallback.

httpx's public API covers everything the clients do; three private hooks make the hot path
cheaper (measured with ``bench/clients.py``). Each is checked before use, so an httpx release
that renames or drops one costs CPU, never correctness:

- ``AsyncClient._transport_for_url(url)``: the transport httpx picked for a URL (its own, or a
  proxy's mount from ``proxy=`` / ``HTTP(S)_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``). Sending on
  it directly skips ``AsyncClient.send``'s auth flow, redirect loop, cookie extraction and event
  hooks, none of which the clients use. Fallback: ``AsyncClient.send(request, stream=True)``.
- ``URL._uri_reference``: the parsed form of a URL; a request URL under a plain base URL is made
  by replacing its path and query instead of re-parsing the whole URL text. Fallback:
  ``httpx.URL(text, params=query)``. The hook is probed once against the public construction
  (same ``str`` and ``raw_path``) before it is trusted.
- ``Response._content``: an already read identity body handed to ``httpx.Response`` as its
  content (httpx would otherwise copy it through three iterators). Fallback: the body stays the
  response's stream and ``aread`` reads it as usual.

Tested on httpx 0.28 and 0.29 (``tests/clients/test_transport_stock.py`` also runs the clients
with every hook taken away).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import httpx

__all__ = [
    "content_hook_available",
    "plain_url_joiner",
    "send_function",
    "set_content",
    "transport_for_url",
    "transport_for_url_available",
]

# Attribute names, module-level so a test can point them elsewhere (a hook gone missing).
TRANSPORT_FOR_URL = "_transport_for_url"
URI_REFERENCE = "_uri_reference"
CONTENT = "_content"

SendFn = Callable[[httpx.Request], Any]  # async: request -> streamed response


def transport_for_url_available(client: httpx.AsyncClient) -> bool:
    return callable(getattr(client, TRANSPORT_FOR_URL, None))


def transport_for_url(client: httpx.AsyncClient, url: httpx.URL) -> httpx.AsyncBaseTransport | None:
    """The transport ``client`` sends ``url`` through (a proxy's or its own); None without the hook."""
    pick = getattr(client, TRANSPORT_FOR_URL, None)
    if not callable(pick):
        return None
    transport = pick(url)
    return transport if isinstance(transport, httpx.AsyncBaseTransport) else None


def send_function(client: httpx.AsyncClient) -> Callable[[httpx.Request], Any]:
    """An async ``send(request) -> httpx.Response`` (streamed, not read) for ``client``:
    straight to the transport httpx chose for the URL when the hook exists, else through
    ``AsyncClient.send`` (same transports, same proxies, a little more CPU)."""
    pick = getattr(client, TRANSPORT_FOR_URL, None)
    if callable(pick):

        async def direct(request: httpx.Request) -> httpx.Response:
            transport = pick(request.url)
            response: httpx.Response = await transport.handle_async_request(request)
            response.request = request
            return response

        return direct

    async def public(request: httpx.Request) -> httpx.Response:
        return await client.send(request, stream=True)

    return public


@functools.cache
def _uri_reference_works(attr: str) -> bool:
    """Whether ``URL.<attr>`` behaves as httpx 0.28's ``_uri_reference`` (a namedtuple-like
    value with ``path``/``query``/``fragment`` and ``_replace``, read back by ``str(url)``)."""
    try:
        base = httpx.URL("https://probe.example:8443/api/v1")
        ref = getattr(base, attr)
        url = httpx.URL(base)
        setattr(url, attr, ref._replace(path=ref.path + "/things/a%20b", query="x=1&y=%C3%A9"))
        expected = httpx.URL("https://probe.example:8443/api/v1/things/a%20b", params={"x": "1", "y": "é"})
        return (
            ref.query is None
            and ref.fragment is None
            and str(url) == str(expected)
            and url.raw_path == expected.raw_path
            and url.raw_host == expected.raw_host
        )
    except Exception:  # any change in shape: use the public construction
        return False


def plain_url_joiner(base: httpx.URL) -> Callable[[str, Mapping[str, Any] | None], httpx.URL] | None:
    """``join(path, query) -> httpx.URL`` for a plain base (no query or fragment; the caller
    checks that ``path`` is plain too), or ``None`` when the hook is missing or the base is not
    plain: the caller then builds ``httpx.URL(text, params=query)``."""
    attr = URI_REFERENCE
    if not _uri_reference_works(attr):
        return None
    ref = getattr(base, attr)
    if ref.query is not None or ref.fragment is not None:
        return None
    prefix = ref.path or ""
    if prefix.endswith("/"):
        prefix = prefix[:-1]

    def join(path: str, query: Mapping[str, Any] | None) -> httpx.URL:
        url = httpx.URL(base)
        text = str(httpx.QueryParams(query)) if query else None
        setattr(url, attr, ref._replace(path=prefix + path, query=text))
        return url

    return join


@functools.cache
def _content_works(attr: str) -> bool:
    try:
        response = httpx.Response(200, stream=httpx.ByteStream(b"streamed"))
        setattr(response, attr, b"probe")
        return response.content == b"probe" and response.is_closed is False
    except Exception:
        return False


def content_hook_available() -> bool:
    return _content_works(CONTENT)


def set_content(response: httpx.Response, body: bytes) -> bool:
    """Give ``response`` its already read identity body; False (nothing done) without the hook."""
    if not _content_works(CONTENT):
        return False
    setattr(response, CONTENT, body)
    return True
