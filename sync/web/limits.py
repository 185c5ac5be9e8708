"""JSON bodies from the network: a nesting cap checked before parsing.

``json.loads`` recurses once per level; a small body of ``[[[[…`` raises ``RecursionError``
(a 500 and a traceback) or, below the recursion limit, builds a deep structure that later
code walks recursively. Counting brackets outside strings first costs one pass over a
body whose size is already capped, and lets the caller answer a plain 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


class TooDeep(ValueError):
    pass


def nesting_depth(body: bytes) -> int:
    """The deepest ``[``/``{`` nesting of ``body``, brackets inside strings ignored."""
    depth = deepest = 0
    for byte in _STRING.sub(b'""', body):
        if byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def loads_capped(body: bytes, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` that raises ``TooDeep`` (a ``ValueError``) past ``max_depth`` levels."""
    if nesting_depth(body) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(body, **kwargs)
    except RecursionError:  # belt and braces: never a 500
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None
