"""What the configuration and mapping models accept, for messages: the keys valid at a
place in a file and a did-you-mean for a misspelt one. Pure (no I/O).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of an annotation (``X | None`` -> [X]; ``Annotated[X, ...]`` -> [X])."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unwrap(arg) if a is not type(None)]
    return [annotation]


def _step(annotation: Any, part: str | int) -> Any | None:
    """The annotation one step into ``annotation`` by key or index ``part``."""
    for alt in _unwrap(annotation):
        origin = typing.get_origin(alt)
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            for name, info in alt.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        elif origin in (dict, typing.Mapping) or (
            isinstance(origin, type) and issubclass(origin, typing.Mapping)
        ):
            args = typing.get_args(alt)
            return args[1] if len(args) == 2 else None
        elif origin in (list, tuple, set, frozenset) or (
            isinstance(origin, type) and issubclass(origin, Sequence)
        ):
            args = typing.get_args(alt)
            return args[0] if args else None
    return None


def model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that holds the key at ``loc`` (its last part), or ``None``."""
    annotation: Any = root
    for part in loc[:-1]:
        nxt = _step(annotation, part)
        if nxt is None:  # a union branch label pydantic adds to the location ("FieldSpec")
            branch = [a for a in _unwrap(annotation) if getattr(a, "__name__", None) == part]
            if not branch:
                return None
            nxt = branch[0]
        annotation = nxt
    for alt in _unwrap(annotation):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            return alt
    return None


def keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a file may use for ``model`` (aliases where set)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one choice is close to ``word``, else ``""``."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def unknown_key_message(root: type[BaseModel], loc: Sequence[str | int]) -> str:
    """``unknown key`` with the close valid one, or the list of valid ones when none is close."""
    model = model_at(root, loc)
    if model is None or not loc:
        return "unknown key"
    valid = keys_of(model)
    hint = did_you_mean(str(loc[-1]), valid)
    return "unknown key" + (hint or f" (valid here: {', '.join(sorted(valid))})")
