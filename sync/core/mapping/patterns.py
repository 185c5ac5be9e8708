"""Refuse ``pattern:`` rules that can backtrack exponentially, when the mapping file loads.

Why at load time and not a match timeout: the rule is matched with Python's ``re`` once per
ERP row, in the hot mapping loop, and ``re`` cannot be interrupted. A pattern such as
``(a+)+$`` takes seconds on 26 characters and minutes on 30, so one hostile or unlucky
value would stall a whole run. Catastrophic backtracking needs a repeated part that can
match the same text in more than one way, so two shapes are refused in the body of a
quantifier that repeats (``*``, ``+``, ``{n,}``, ``{n,m}`` with m > 1):

- a quantifier of variable count whose characters can also start what follows it, in the
  same iteration or the next: ``(a+)+``, ``(a*)*``, ``(\\d+\\.?)+``, ``(.*a){10}``; while
  ``(-\\d+)*`` is accepted, since a ``-`` always ends the digits;
- an alternation whose branches can start with the same character or match nothing:
  ``(a|ab)+``, ``(x|)+``.

The check is conservative (a safe pattern of these shapes is refused too, with a message
saying how to write it: an atomic group ``(?>…)`` or a possessive quantifier ``a++``, which
never backtrack, or a character class). It is not a proof: polynomial cases such as
``\\d+\\d+`` pass, and are bounded by the value lengths the mapping allows.
"""

from __future__ import annotations

import re
import re._constants as C  # the parser's own opcode names (re._parser: no public API)
import re._parser as P
from collections.abc import Callable
from typing import Any

_Pred = Callable[[str], bool]
# Characters a first-character set is probed with: ASCII plus a few from other scripts.
_PROBE = [chr(i) for i in range(128)] + list("éЖж١²٣_ \u00a0\u2028")
_CATEGORY: dict[Any, _Pred] = {
    C.CATEGORY_DIGIT: str.isdecimal,
    C.CATEGORY_NOT_DIGIT: lambda c: not c.isdecimal(),
    C.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    C.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    C.CATEGORY_SPACE: str.isspace,
    C.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
}
_REPEATS = (C.MAX_REPEAT, C.MIN_REPEAT)
HINT = (
    "it can take exponential time on some values; rewrite it so the repeated part matches a "
    "text one way only (a character class, an atomic group (?>...) or a possessive quantifier like a++)"
)


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is refused, or None when it has no catastrophic-backtracking shape."""
    try:
        tree = P.parse(pattern)
    except (re.error, RecursionError):
        return None  # an invalid pattern is reported by the field's own validation
    found = _walk(list(tree))
    return f"{found}: {HINT}" if found else None


def _walk(items: list[tuple[Any, Any]]) -> str | None:
    """Check the body of every quantifier that repeats, at any depth."""
    for op, av in items:
        found: str | None = None
        if op in _REPEATS:
            if av[1] > 1:
                found = _body_problem(_inline(list(av[2])))
            found = found or _walk(list(av[2]))
        elif op is C.SUBPATTERN:
            found = _walk(list(av[3]))
        elif op is C.BRANCH:
            for branch in av[1]:
                found = found or _walk(list(branch))
        elif op in (C.ASSERT, C.ASSERT_NOT):
            found = _walk(list(av[1]))
        elif op is C.GROUPREF_EXISTS:
            found = _walk(list(av[1])) or (_walk(list(av[2])) if av[2] else None)
        # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack into their content: safe.
        if found:
            return found
    return None


def _inline(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """A sequence with its groups opened up (a group matches like its content in sequence)."""
    out: list[tuple[Any, Any]] = []
    for op, av in items:
        if op is C.SUBPATTERN:
            out.extend(_inline(list(av[3])))
        else:
            out.append((op, av))
    return out


def _body_problem(body: list[tuple[Any, Any]]) -> str | None:
    """A repeated body is ambiguous when one text splits between its parts in several ways."""
    for i, (op, av) in enumerate(body):
        if op is C.BRANCH and _overlap(av[1]):
            return "an alternation inside a repeated group whose branches can match the same text"
        if op in _REPEATS and av[0] != av[1]:
            # what the variable part consumes must differ from what can come right after it,
            # in this iteration or (wrapping around) the next one
            own = _first_seq(list(av[2]))
            after = _first_seq(body[i + 1 :] + body)
            if own is None or after is None or _meet(own, after):
                return "a quantifier inside a repeated group"
    return None


def _meet(a: _Pred, b: _Pred) -> bool:
    return any(a(c) and b(c) for c in _PROBE)


def _overlap(branches: list[Any]) -> bool:
    firsts = []
    for branch in branches:
        items = list(branch)
        first = _first_seq(items)
        if first is None or _nullable_seq(items):
            return True
        firsts.append(first)
    return any(_meet(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1 :])


def _nullable_seq(items: list[tuple[Any, Any]]) -> bool:
    return all(_nullable(op, av) for op, av in items)


def _nullable(op: Any, av: Any) -> bool:
    if op in _REPEATS:
        return av[0] == 0 or _nullable_seq(list(av[2]))
    if op is C.SUBPATTERN:
        return _nullable_seq(list(av[3]))
    if op is C.BRANCH:
        return any(_nullable_seq(list(b)) for b in av[1])
    return op not in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN)


def _first_seq(items: list[tuple[Any, Any]]) -> _Pred | None:
    """The characters a sequence can start with (an all-optional one: any of its parts'); None: unknown."""
    preds: list[_Pred] = []
    for op, av in items:
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            continue  # zero-width
        pred = _first(op, av)
        if pred is None:
            return None
        preds.append(pred)
        if not _nullable(op, av):
            break
    return lambda c: any(p(c) for p in preds)


def _first(op: Any, av: Any) -> _Pred | None:
    if op is C.LITERAL:
        return _eq(chr(av))
    if op is C.NOT_LITERAL:
        return _ne(chr(av))
    if op is C.ANY:
        return lambda c: True
    if op is C.IN:
        return _in(av)
    if op is C.SUBPATTERN:
        return _first_seq(list(av[3]))
    if op in _REPEATS or op in (C.POSSESSIVE_REPEAT,):
        return _first_seq(list(av[2]))
    if op is C.ATOMIC_GROUP:
        return _first_seq(list(av))
    if op is C.BRANCH:
        preds = [_first_seq(list(b)) for b in av[1]]
        if any(p is None for p in preds):
            return None
        return lambda c: any(p(c) for p in preds if p is not None)
    return None


def _eq(ch: str) -> _Pred:
    return lambda c: c == ch


def _ne(ch: str) -> _Pred:
    return lambda c: c != ch


def _between(lo: int, hi: int) -> _Pred:
    return lambda c: lo <= ord(c) <= hi


def _in(members: list[tuple[Any, Any]]) -> _Pred | None:
    negate = False
    preds: list[_Pred] = []
    for op, av in members:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            preds.append(_eq(chr(av)))
        elif op is C.RANGE:
            preds.append(_between(av[0], av[1]))
        elif op is C.CATEGORY and av in _CATEGORY:
            preds.append(_CATEGORY[av])
        else:
            return None
    if negate:
        return lambda c: not any(p(c) for p in preds)
    return lambda c: any(p(c) for p in preds)
