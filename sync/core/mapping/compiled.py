"""Compiled mappings: ERP rows → ``Desired`` records plus quarantine entries (pure).

``map_rows`` is the hot loop of a full reconcile. Per row it runs the filter closures,
the field closures (``transforms.compile_field``), the reference checks against the
``MapContext`` and the natural-key fold; whole-batch checks (duplicate ERP keys,
natural-key collisions, self-references) run once at the end, so the rows themselves
can come from a lazy iterator.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from sys import intern
from typing import Any

from sync.core.keys import fold, key_function
from sync.core.mapping.codegen import NO_CHILDREN, LoopFn, build_loop
from sync.core.mapping.spec import ChildSpec, EntitySpec, FieldSpec, FilterSpec, template_names
from sync.core.mapping.transforms import (
    INVALID_TEXT,
    FieldFn,
    Invalid,
    Row,
    canon_text,
    column_fn,
    compile_field,
    concat_fn,
    has_surrogates,
    inverse_fn,
    key_text,
    strip_controls,
    template_fn,
)
from sync.core.records import (
    MAX_KEY_LENGTH,
    Desired,
    EntityPolicy,
    FieldPolicy,
    Platform,
    QuarantineEntry,
    field_names,
)
from sync.redact import MASK, mask_value_in

_VALUE_CHARS = 200  # quarantine values are cut to this length
_SEP = "\x1f"  # between hashed column values


@dataclass(slots=True)
class MapContext:
    """What map_rows needs to know about *other* entities of the same platform.

    ``valid_keys[entity]``: ERP keys that mapped fine; a reference to a key outside the
    set is dangling. An entity absent from the dict is not checked (e.g. an event-driven
    sync of a few rows that did not read the referenced table). ``quarantined[entity]``:
    ERP keys in quarantine; referencing one quarantines the row, naming the parent.
    ``child_rows[child]``: raw child rows grouped by parent ERP key
    (``EntityMapping.group_child_rows``). ``held[entity]``: ERP key → row hash of records
    the platform rejected at an earlier apply (stage ``apply``); while a row's hash is
    unchanged it stays held, so ``record`` counts it as quarantined and the records that
    reference it are quarantined too (``reference_quarantined``), instead of being planned
    and deferred at every apply. ``record`` fills the first two from a result.
    """

    valid_keys: dict[str, Collection[str]] = field(default_factory=dict)
    quarantined: dict[str, Collection[str]] = field(default_factory=dict)
    child_rows: dict[str, Mapping[str, Sequence[Row]]] = field(default_factory=dict)
    held: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def record(self, entity: str, result: MapResult) -> None:
        self.valid_keys[entity] = {d.erp_key for d in result.desired}
        quarantined = {q.erp_key for q in result.quarantine if not q.child_only}
        held = self.held.get(entity)
        if held:
            quarantined.update(
                d.erp_key for d in result.desired if d.erp_hash and held.get(d.erp_key) == d.erp_hash
            )
        self.quarantined[entity] = quarantined


@dataclass(slots=True)
class MapResult:
    """Mapped rows. Quarantined keys are *present* in the ERP: never infer a delete from them."""

    desired: list[Desired] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    rows: int = 0  # rows read
    filtered: int = 0  # rows skipped by the entity's filter (treated as absent from the ERP)


@dataclass(frozen=True, slots=True)
class CompiledField:
    name: str
    fn: FieldFn
    policy: FieldPolicy
    columns: tuple[str, ...]  # ERP columns read (for the row hash)
    column: str | None  # the single `from` column when the field is invertible
    inverse: Callable[[Any], Any] | None
    spec: FieldSpec | None = None  # what the fast path (``codegen``) compiles inline


def _filter_fn(spec: FilterSpec) -> Callable[[Row], bool]:
    col = spec.field
    ops = spec.model_fields_set - {"field"}
    op = next(iter(ops))
    if op == "not_null":
        return lambda row: canon_text(row.get(col)) not in (None, "")
    if op == "is_null":
        return lambda row: canon_text(row.get(col)) in (None, "")
    if op == "equals":
        want = canon_text(spec.equals)
        return lambda row: canon_text(row.get(col)) == want
    if op == "not_equals":
        avoid = canon_text(spec.not_equals)
        return lambda row: canon_text(row.get(col)) != avoid
    values = frozenset(canon_text(v) for v in (spec.in_ if op == "in_" else spec.not_in) or ())
    if op == "in_":
        return lambda row: canon_text(row.get(col)) in values
    return lambda row: canon_text(row.get(col)) not in values


def _all(filters: Sequence[Callable[[Row], bool]]) -> Callable[[Row], bool] | None:
    if not filters:
        return None
    if len(filters) == 1:
        return filters[0]
    return lambda row: all(f(row) for f in filters)


def compile_fields(
    specs: Mapping[str, FieldSpec], lookups: Mapping[str, Mapping[str, Any]], refs: Mapping[str, str]
) -> list[CompiledField]:
    out = []
    for name, spec in specs.items():
        columns: tuple[str, ...]
        column: str | None = None
        if spec.has_constant:
            extract: FieldFn = _const(spec.constant)
            columns = ()
        elif spec.template is not None:
            names = template_names(spec.template)
            extract, columns = template_fn(spec.template, names), tuple(names)
        elif spec.concat is not None:
            extract, columns = concat_fn(spec.concat, spec.sep), tuple(spec.concat)
        else:
            column = spec.from_ or name
            extract, columns = column_fn(column), (column,)
        table = lookups[spec.lookup] if isinstance(spec.lookup, str) else spec.lookup
        fn = compile_field(
            name,
            extract=extract,
            column=column,
            spaces=spec.spaces,
            case=spec.case,
            lookup=table,
            lookup_default=spec.lookup_default,
            has_lookup_default=spec.has_lookup_default,
            default=spec.default,
            has_default=spec.has_default,
            type_=spec.type,
            precision=spec.precision,
            date_format=spec.date_format,
            required=spec.required,
            max_length=spec.max_length,
            min_length=spec.min_length,
            minimum=spec.min,
            maximum=spec.max,
            email=spec.format == "email",
            pattern=spec.pattern,
            constant=spec.has_constant,
        )
        policy = FieldPolicy(
            name=name,
            direction=spec.direction,
            conflict=spec.conflict,
            ref=spec.ref or refs.get(name),
            sensitive=spec.sensitive,
        )
        inverse = None
        if spec.direction != "push":
            inverse = inverse_fn(type_=spec.type, date_format=spec.date_format, lookup=table)
        out.append(CompiledField(name, fn, policy, columns, column, inverse, spec))
    return out


def _const(value: Any) -> FieldFn:
    return lambda row: value


# Personal data shown only in part in quarantine entries (their mapping need not mark them
# ``sensitive``, which masks the whole value): enough to find the row, not to read it.
_PERSONAL = re.compile(
    r"cpf|cnpj|e_?mail|phone|telefone|celular|mobile|identification|document|passport|birth|nascimento"
    r"|(?:^|[_.])rg(?:$|[_.])|tax_?id|inn(?:$|[_.])",
    re.IGNORECASE,
)


def _partial(value: Any) -> str | None:
    """``jo*** (14 chars)``: the start of a personal value and its length."""
    if value is None:
        return None
    text = strip_controls(value if isinstance(value, str) else repr(value))
    return f"{text[:2]}{MASK} ({len(text)} chars)" if len(text) > 4 else MASK


def _show(value: Any, sensitive: bool) -> str | None:
    if value is None:
        return None
    if sensitive:
        return MASK
    text = strip_controls(value if isinstance(value, str) else repr(value))
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def entry_key(key: str) -> str:
    """An ERP key as a quarantine entry can hold it: lone surrogates escaped (UTF-8 must
    encode it) and a key over ``MAX_KEY_LENGTH`` cut, with a hash of the whole key so that
    two long keys sharing a prefix stay two entries."""
    if len(key) <= MAX_KEY_LENGTH and key.isprintable():
        return key
    shown = strip_controls(key)
    if len(shown) <= MAX_KEY_LENGTH:
        return shown
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return shown[: MAX_KEY_LENGTH - 18] + "…#" + digest


@dataclass(frozen=True, slots=True)
class ChildProblem:
    """One child row set aside (its parent syncs without it)."""

    row: int  # position among the parent's child rows of this collection, from 1
    field: str  # ``child.field``
    rule: str
    message: str
    value: Any
    key: tuple[str | None, ...] | None  # folded child key; None when the row's key is unreadable


def child_key(item: Mapping[str, Any], key: Sequence[str]) -> tuple[str | None, ...]:
    """A child's identity inside its parent, folded like natural keys (``M`` and ``m`` are one size)."""
    return tuple(fold(item.get(k)) for k in key)


@dataclass(slots=True)
class ChildMapping:
    name: str
    spec: ChildSpec
    fields: list[CompiledField]
    key: tuple[str, ...]
    filter: Callable[[Row], bool] | None
    columns: tuple[str, ...]

    def _row_key(self, row: Row) -> tuple[str | None, ...] | None:
        """The folded key of a rejected row, when its key fields map on their own."""
        item: dict[str, Any] = {}
        for f in self.fields:
            if f.name in self.key:
                try:
                    item[f.name] = f.fn(row)
                except Invalid:
                    return None
        ident = child_key(item, self.key)
        return None if all(v is None for v in ident) else ident

    def map(self, rows: Iterable[Row]) -> tuple[list[dict[str, Any]], list[ChildProblem]]:
        """Map one parent's child rows → (mapped items, rows set aside).

        A row that breaks a rule, and every row of a key that several rows share (case and
        spaces ignored, as for natural keys), is set aside alone: the parent keeps the rest.
        """
        out: list[dict[str, Any]] = []
        positions: list[int] = []
        problems: list[ChildProblem] = []
        by_key: dict[tuple[str | None, ...], list[int]] = {}
        for n, row in enumerate(rows, 1):
            if self.filter is not None and not self.filter(row):
                continue
            item: dict[str, Any] = {}
            try:
                for f in self.fields:
                    value = f.fn(row)
                    if value is not None:
                        item[f.name] = value
            except Invalid as exc:
                field_ = f"{self.name}.{exc.field}"
                problems.append(ChildProblem(n, field_, exc.rule, exc.message, exc.value, self._row_key(row)))
                continue
            by_key.setdefault(child_key(item, self.key), []).append(len(out))
            out.append(item)
            positions.append(n)
        if len(by_key) < len(out):
            drop: set[int] = set()
            for ident, idxs in by_key.items():
                if len(idxs) < 2:
                    continue
                drop.update(idxs)
                rows_ = ", ".join(str(positions[i]) for i in idxs)
                shown = " / ".join(repr(", ".join(str(out[i].get(k)) for k in self.key)) for i in idxs)
                msg = (
                    f"rows {rows_} share the key {'+'.join(self.key)} ({shown}; case and spaces are "
                    "ignored): all of them are set aside until one is renamed or removed"
                )
                field_ = f"{self.name}.{self.key[0]}"
                for i in idxs:
                    value = out[i].get(self.key[0])
                    problems.append(
                        ChildProblem(positions[i], field_, "duplicate_child_key", msg, value, ident)
                    )
            out = [item for i, item in enumerate(out) if i not in drop]
            problems.sort(key=lambda p: p.row)
        out.sort(key=lambda item: tuple(canon_text(item.get(k)) or "" for k in self.key))
        return out, problems


def mapping_salt(spec: EntitySpec, lookups: Mapping[str, Mapping[str, Any]]) -> bytes:
    """16 bytes that change when an entity's mapping (or a lookup table) changes."""
    text = spec.model_dump_json() + repr(sorted((k, repr(v)) for k, v in lookups.items()))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class EntityMapping:
    """One compiled platform entity: its policy, its row mapper and its write-back."""

    def __init__(
        self,
        platform: Platform,
        entity: str,
        spec: EntitySpec,
        *,
        natural_key: tuple[str, ...],
        level: int,
        refs: Mapping[str, str],
        lookups: Mapping[str, Mapping[str, Any]],
        unkeyed_forbidden: bool,
        file: str = "",
        marker: str | None = None,
    ) -> None:
        self.platform: Platform = platform
        self.entity = entity
        self.spec = spec
        self.file = file
        self.source_entity = spec.source
        self.erp_key_field = spec.key
        self.natural_key = natural_key
        self.level = level
        self.writable = spec.takes_edits  # ``writable``, implied by pull/both fields
        self.fields = compile_fields(spec.fields, lookups, refs)
        self.filter = _all([_filter_fn(f) for f in spec.filter])
        self.children = [self._compile_child(name, c, lookups) for name, c in spec.children.items()]
        self.self_ref: str | None = next(
            (f.name for f in self.fields if f.policy.ref == entity), None
        )  # the executor creates parents first: order by ``self_ref_depths``
        self._refs = tuple((f.name, f.policy.ref) for f in self.fields if f.policy.ref not in (None, entity))
        self._sensitive = frozenset(f.name for f in self.fields if f.policy.sensitive)
        cols = [spec.key, *(c for f in self.fields for c in f.columns)]
        self._hash_cols = tuple(dict.fromkeys(cols))
        self._columns: dict[str, str] | None = None  # field -> ERP column(s), built on first use
        # Salts every row hash: a row the platform rejected is held until its hash changes,
        # so a change of this entity's mapping (or its lookups) retries it too.
        self._salt = mapping_salt(spec, lookups)
        self._unkeyed_forbidden = unkeyed_forbidden or spec.derive_key is not None
        derive = spec.derive_key
        self._derive_field = derive.field if derive and derive.template else None
        self._derive_names = template_names(derive.template) if derive and derive.template else []
        self._derive_template = derive.template if derive else None
        # The generated fast loop (``codegen``), built on first use; ``fastpath = False``
        # maps every row through the per-field path (same results, slower).
        self.fastpath = True
        self._fast: tuple[LoopFn, str, int] | None = None
        self._policy = EntityPolicy(
            platform=platform,
            entity=entity,
            level=level,
            natural_key=natural_key,
            fields={f.name: f.policy for f in self.fields},
            delete=spec.delete,
            deactivate_field=(spec.deactivate_field or "active") if spec.delete == "deactivate" else None,
            children=tuple(c.name for c in self.children),
            child_fields={c.name: frozenset(f.name for f in c.fields) for c in self.children},
            writable=self.writable,
            marker=marker,
        )

    def __repr__(self) -> str:
        return f"EntityMapping({self.platform}.{self.entity} <- {self.source_entity}, level={self.level})"

    @staticmethod
    def _compile_child(name: str, spec: ChildSpec, lookups: Mapping[str, Mapping[str, Any]]) -> ChildMapping:
        fields = compile_fields(spec.fields, lookups, {})
        cols = tuple(dict.fromkeys(c for f in fields for c in f.columns))
        flt = _all([_filter_fn(f) for f in spec.filter])
        return ChildMapping(name, spec, fields, tuple(spec.key), flt, cols)

    # --- public interface ------------------------------------------------------------

    def policy(self) -> EntityPolicy:
        return self._policy

    @property
    def child_keys(self) -> dict[str, tuple[str, ...]]:
        """Fields identifying one child inside its parent (e.g. sizes by name, cards by shop_id)."""
        return {c.name: c.key for c in self.children}

    @property
    def child_sources(self) -> dict[str, tuple[str, str]]:
        """Child name → (ERP source entity, parent-key column), for children read separately."""
        return {
            c.name: (c.spec.source, c.spec.parent_key)
            for c in self.children
            if c.spec.source is not None and c.spec.parent_key is not None
        }

    def group_child_rows(self, child: str, rows: Iterable[Row]) -> dict[str, list[Row]]:
        """Group one child source's rows by parent ERP key (for ``MapContext.child_rows``)."""
        parent_col = next(c.spec.parent_key for c in self.children if c.name == child)
        grouped: dict[str, list[Row]] = {}
        for row in rows:
            key = key_text(row.get(parent_col or ""))
            if key is not None:
                grouped.setdefault(key, []).append(row)
        return grouped

    def to_erp(self, platform_fields: Mapping[str, Any]) -> dict[str, Any]:
        """ERP column values for the pull/both fields present in ``platform_fields``.

        Raises ``Invalid`` when a value cannot be reversed (e.g. not in a lookup table).
        """
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.inverse is None or f.column is None or f.name not in platform_fields:
                continue
            try:
                out[f.column] = f.inverse(platform_fields[f.name])
            except Invalid as exc:
                exc.field = f.name
                raise
            except (ValueError, TypeError) as exc:
                raise Invalid(f.name, "type", str(exc), platform_fields[f.name]) from None
        return out

    def row_hash(self, row: Row, children: Mapping[str, Sequence[Row]] | None = None) -> str:
        """Content hash of the columns this mapping reads (plus child rows).

        Cheaper than ``normalize.content_hash`` (no JSON) and blind to columns the mapping
        ignores, such as ``updated_at``: only a change that can alter the mapped record
        changes it.
        """
        text = _SEP.join(map(str, map(row.get, self._hash_cols)))
        if children:
            for child in self.children:
                rows = children.get(child.name)
                if rows:
                    text += child.name + repr(
                        sorted(_SEP.join(map(str, map(r.get, child.columns))) for r in rows)
                    )
        return hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), digest_size=16, salt=self._salt
        ).hexdigest()

    # --- mapping ---------------------------------------------------------------------

    def column_of(self, field_: str | None) -> str | None:
        """The ERP column(s) behind a platform field (``child.field`` for a child's)."""
        if not field_:
            return None
        if field_ == self.erp_key_field:
            return field_
        if self._columns is None:
            cols = {f.name: ", ".join(f.columns) for f in self.fields if f.columns}
            for c in self.children:
                cols.update({f"{c.name}.{f.name}": ", ".join(f.columns) for f in c.fields if f.columns})
            self._columns = cols
        return self._columns.get(field_)

    def _masking(self, field_: str | None) -> tuple[bool, bool]:
        """(sensitive: mask the whole value, personal: show only its start)."""
        base = field_.split(".", 1)[0] if field_ else None
        sensitive = base in self._sensitive or any(
            field_ == f"{c.name}.{f.name}" and f.policy.sensitive for c in self.children for f in c.fields
        )
        personal = not sensitive and bool(_PERSONAL.search(f"{field_ or ''} {self.column_of(field_) or ''}"))
        return sensitive, personal

    def _text(self, field_: str | None, message: str, value: Any) -> str:
        sensitive, personal = self._masking(field_)
        return mask_value_in(message, value) if sensitive or personal else message

    def _entry(
        self, key: str, field_: str | None, rule: str, message: str, value: Any, h: str
    ) -> QuarantineEntry:
        sensitive, personal = self._masking(field_)
        return QuarantineEntry(
            platform=self.platform,
            entity=self.entity,
            erp_key=entry_key(key),
            field=field_,
            rule=rule,
            message=self._text(field_, message, value),
            value=_partial(value) if personal else _show(value, sensitive),
            erp_hash=h,
            column=self.column_of(field_),
        )

    def _problems_entry(self, key: str, problems: list[Invalid], h: str) -> QuarantineEntry:
        """One entry for a row with every problem it has: the first one's field, rule and value;
        the message names the others (field, ERP column, rule, message) too."""
        first, rest = problems[0], problems[1:]
        entry = self._entry(key, first.field, first.rule, first.message, first.value, h)
        if not rest:
            return entry
        also = "; ".join(
            f"{p.field} (ERP column {self.column_of(p.field) or '?'}): {p.rule}: "
            f"{self._text(p.field, p.message, p.value)}"
            for p in rest
        )
        return replace(entry, message=f"{entry.message}; also {also}")

    def _slow_fields(self, row: Row) -> list[Invalid]:
        problems = []
        for f in self.fields:
            try:
                f.fn(row)
            except Invalid as exc:
                problems.append(exc)
        return problems

    def _fast_loop(self) -> tuple[LoopFn, str, int] | None:
        """The generated loop for this entity (``None`` for entities with children)."""
        if self.children or not self.fastpath:
            return None
        if self._fast is None:
            self._fast = build_loop(
                platform=self.platform,
                entity=self.entity,
                key_col=self.erp_key_field,
                hash_cols=self._hash_cols,
                salt=self._salt,
                fields=self.fields,
                refs=self._refs,
                natural_key=self.natural_key,
                unkeyed_forbidden=self._unkeyed_forbidden,
                has_filter=self.filter is not None,
            )
        return self._fast

    def map_rows(
        self, rows: Iterable[Row], context: MapContext | None = None, *, fast: bool = True
    ) -> MapResult:
        """Map ERP rows to desired records and quarantine entries. ``fast=False`` (or
        ``fastpath = False``) maps every row through the per-field reference path alone:
        ``sync.core.mapping.reference.reference_map_rows``; the results are the same."""
        ctx = context or MapContext()
        result = MapResult()
        desired, quarantine = result.desired, result.quarantine
        platform, entity = self.platform, self.entity
        flt = self.filter
        key_col = self.erp_key_field
        fns = [(f.name, f.fn) for f in self.fields]
        hash_cols = self._hash_cols
        blake, sep, salt = hashlib.blake2b, _SEP, self._salt
        nk = self.natural_key
        keyfn = key_function(nk) if nk else None
        refs = [
            (name, target, ctx.valid_keys.get(target), ctx.quarantined.get(target) or ())
            for name, target in self._refs
        ]
        children = [(c, ctx.child_rows.get(c.name), c.spec.column or c.name) for c in self.children]
        seen: set[str] = set()  # erp keys met (mapped or quarantined)
        dup_rows: dict[str, int] = {}
        # Natural keys are not kept per row (a million tuples of folded strings): only
        # their hashes, and the hashes met twice; ``_drop_collisions`` re-derives the keys
        # of the few records that can collide.
        nat_seen: set[int] = set()
        nat_twice: set[int] = set()

        def slow(row: Row, total: int) -> None:
            """One (filtered-in) row through the per-field path, with precise quarantine entries."""
            key = key_text(row.get(key_col))
            if key is None or key in seen:
                if key is None:
                    quarantine.append(
                        self._entry("", key_col, "missing_key", f"row {total} has no ERP key", None, "")
                    )
                else:
                    dup_rows[key] = dup_rows.get(key, 1) + 1
                return
            kids: dict[str, list[Row]] = {}
            if children:
                for child, grouped, column in children:
                    if child.spec.source is None:
                        embedded = row.get(column)
                        kids[child.name] = list(embedded) if isinstance(embedded, list) else []
                    else:
                        kids[child.name] = list(grouped.get(key, ())) if grouped else []
                h = self.row_hash(row, kids)
            else:
                text = sep.join(map(str, map(row.get, hash_cols)))
                h = blake(text.encode("utf-8", "surrogatepass"), digest_size=16, salt=salt).hexdigest()
            if "\x00" in key or not key.isprintable():
                if has_surrogates(key):
                    entry = self._entry(key, key_col, "invalid_text", "ERP key " + INVALID_TEXT, key, h)
                else:
                    entry = self._entry(key, key_col, "control_chars", "ERP key has control chars", key, h)
                quarantine.append(entry)
                seen.add(key)
                return
            if len(key) > MAX_KEY_LENGTH:
                msg = f"ERP key is {len(key)} characters long; erpsync keeps keys of up to {MAX_KEY_LENGTH}"
                quarantine.append(self._entry(key, key_col, "key_too_long", msg, key, h))
                seen.add(key)
                return
            try:
                fields = {}
                for name, fn in fns:
                    value = fn(row)
                    if value is not None:
                        fields[name] = value
            except Invalid:
                quarantine.append(self._problems_entry(key, self._slow_fields(row), h))
                seen.add(key)
                return
            bad = None
            for name, _target, valid, quarantined in refs:
                value = fields.get(name)
                if value is None:
                    continue
                if value.__class__ is str:
                    # References repeat a few target keys across many rows: share one string.
                    fields[name] = value = intern(value)
                if value in quarantined or (valid is not None and value not in valid):
                    bad = self._check_refs(key, fields, refs, h)
                    break
            if bad is not None:
                quarantine.append(bad)
                seen.add(key)
                return
            mapped_children: dict[str, list[dict[str, Any]]] = {}
            set_aside: list[tuple[ChildMapping, ChildProblem]] = []
            for child, _, _ in children:
                items, rejected = child.map(kids[child.name])
                mapped_children[child.name] = items
                set_aside.extend((child, p) for p in rejected)
            kv: tuple[tuple[str, str], ...] = ()
            if keyfn is not None:
                kv = keyfn(fields)
                if not kv and self._unkeyed_forbidden:
                    if self._derive_field is None:
                        rule = "unkeyed_employee" if entity == "employees" else "unkeyed"
                        msg = f"no {' or '.join(nk)} and key derivation is off"
                        quarantine.append(self._entry(key, nk[0], rule, msg, None, h))
                        seen.add(key)
                        return
                    fields[self._derive_field] = template_fn(
                        self._derive_template or "", self._derive_names, {"erp_key": key}
                    )(row)
                    kv = keyfn(fields)
            seen.add(key)
            for nat in kv:
                nh = hash(nat)
                if nh in nat_seen:
                    nat_twice.add(nh)
                else:
                    nat_seen.add(nh)
            if set_aside:
                quarantine.append(self._child_entry(key, set_aside, h))
            desired.append(
                Desired.packed(
                    platform,
                    entity,
                    key,
                    field_names(tuple(fields)),
                    tuple(fields.values()),
                    mapped_children or NO_CHILDREN,
                    bytes.fromhex(h),
                )
            )

        loop_fn = self._fast_loop() if fast else None
        if loop_fn is not None:
            # Valid rows straight through the generated loop; any other row goes to ``slow``.
            loop, _, n_caches = loop_fn
            refsets = [(valid, quarantined) for _, _, valid, quarantined in refs]
            caches: list[dict[Any, Any]] = [{} for _ in range(n_caches)]
            total, filtered = loop(rows, seen, desired, nat_seen, nat_twice, slow, flt, refsets, caches)
        else:
            total = filtered = 0
            for row in rows:
                total += 1
                if flt is not None and not flt(row):
                    filtered += 1
                    continue
                slow(row, total)

        result.rows, result.filtered = total, filtered
        seen.clear()
        nat_seen.clear()
        if dup_rows:
            self._drop_duplicates(result, dup_rows)
        if nk and nat_twice:
            self._drop_collisions(result, nat_twice)
        if self.self_ref is not None:
            self._check_self_refs(result, ctx)
        if self.children:  # one entry per row: a parent quarantined later drops its child entry
            whole = {q.erp_key for q in result.quarantine if not q.child_only}
            if whole:
                result.quarantine = [
                    q for q in result.quarantine if not (q.child_only and q.erp_key in whole)
                ]
        return result

    def _child_entry(
        self, key: str, set_aside: Sequence[tuple[ChildMapping, ChildProblem]], h: str
    ) -> QuarantineEntry:
        """One entry for the child rows of ``key`` set aside; the parent itself syncs."""
        first = set_aside[0][1]
        parts = [
            f"{c.name} row {p.row} ({p.field.split('.', 1)[1]}: {p.rule}: {p.message})"
            for c, p in set_aside[:5]
        ]
        more = f"; and {len(set_aside) - 5} more" if len(set_aside) > 5 else ""
        n = len(set_aside)
        msg = (
            f"{n} child row{'s' if n > 1 else ''} set aside, {self.entity} {key!r} syncs with the others "
            f"(the platform's own entries for those keys are left as they are): {'; '.join(parts)}{more}"
        )
        entry = self._entry(key, first.field, first.rule, msg, first.value, h)
        held = tuple(dict.fromkeys((c.name, c.key, p.key) for c, p in set_aside))
        return replace(entry, set_aside=held)

    def _check_refs(
        self,
        key: str,
        fields: Mapping[str, Any],
        refs: Sequence[tuple[str, str, Collection[str] | None, Collection[str]]],
        h: str,
    ) -> QuarantineEntry | None:
        for name, target, valid, quarantined in refs:
            value = fields.get(name)
            if value is None:
                continue
            if value in quarantined:
                msg = f"references {target} {value!r}, which is quarantined"
                return self._entry(key, name, "reference_quarantined", msg, value, h)
            if valid is not None and value not in valid:
                msg = f"references {target} {value!r}, which is not in the ERP data"
                return self._entry(key, name, "dangling_reference", msg, value, h)
        return None

    def _drop_duplicates(
        self,
        result: MapResult,
        dup_rows: Mapping[str, int],
    ) -> None:
        """Every row of a duplicated ERP key is quarantined: we cannot tell which one is right."""
        hashes = {d.erp_key: d.erp_hash for d in result.desired if d.erp_key in dup_rows}
        result.quarantine = [q for q in result.quarantine if q.erp_key not in dup_rows]
        for key, count in dup_rows.items():
            msg = f"{count} ERP rows share this key"
            result.quarantine.append(
                self._entry(key, self.erp_key_field, "duplicate_erp_key", msg, key, hashes.get(key, ""))
            )
        result.desired = [d for d in result.desired if d.erp_key not in dup_rows]

    def _drop_collisions(self, result: MapResult, twice: Collection[int]) -> None:
        """Two ERP rows on one platform natural key would both adopt one remote record.

        ``twice``: hashes of the natural keys met more than once while mapping; a key
        whose hash is not among them belongs to one row only.
        """
        keyfn = key_function(self.natural_key)
        owners: dict[tuple[str, str], str] = {}
        clashes: dict[str, tuple[str, str, str]] = {}  # erp key → (other key, field, value)
        for d in result.desired:
            for nat in keyfn(d.fields):
                if hash(nat) not in twice:
                    continue
                other = owners.setdefault(nat, d.erp_key)
                if other != d.erp_key:
                    clashes.setdefault(d.erp_key, (other, nat[0], nat[1]))
                    clashes.setdefault(other, (d.erp_key, nat[0], nat[1]))
        if not clashes:
            return
        kept = []
        for d in result.desired:
            clash = clashes.get(d.erp_key)
            if clash is None:
                kept.append(d)
                continue
            other, key_field, _ = clash
            field_ = key_field.split("+", 1)[0]
            msg = f"same {key_field} as ERP row {other!r} (case and spaces are ignored)"
            value = d.get(field_)
            result.quarantine.append(
                self._entry(d.erp_key, field_, "natural_key_collision", msg, value, d.erp_hash)
            )
        result.desired = kept

    def _check_self_refs(self, result: MapResult, ctx: MapContext) -> None:
        """Parents inside the batch (or known to the context) must exist and not be quarantined."""
        ref = self.self_ref
        assert ref is not None
        by_key = {d.erp_key: d for d in result.desired}
        outside = ctx.valid_keys.get(self.entity, ())
        quarantined = {q.erp_key for q in result.quarantine if not q.child_only}
        quarantined |= set(ctx.quarantined.get(self.entity, ()))
        held = ctx.held.get(self.entity)
        if held:  # a parent the platform rejected earlier holds its subtree too
            quarantined |= {
                d.erp_key for d in result.desired if d.erp_hash and held.get(d.erp_key) == d.erp_hash
            }
        bad: dict[str, QuarantineEntry] = {}
        changed = True
        while changed:  # a quarantined parent quarantines its whole subtree
            changed = False
            for d in result.desired:
                parent = d.get(ref)
                if parent is None or d.erp_key in bad:
                    continue
                entry = None
                if parent in quarantined or parent in bad:
                    msg = f"parent {self.entity} {parent!r} is quarantined"
                    entry = self._entry(d.erp_key, ref, "reference_quarantined", msg, parent, d.erp_hash)
                elif parent not in by_key and parent not in outside:
                    msg = f"parent {self.entity} {parent!r} is not in the ERP data"
                    entry = self._entry(d.erp_key, ref, "dangling_reference", msg, parent, d.erp_hash)
                if entry is not None:
                    bad[d.erp_key] = entry
                    changed = True
        for key in _cycle_members(result.desired, ref, bad):
            d = by_key[key]
            msg = f"{self.entity} parents form a cycle through {d.get(ref)!r}"
            bad[key] = self._entry(key, ref, "reference_cycle", msg, d.get(ref), d.erp_hash)
        if bad:
            result.desired = [d for d in result.desired if d.erp_key not in bad]
            result.quarantine.extend(bad.values())


def _cycle_members(desired: Sequence[Desired], ref: str, bad: Mapping[str, Any]) -> list[str]:
    """Keys whose parent chain never reaches a root (they sit on or below a cycle)."""
    depths = self_ref_depths([d for d in desired if d.erp_key not in bad], ref)
    return [d.erp_key for d in desired if d.erp_key not in bad and d.erp_key not in depths]


def self_ref_depths(desired: Sequence[Desired], ref: str) -> dict[str, int]:
    """Depth of each record in a self-referencing entity (roots 0); records on a cycle are absent.

    The executor creates categories by increasing depth (parents before children, one
    level per batch, smartkasa.md §5.2). A parent outside ``desired`` counts as a root.
    """
    parent_of = {d.erp_key: d.get(ref) for d in desired}
    depth: dict[str, int] = {}
    for start in parent_of:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        base = -1
        while node is not None and node in parent_of and node not in depth:
            if node in on_path:  # cycle
                path = []
                break
            path.append(node)
            on_path.add(node)
            node = parent_of[node]
        else:
            base = depth[node] if node is not None and node in depth else -1
        for i, key in enumerate(reversed(path)):
            depth[key] = base + 1 + i
    return depth
