"""Load and validate mapping files; the only part of the core that reads files.

Every problem in every file is collected and raised together as one ``MappingError``
whose lines read ``file:line: path: problem``. Line numbers come from the YAML node
marks, recorded while the node tree is converted to plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sync.core.didyoumean import did_you_mean, unknown_key_message
from sync.core.mapping.compiled import EntityMapping
from sync.core.mapping.mapset import MappingSet, dependency_levels
from sync.core.mapping.patterns import pattern_problem
from sync.core.mapping.spec import (
    DEFAULT_MARKERS,
    DEFAULT_NATURAL_KEYS,
    FIELD_TYPES,
    KNOWN_CHILDREN,
    KNOWN_FIELDS,
    KNOWN_REFS,
    ChildSpec,
    EntitySpec,
    FieldSpec,
    MappingFileSpec,
)
from sync.core.mapping.transforms import Invalid, canon_text, compile_field
from sync.core.records import Platform
from sync.errors import MappingError

Loc = tuple[str | int, ...]


class MappingFileError(MappingError):
    """A ``MappingError`` that also lists its problems one by one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:  # one problem: one line
            super().__init__(f"invalid mapping: {problems[0]}")
            return
        super().__init__(f"invalid mapping ({len(problems)} problems):\n" + "\n".join(problems))


# Values a mapping file may expand to (a large real file has a few thousand): aliases of
# aliases (`&a [*b, *b, …]`) double at every level, 7 levels took 17 s before this cap.
MAX_NODES = 100_000
_BAD = object()  # a scalar that could not be built (already reported)


class _TooLarge(Exception):
    pass


class _Doc:
    """One parsed file: plain data plus the line of every path in it.

    Hostile input is a problem, never a crash: tags that cannot build a value, alias
    expansion beyond ``MAX_NODES``, nesting deeper than the interpreter's stack.
    """

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.lines: dict[Loc, int] = {}
        self.problems: list[str] = []
        self._problem_lines: list[int] = []
        self.data: Any = None
        self._ctor = yaml.SafeLoader("")
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(exc, "problem", None) or str(exc)
            self._add(line, f"{name}:{line}: (yaml): {problem}")
            return
        except RecursionError:
            self._add(1, f"{name}:1: (yaml): nested too deeply")
            return
        if node is None:
            self._add(1, f"{name}:1: (file): the file is empty")
            return
        self._nodes = 0
        try:
            self.data = self._convert(node, ())
        except _TooLarge:
            self.data = None
            self._add(
                1,
                f"{name}:1: (yaml): the file expands to more than {MAX_NODES} values; aliases (*name) "
                "repeat what an anchor (&name) holds: write the values out or use fewer aliases",
            )
        except RecursionError:
            self.data = None
            self._add(1, f"{name}:1: (yaml): nested too deeply, or an alias (*name) refers to itself")

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        """The value of a scalar node; a tag that cannot build a value is a problem, not a crash."""
        try:
            return self._ctor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, ArithmeticError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.lines.setdefault(loc, node.start_mark.line + 1)
            self.problem(loc, f"cannot read the value tagged {node.tag}: {problem}")
            return _BAD

    def _convert(self, node: yaml.Node, loc: Loc) -> Any:
        # Aliases share nodes, so nested aliases expand exponentially: count what is built.
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooLarge
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node, loc)
                if key is _BAD:
                    continue
                if isinstance(key, list | dict):
                    self.problem(loc, "keys must be scalars")
                    continue
                if key in out:
                    self.lines[(*loc, key)] = key_node.start_mark.line + 1
                    self.problem((*loc, key), "duplicate key")
                    continue
                out[key] = self._convert(value_node, (*loc, key))
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def line(self, loc: Loc) -> int:
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1

    def where(self, loc: Loc) -> str:
        path = ".".join(str(p) for p in loc) or "(file)"
        return f"{self.name}:{self.line(loc)}: {path}"

    def _add(self, line: int, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)
            self._problem_lines.append(line)

    def problem(self, loc: Loc, message: str) -> None:
        self._add(self.line(loc), f"{self.where(loc)}: {message}")

    def numbered(self) -> list[tuple[int, str]]:
        """Problems with their line numbers, for sorting."""
        return list(zip(self._problem_lines, self.problems, strict=True))


def _pydantic_problems(
    doc: _Doc, exc: ValidationError, prefix: Loc = (), root: type[BaseModel] | None = None
) -> None:
    merged: dict[Loc, list[str]] = {}
    for err in exc.errors():
        loc: Loc = (*prefix, *err["loc"])
        shown: list[str | int] = []
        for part in loc:  # keep the data path; drop union-branch labels pydantic adds
            if (*shown, part) in doc.lines:
                shown.append(part)
            elif err["type"] in ("missing", "extra_forbidden") and part == loc[-1]:
                shown.append(part)
                break
            else:
                continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key_message(root, tuple(err["loc"])) if root else "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        bucket = merged.setdefault(tuple(shown), [])
        if msg not in bucket:
            bucket.append(msg)
    for loc, msgs in merged.items():
        doc.problem(loc, "; ".join(msgs))


def _check_entity(
    doc: _Doc, platform: Platform, name: str, spec: EntitySpec, lookups: Mapping[str, Any]
) -> None:
    base: Loc = ("entities", name)
    known = KNOWN_FIELDS[platform].get(name)
    if known is None:
        choices = ", ".join(sorted(KNOWN_FIELDS[platform]))
        doc.problem(base, f"{platform} has no entity {name!r} (known: {choices})")
        return
    for fname, fspec in spec.fields.items():
        floc = (*base, "fields", fname)
        if fname not in known:
            hint = did_you_mean(fname, known) or f" (its fields: {', '.join(sorted(known))})"
            doc.problem(floc, f"{platform} {name} has no field {fname!r}{hint}")
        if isinstance(fspec.lookup, str) and fspec.lookup not in lookups:
            doc.problem((*floc, "lookup"), f"no lookup table named {fspec.lookup!r}")
        refs = KNOWN_REFS.get((platform, name), {})
        if fspec.ref is not None and refs.get(fname, fspec.ref) != fspec.ref:
            doc.problem((*floc, "ref"), f"{fname} references {refs[fname]}, not {fspec.ref}")
        if fname in refs and (fspec.has_constant or fspec.type != "string" or fspec.lookup is not None):
            doc.problem(
                floc, f"{fname} references {refs[fname]}: it holds an ERP key (no type, lookup or constant)"
            )
    known_children = KNOWN_CHILDREN.get((platform, name), {})
    for cname, cspec in spec.children.items():
        cloc = (*base, "children", cname)
        if cname not in known_children:
            doc.problem(cloc, f"{platform} {name} has no nested collection {cname!r}")
            continue
        for fname, fspec in cspec.fields.items():
            if fname not in known_children[cname]:
                doc.problem((*cloc, "fields", fname), f"{cname} have no field {fname!r}")
            if isinstance(fspec.lookup, str) and fspec.lookup not in lookups:
                doc.problem((*cloc, "fields", fname, "lookup"), f"no lookup table named {fspec.lookup!r}")
    marker = marker_field(platform, name, spec)
    if spec.marker is not None and spec.marker is not False and marker is None:
        doc.problem((*base, "marker"), f"{platform} {name} has no default marker: name the field")
    if marker is not None:
        mloc = (*base, "marker")
        mspec = spec.fields.get(marker)
        if marker not in known:
            doc.problem(mloc, f"{platform} {name} has no field {marker!r} to hold the marker")
        elif mspec is not None and not _plain_copy_of_key(mspec, spec.key):
            doc.problem(
                (*base, "fields", marker),
                f"{marker} is erpsync's marker (it holds the ERP key, so a create whose answer was "
                f"lost can be found again): map it as `{marker}: {spec.key}`, leave it unmapped, "
                "choose another field with `marker: FIELD`, or turn the marker off with `marker: false`",
            )
    if spec.natural_key is None and (platform, name) not in DEFAULT_NATURAL_KEYS:
        doc.problem((*base, "natural_key"), "no default natural key for this entity: give natural_key")
    if spec.derive_key is not None and spec.derive_key.field not in (
        spec.natural_key or DEFAULT_NATURAL_KEYS.get((platform, name), ())
    ):
        doc.problem((*base, "derive_key", "field"), "derive_key.field must be one of the natural key fields")


def marker_field(platform: Platform, name: str, spec: EntitySpec) -> str | None:
    """The field stamped with the ERP key on create (``spec.DEFAULT_MARKERS``), or None."""
    if spec.marker is False:
        return None
    if isinstance(spec.marker, str):
        return spec.marker
    return DEFAULT_MARKERS.get((platform, name))


def _plain_copy_of_key(fspec: FieldSpec, key: str) -> bool:
    """The field is the ERP key column as it is (so the marker erpsync stamps and the mapped value agree)."""
    changed = fspec.model_fields_set - {"from_", "type", "max_length", "required"}
    return fspec.from_ == key and fspec.type == "string" and not changed


_NUMBERS = frozenset({"integer", "decimal"})


def _typed_constant(
    doc: _Doc,
    loc: Loc,
    platform: Platform,
    where: str,
    fname: str,
    fspec: FieldSpec,
    lookups: Mapping[str, Any],
) -> FieldSpec:
    """A ``constant`` takes the platform field's type (``FIELD_TYPES``) unless ``type`` is given.

    An explicit ``type`` that contradicts the platform's (``type: string`` on a boolean) is a
    problem: the mapped value would never equal what the platform returns, so every plan
    would update the record again. The constant is coerced and validated here, once, so a
    value that cannot be of the type (``constant: maybe`` on a boolean) fails the check.
    """
    wanted = FIELD_TYPES.get((platform, where), {}).get(fname)
    if "type" in fspec.model_fields_set:
        if wanted is not None and fspec.type != wanted and {fspec.type, wanted} != _NUMBERS:
            doc.problem(
                (*loc, "type"),
                f"{fname} is a {wanted} field on {platform}: a constant of type {fspec.type} would "
                f"differ from the platform's value on every run (drop type, or use type: {wanted})",
            )
            return fspec
    elif wanted is not None:
        fspec = fspec.model_copy(update={"type": wanted})
    table = lookups.get(fspec.lookup) if isinstance(fspec.lookup, str) else fspec.lookup
    try:
        compile_field(
            fname,
            extract=lambda row: fspec.constant,
            spaces=fspec.spaces,
            case=fspec.case,
            lookup=table,
            lookup_default=fspec.lookup_default,
            has_lookup_default=fspec.has_lookup_default,
            default=fspec.default,
            has_default=fspec.has_default,
            type_=fspec.type,
            precision=fspec.precision,
            date_format=fspec.date_format,
            required=fspec.required,
            max_length=fspec.max_length,
            min_length=fspec.min_length,
            minimum=fspec.min,
            maximum=fspec.max,
            email=fspec.format == "email",
            pattern=fspec.pattern,
            constant=True,
        )
    except Invalid as exc:
        doc.problem(
            (*loc, "constant"), f"constant {fspec.constant!r} is not a valid {fspec.type}: {exc.message}"
        )
    return fspec


def _typed_constants(
    doc: _Doc, platform: Platform, name: str, spec: EntitySpec, lookups: Mapping[str, Any]
) -> EntitySpec:
    """``spec`` with every constant typed as its platform field (see ``_typed_constant``)."""
    base: Loc = ("entities", name)
    fields = dict(spec.fields)
    for fname, fspec in spec.fields.items():
        if fspec.has_constant:
            fields[fname] = _typed_constant(
                doc, (*base, "fields", fname), platform, name, fname, fspec, lookups
            )
    children: dict[str, ChildSpec] = dict(spec.children)
    for cname, cspec in spec.children.items():
        cfields = dict(cspec.fields)
        for fname, fspec in cspec.fields.items():
            if fspec.has_constant:
                loc = (*base, "children", cname, "fields", fname)
                cfields[fname] = _typed_constant(doc, loc, platform, f"{name}.{cname}", fname, fspec, lookups)
        if cfields != cspec.fields:
            children[cname] = cspec.model_copy(update={"fields": cfields})
    if fields == spec.fields and children == spec.children:
        return spec
    return spec.model_copy(update={"fields": fields, "children": children})


def _check_patterns(doc: _Doc, name: str, spec: EntitySpec) -> None:
    """Refuse ``pattern:`` rules that can backtrack exponentially (``patterns`` says why)."""
    base: Loc = ("entities", name)
    located = [((*base, "fields", f), fs) for f, fs in spec.fields.items()]
    for cname, cspec in spec.children.items():
        located += [((*base, "children", cname, "fields", f), fs) for f, fs in cspec.fields.items()]
    for loc, fspec in located:
        problem = pattern_problem(fspec.pattern) if fspec.pattern else None
        if problem:
            doc.problem((*loc, "pattern"), f"pattern {fspec.pattern!r} refused: {problem}")


def _parse(doc: _Doc) -> tuple[MappingFileSpec, dict[str, EntitySpec]] | None:
    """Validate the file head and each entity on its own, so one bad entity hides nothing."""
    data = doc.data
    if not isinstance(data, dict):
        doc.problem((), "the file must be a mapping with platform and entities")
        return None
    entities = data.get("entities")
    if "entities" not in data:
        doc.problem(("entities",), "required key is missing")
    elif not isinstance(entities, dict):
        doc.problem(("entities",), "must be a mapping of platform entity name to entity mapping")
    try:
        head = MappingFileSpec.model_validate({**data, "entities": {}})
    except ValidationError as exc:
        _pydantic_problems(doc, exc, (), MappingFileSpec)
        return None
    valid: dict[str, EntitySpec] = {}
    for name, raw in (entities if isinstance(entities, dict) else {}).items():
        try:
            valid[str(name)] = EntitySpec.model_validate(raw)
        except ValidationError as exc:
            _pydantic_problems(doc, exc, ("entities", name), EntitySpec)
    return head, valid


def load_mapping_texts(
    texts: Mapping[str, str], *, lookups: Mapping[str, Mapping[Any, Any]] | None = None
) -> MappingSet:
    """Validate and compile mapping documents given as ``{file name: YAML text}``.

    ``lookups`` adds or overrides named lookup tables (e.g. tenant settings'
    ERP shop code → SmartKasa shop id table ``shops``).
    """
    docs: list[_Doc] = []
    parsed: list[tuple[_Doc, MappingFileSpec, dict[str, EntitySpec]]] = []
    for name, text in texts.items():
        doc = _Doc(name, text)
        docs.append(doc)
        if doc.data is not None and not doc.problems:
            result = _parse(doc)
            if result is not None:
                parsed.append((doc, *result))
    extra = {k: {canon_text(kk) or "": vv for kk, vv in v.items()} for k, v in (lookups or {}).items()}

    owners: dict[tuple[Platform, str], tuple[_Doc, EntitySpec]] = {}
    declared: set[tuple[Platform, str]] = set()  # includes entities that failed validation
    tables: dict[Platform, dict[str, dict[str, Any]]] = {}
    for doc, head, _ in parsed:
        tables.setdefault(head.platform, {}).update(head.lookups)
        raw_entities = doc.data.get("entities")
        declared.update(
            (head.platform, str(n)) for n in (raw_entities if isinstance(raw_entities, dict) else {})
        )
    for platform in tables:
        tables[platform].update(extra)
    for doc, head, entities in parsed:
        for name, entity in entities.items():
            if (head.platform, name) in owners:
                other = owners[(head.platform, name)][0]
                doc.problem(("entities", name), f"{head.platform} {name} is already mapped in {other.name}")
                continue
            _check_entity(doc, head.platform, name, entity, tables[head.platform])
            _check_patterns(doc, name, entity)
            entity = _typed_constants(doc, head.platform, name, entity, tables[head.platform])
            owners[(head.platform, name)] = (doc, entity)

    # references: the target must be mapped on the same platform; no cycles between entities
    refs_by_platform: dict[Platform, dict[str, list[str]]] = {}
    for (platform, name), (doc, entity) in owners.items():
        targets = []
        known_refs = KNOWN_REFS.get((platform, name), {})
        for fname, fspec in entity.fields.items():
            target = fspec.ref or known_refs.get(fname)
            if target is None:
                continue
            if (platform, target) not in declared:
                doc.problem(("entities", name, "fields", fname), f"references {target}, which is not mapped")
            targets.append(target)
        refs_by_platform.setdefault(platform, {})[name] = targets
    levels: dict[Platform, dict[str, int]] = {}
    for platform, refs in refs_by_platform.items():
        lv, cycle = dependency_levels(refs)
        if cycle:
            doc, _ = owners[(platform, cycle[0])]
            doc.problem(("entities", cycle[0]), f"references form a cycle: {' -> '.join(cycle)}")
        levels[platform] = lv
    problems = [p for doc in docs for _, p in sorted(doc.numbered())]
    if problems:
        raise MappingFileError(problems)

    compiled = []
    for (platform, name), (doc, entity) in owners.items():
        compiled.append(
            EntityMapping(
                platform,
                name,
                entity,
                natural_key=tuple(entity.natural_key or DEFAULT_NATURAL_KEYS[(platform, name)]),
                level=levels[platform].get(name, 0),
                refs=KNOWN_REFS.get((platform, name), {}),
                lookups={**tables.get(platform, {}), **extra},
                unkeyed_forbidden=(platform, name) == ("smartepi", "employees"),
                marker=marker_field(platform, name, entity),
                file=doc.name,
            )
        )
    return MappingSet(compiled)


def load_mappings(
    paths: Iterable[str | PathLike[str]], *, lookups: Mapping[str, Mapping[Any, Any]] | None = None
) -> MappingSet:
    """Read, validate and compile mapping files; raises ``MappingFileError`` listing every problem."""
    texts: dict[str, str] = {}
    problems = []
    for path in paths:
        p = Path(path)
        try:
            texts[str(p)] = p.read_text(encoding="utf-8")
        except OSError as exc:
            why = exc.strerror or str(exc)
            if isinstance(exc, FileNotFoundError):  # the usual mistake: a path relative to the wrong folder
                why += " (a tenant's `mappings:` paths are relative to the config file)"
            problems.append(f"{p}:0: (file): cannot read: {why}")
        except UnicodeDecodeError:
            problems.append(f"{p}:0: (file): not UTF-8 text")
    if problems:
        raise MappingFileError(problems)
    return load_mapping_texts(texts, lookups=lookups)
