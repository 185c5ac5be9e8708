"""Straight-line row loop generated per entity: the fast path of ``EntityMapping.map_rows``.

``build_loop`` writes Python source for one entity from its compiled fields and
``exec``s it once. The generated loop handles the common row: a text ERP key seen for
the first time, every field valid, every reference known and not quarantined, a natural
key when one is needed, and no children (entities with children always use the slow
path). Plain text columns (trim or collapse, case, length, e-mail and pattern rules) are
checked inline on ASCII input; other input and every other field call the field's
existing closure, memoized per call on the raw column text (lookups, dates, numbers and
references repeat across rows). At the first sign of a problem, or of anything the
inline code does not decide itself (a non-printable character, a duplicate key, an
unkeyed row), the whole row is handed to ``slow(row, total)``, the per-field path that
builds the precise quarantine entries, before anything has been recorded for it. So the
results are those of the slow path alone (tests/core/test_mapping_fastpath.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from sys import intern
from typing import Any

from sync.core import keys as _keys
from sync.core.mapping.transforms import CACHE_MAX, EMAIL_RE, Invalid
from sync.core.records import MAX_KEY_LENGTH, Desired, field_names

# (rows, seen, desired, nat_seen, nat_twice, slow, flt, refsets, caches) -> (total, filtered)
LoopFn = Callable[..., tuple[int, int]]


class _Bail(Exception):
    """The row needs the slow path."""


_MISS = object()  # not memoized yet


class _ReadOnlyDict(dict[str, list[dict[str, Any]]]):
    """A dict that refuses changes: the one empty ``children`` every record without children
    shares. Still a ``dict`` (JSON, ``==``, ``isinstance`` as before); a change raises."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kw: Any) -> Any:
        raise TypeError("NO_CHILDREN is shared by every record without children: copy it (dict(...)) first")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict[str, list[dict[str, Any]]]:
        return {}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, list[dict[str, Any]]]:
        return {}

    def __reduce__(self) -> Any:
        return (dict, ())


# One shared empty children mapping for rows without children: a fresh ``{}`` per row costs
# 64 bytes x rows (64 MB at a million rows). Read-only, as it is shared by every such record.
NO_CHILDREN: dict[str, list[dict[str, Any]]] = _ReadOnlyDict()


def build_loop(
    *,
    platform: str,
    entity: str,
    key_col: str,
    hash_cols: Sequence[str],
    salt: bytes = b"",
    fields: Sequence[Any],  # CompiledField
    refs: Sequence[tuple[str, str]],  # (field name, target entity), self-references excluded
    natural_key: Sequence[str],
    unkeyed_forbidden: bool,
    has_filter: bool,
) -> tuple[LoopFn, str, int]:
    """The generated loop function, its source (kept for debugging) and its number of caches."""
    ns: dict[str, Any] = {
        "G_Desired": Desired,
        "G_NO_CHILDREN": NO_CHILDREN,
        "G_blake": hashlib.blake2b,
        "G_salt": salt,
        "G_intern": intern,
        "G_Invalid": Invalid,
        "G_Bail": _Bail,
        "G_MISS": _MISS,
        "G_MAX": CACHE_MAX,
        "G_email": EMAIL_RE.match,
        "G_platform": platform,
        "G_entity": entity,
    }
    locals_ = ["Desired", "blake", "salt", "intern", "MISS", "MAX", "email", "platform", "entity"]
    ref_index = {name: i for i, (name, _) in enumerate(refs)}

    cols: dict[str, str] = {}  # ERP column → local variable

    def col(name: str) -> str:
        if name not in cols:
            cols[name] = f"c{len(cols)}"
        return cols[name]

    col(key_col)
    for c in hash_cols:
        col(c)

    body: list[str] = []  # inside the try, 3 levels of indentation
    n_caches = 0
    out: list[tuple[str, str, bool]] = []  # (field name, value variable, never None)
    for i, f in enumerate(fields):
        spec = f.spec
        v = f"v{i}"
        fn = f"fn{i}"
        ns[f"G_{fn}"] = f.fn
        locals_.append(fn)
        ri = ref_index.get(f.name)
        if spec is None or f.fn is None:
            raise ValueError(f"field {f.name} has no spec")
        if spec.has_constant:
            value = f.fn({})
            ns[f"G_k{i}"] = value
            locals_.append(f"k{i}")
            body.append(f"{v} = k{i}")
            if ri is not None:
                body.extend(_ref_check(v, ri, ""))
            out.append((f.name, v, False))
            continue
        inline_text = (
            f.column is not None
            and ri is None
            and spec.type == "string"
            and spec.lookup is None
            and not spec.has_default
        )
        if inline_text:
            c = col(f.column)
            trim = f"' '.join({c}.split())" if spec.spaces == "collapse" else f"{c}.strip()"
            lines = [
                f"if {c}.__class__ is str and {c}.isascii():",
                f"    {v} = {trim}",
                f"    if {v}:",
            ]
            if spec.case:
                lines.append(f"        {v} = {v}.{spec.case}()")
            lines.append(f"        if not {v}.isprintable(): raise Bail")
            if spec.max_length is not None:
                lines.append(f"        if len({v}) > {int(spec.max_length)}: raise Bail")
            if spec.min_length is not None:
                lines.append(f"        if len({v}) < {int(spec.min_length)}: raise Bail")
            if spec.format == "email":
                lines.append(f"        if email({v}) is None: raise Bail")
            if spec.pattern:
                ns[f"G_re{i}"] = re.compile(spec.pattern).fullmatch
                locals_.append(f"re{i}")
                lines.append(f"        if re{i}({v}) is None: raise Bail")
            lines.append("    else:")
            lines.append("        raise Bail" if spec.required else f"        {v} = None")
            lines.append(f"elif {c} is None:")
            lines.append("    raise Bail" if spec.required else f"    {v} = None")
            lines.append("else:")
            lines.append(f"    {v} = {fn}(row)")
            body.extend(lines)
            out.append((f.name, v, bool(spec.required)))
            continue
        if f.column is not None:
            # A pure function of one column: memoize on the column text (per call: the
            # reference checks depend on the context).
            c = col(f.column)
            cache = f"m{n_caches}"
            n_caches += 1
            lines = [
                f"if {c}.__class__ is str:",
                f"    {v} = {cache}.get({c}, MISS)",
                f"    if {v} is MISS:",
                f"        {v} = {fn}(row)",
            ]
            if ri is not None:
                lines.extend(_ref_check(v, ri, "        "))
            lines += [
                f"        if len({cache}) >= MAX: {cache}.clear()",
                f"        {cache}[{c}] = {v}",
                "else:",
                f"    {v} = {fn}(row)",
            ]
            if ri is not None:
                lines.extend(_ref_check(v, ri, "    "))
            body.extend(lines)
        else:
            body.append(f"{v} = {fn}(row)")
            if ri is not None:
                body.extend(_ref_check(v, ri, ""))
        out.append((f.name, v, False))

    # The field values in field order, None values left out (a record of another shape
    # takes its shared name tuple from ``field_names``), then the natural key in priority
    # order: a single key field folds its value (``fields.get`` ≡ the variable), a
    # composite one reads the record's fields as a dict.
    names_all = tuple(name for name, _, _ in out)
    ns["G_NAMES"] = field_names(names_all)
    ns["G_field_names"] = field_names
    locals_ += ["NAMES", "field_names"]
    build = ["vals = (" + "".join(f"{v}, " for _, v, _ in out) + ")"]
    maybe_none = [v for _, v, sure in out if not sure]
    if maybe_none:
        build.append(f"if {' or '.join(f'{v} is None' for v in maybe_none)}:")
        build.append("    names = field_names(tuple([n for n, x in zip(NAMES, vals) if x is not None]))")
        build.append("    vals = tuple([x for x in vals if x is not None])")
        build.append("else:")
        build.append("    names = NAMES")
    else:
        build.append("names = NAMES")
    by_name = {name: v for name, v, _ in out}
    if natural_key:
        build.append("kv = ()")
        for j, kf in enumerate(natural_key):
            if "+" in kf:
                ns[f"G_nk{j}"] = _keys.key_function((kf,))
                locals_.append(f"nk{j}")
                build.append(f"kv += nk{j}(dict(zip(names, vals)))")
                continue
            ns[f"G_fold{j}"] = _keys._FOLDERS.get(kf, _keys.fold)
            locals_.append(f"fold{j}")
            build.append(f"n{j} = fold{j}({by_name.get(kf, 'None')})")
            build.append(f"if n{j} is not None: kv += (({kf!r}, n{j}),)")
        if unkeyed_forbidden:
            build.append("if not kv: raise Bail")

    hash_expr = 'f"' + "\\x1f".join(f"{{{col(c)}!s}}" for c in hash_cols) + '"'
    ind = "            "
    src = ["def loop(rows, seen, desired, nat_seen, nat_twice, slow, flt, refsets, caches):"]
    src += [f"    {name} = G_{name}" for name in locals_]
    src.append("    Bail = G_Bail")
    src.append("    Invalid = G_Invalid")
    for i in range(len(refs)):
        src.append(f"    valid{i}, quar{i} = refsets[{i}]")
    for i in range(n_caches):
        src.append(f"    m{i} = caches[{i}]")
    src.append("    seen_add, append, packed = seen.add, desired.append, Desired.packed")
    src.append("    total = filtered = 0")
    src.append("    for row in rows:")
    src.append("        total += 1")
    if has_filter:
        src.append("        if not flt(row):")
        src.append("            filtered += 1")
        src.append("            continue")
    src.append("        try:")
    for c, var in cols.items():
        src.append(f"{ind}{var} = row.get({c!r})")
    k = cols[key_col]
    src.append(f"{ind}if {k}.__class__ is not str: raise Bail")
    src.append(f"{ind}key = {k}.strip()")
    src.append(
        f"{ind}if not key or key in seen or not key.isprintable() or len(key) > {MAX_KEY_LENGTH}: raise Bail"
    )
    # Interned so the state store's copy of the same ERP key (load_bases) is one object.
    src.append(f"{ind}key = G_intern(key)")
    src += [ind + line for line in body]
    src += [ind + line for line in build]
    src.append("        except (Invalid, Bail):")
    src.append("            slow(row, total)")
    src.append("            continue")
    # surrogatepass: a lone surrogate (a JSON export's "\udcff") must not raise here, outside
    # the try; the field that holds it is quarantined as ``invalid_text`` by its closure.
    src.append(
        f"        h = blake({hash_expr}.encode('utf-8', 'surrogatepass'), digest_size=16, salt=salt).digest()"
    )
    src.append("        seen_add(key)")
    if natural_key:  # collisions are found from hashes (``reference._drop_collisions``)
        src.append("        for nat in kv:")
        src.append("            nh = hash(nat)")
        src.append("            if nh in nat_seen: nat_twice.add(nh)")
        src.append("            else: nat_seen.add(nh)")
    src.append("        append(packed(platform, entity, key, names, vals, G_NO_CHILDREN, h))")
    src.append("    return total, filtered")
    source = "\n".join(src) + "\n"
    code = compile(source, f"<erpsync mapping {platform}.{entity}>", "exec")
    exec(code, ns)
    fn_out: LoopFn = ns["loop"]
    return fn_out, source, n_caches


def _ref_check(v: str, i: int, indent: str) -> list[str]:
    """Intern a reference and bail unless its target is known and not quarantined."""
    return [
        f"{indent}if {v} is not None:",
        f"{indent}    if {v}.__class__ is str: {v} = intern({v})",
        f"{indent}    if {v} in quar{i} or (valid{i} is not None and {v} not in valid{i}): raise Bail",
    ]
