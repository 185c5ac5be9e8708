"""Compiled mappings: a mapping file's entity → ``EntityMapping`` (pure).

``compile_fields`` turns each field spec into a closure (``transforms.compile_field``);
``EntityMapping`` holds them with the entity's policy, its row hash, its quarantine
wording (masking personal and sensitive values) and its write-back (``to_erp``).
Mapping rows is ``EntityMapping.map_rows``: the generated loop (``codegen``) for the
common row and the reference path (``reference``) for the rest, or for every row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sync.core.keys import fold, key_function
from sync.core.mapping import reference
from sync.core.mapping.codegen import LoopFn, build_loop
from sync.core.mapping.results import MapContext, MapResult
from sync.core.mapping.spec import ChildSpec, EntitySpec, FieldSpec, FilterSpec, template_names
from sync.core.mapping.transforms import (
    FieldFn,
    Invalid,
    Row,
    canon_text,
    column_fn,
    compile_field,
    concat_fn,
    inverse_fn,
    key_text,
    strip_controls,
    template_fn,
)
from sync.core.records import (
    MAX_KEY_LENGTH,
    EntityPolicy,
    FieldPolicy,
    Platform,
    QuarantineEntry,
)
from sync.redact import MASK, mask_value_in

_VALUE_CHARS = 200  # quarantine values are cut to this length
_SEP = "\x1f"  # between hashed column values


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
        # (field, target entity) of references to other entities, checked against ``MapContext``
        self.outer_refs: tuple[tuple[str, str], ...] = tuple(
            (f.name, f.policy.ref) for f in self.fields if f.policy.ref not in (None, entity)
        )
        self._sensitive = frozenset(f.name for f in self.fields if f.policy.sensitive)
        cols = [spec.key, *(c for f in self.fields for c in f.columns)]
        self._hash_cols = tuple(dict.fromkeys(cols))
        self._columns: dict[str, str] | None = None  # field -> ERP column(s), built on first use
        # Salts every row hash: a row the platform rejected is held until its hash changes,
        # so a change of this entity's mapping (or its lookups) retries it too.
        self._salt = mapping_salt(spec, lookups)
        # A row without a natural key is quarantined (or gets a derived key): it could not
        # be told apart from a platform record on a retry (a create is not idempotent).
        self.unkeyed_forbidden = unkeyed_forbidden or spec.derive_key is not None
        self.natural_key_fn = key_function(natural_key) if natural_key else None
        derive = spec.derive_key
        self._derive: tuple[str, str, list[str]] | None = None  # (field, template, its names)
        if derive is not None and derive.template:
            self._derive = (derive.field, derive.template, template_names(derive.template))
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

    def entry(
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

    def problems_entry(self, key: str, problems: list[Invalid], h: str) -> QuarantineEntry:
        """One entry for a row with every problem it has: the first one's field, rule and value;
        the message names the others (field, ERP column, rule, message) too."""
        first, rest = problems[0], problems[1:]
        entry = self.entry(key, first.field, first.rule, first.message, first.value, h)
        if not rest:
            return entry
        also = "; ".join(
            f"{p.field} (ERP column {self.column_of(p.field) or '?'}): {p.rule}: "
            f"{self._text(p.field, p.message, p.value)}"
            for p in rest
        )
        return replace(entry, message=f"{entry.message}; also {also}")

    def field_problems(self, row: Row) -> list[Invalid]:
        """Every field of ``row`` that breaks a rule (not only the first)."""
        problems = []
        for f in self.fields:
            try:
                f.fn(row)
            except Invalid as exc:
                problems.append(exc)
        return problems

    def derived_key(self, row: Row, key: str) -> tuple[str, Any] | None:
        """(field, value) the mapping's ``derive_key`` gives an unkeyed row; None when it has none."""
        if self._derive is None:
            return None
        name, template, names = self._derive
        return name, template_fn(template, names, {"erp_key": key})(row)

    def generated_loop(self, *, force: bool = False) -> tuple[LoopFn, str, int] | None:
        """The generated loop for this entity, its source and its number of caches, built on
        first use; None for an entity with children, or with ``fastpath`` off (unless ``force``)."""
        if self.children or not (self.fastpath or force):
            return None
        if self._fast is None:
            self._fast = build_loop(
                platform=self.platform,
                entity=self.entity,
                key_col=self.erp_key_field,
                hash_cols=self._hash_cols,
                salt=self._salt,
                fields=self.fields,
                refs=self.outer_refs,
                natural_key=self.natural_key,
                unkeyed_forbidden=self.unkeyed_forbidden,
                has_filter=self.filter is not None,
            )
        return self._fast

    def map_rows(
        self, rows: Iterable[Row], context: MapContext | None = None, *, fast: bool = True
    ) -> MapResult:
        """Map ERP rows to desired records and quarantine entries.

        Valid rows go through the generated loop; every other row, and every row when
        ``fast=False`` or ``fastpath = False``, through the reference path
        (``reference.map_row``). The results are the same.
        """
        built = self.generated_loop() if fast else None
        if built is None:
            return reference.reference_map_rows(self, rows, context)
        run = reference.start_run(self, context)
        loop, _, n_caches = built
        refsets = [(valid, quarantined) for _, _, valid, quarantined in run.refs]
        caches: list[dict[Any, Any]] = [{} for _ in range(n_caches)]
        slow = partial(reference.map_row, run)
        seen, desired, nat_seen, nat_twice = run.seen, run.result.desired, run.nat_seen, run.nat_twice
        total, filtered = loop(rows, seen, desired, nat_seen, nat_twice, slow, self.filter, refsets, caches)
        return reference.finish_run(run, total, filtered)
