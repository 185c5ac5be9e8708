"""Reference documentation generated from the code, so it cannot drift from it.

- ``settings_reference()``: every configuration key, from the settings models
  (``sync.settings``), with its type, default and whether it is required;
- ``sink_tables()``: the tables the SQL sink writes (``sync.sinks.base.STREAMS``);
- ``platform_fields()``: the platform field catalogue per entity (``sync.core.platforms``:
  the data mapping validation reads);
- ``json_schema(kind)``: JSON Schema of the configuration or mapping file (editors validate
  with it; ``erpsync config schema``).

``python -m sync.docgen`` rewrites the generated parts of docs/configuration.md and
docs/platform-fields.md; ``--check`` fails when the committed docs differ.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

BEGIN = "<!-- BEGIN GENERATED: python -m sync.docgen (do not edit by hand) -->"
END = "<!-- END GENERATED -->"


def _type(annotation: Any, models: list[tuple[str, type[BaseModel]]], path: str) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0], models, path)
    if origin in (typing.Union, __import__("types").UnionType):
        alts = [a for a in args if a is not type(None)]
        return " or ".join(_type(a, models, path) for a in alts)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type(args[0], models, path + '[]')}" if args else "list"
    if origin is dict or (isinstance(origin, type) and issubclass(origin, typing.Mapping)):
        key = "<id>" if path.endswith("tenants") else "<name>"
        return f"mapping of {_type(args[0], models, path)} to {_type(args[1], models, f'{path}.{key}')}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if all(m is not annotation for _, m in models):
            models.append((path, annotation))
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is SecretStr:
        return "secret (write `${ENV_VAR}`)"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    if annotation is Path:
        return "path (relative to the config file)"
    return {str: "text", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    value = info.default_factory() if info.default_factory is not None else info.default
    if value is None or value is PydanticUndefined:
        return "-"
    if isinstance(value, BaseModel):
        return "(its defaults)"
    if isinstance(value, SecretStr):
        return "(set)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dict | list) and not value:
        return "empty"
    text = json.dumps(value, default=str, ensure_ascii=False)
    return f"`{text}`" if len(text) < 60 else "(long)"


def _doc(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    if not doc or doc.startswith(("Usage docs", "!!! abstract")):
        return ""
    return " ".join(line.strip() for line in doc.split("\n\n", 1)[0].splitlines())


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """The comment written after each field in the model's source (``name: int = 3  # why``)."""
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    out = {}
    for line in lines:
        found = re.match(r"^\s{4}(\w+):[^#]*#\s*(.+)$", line)
        if found and found.group(1) in model.model_fields:
            # notes for users only: no pointers into design notes or contract sections
            text = re.sub(r"\s*\([^)]*(?:§|guide|\.py)[^)]*\)", "", found.group(2)).strip()
            out[found.group(1)] = text
    return out


def settings_reference() -> str:
    """Markdown: one table per settings model, in the order a file nests them."""
    from sync.settings import Settings

    models: list[tuple[str, type[BaseModel]]] = [("(top level)", Settings)]
    out = ["## Reference: every key", ""]
    i = 0
    while i < len(models):
        path, model = models[i]
        i += 1
        out += [
            f"### {model.__name__}",
            "",
            f"Where: `{path}`." + (f" {_doc(model)}" if _doc(model) else ""),
            "",
        ]
        out += ["| key | type | default | notes |", "|---|---|---|---|"]
        notes = _comments(model)
        for name, info in model.model_fields.items():
            key = info.alias or name
            sub = key if path == "(top level)" else f"{path}.{key}"
            kind = _type(info.annotation, models, sub)
            note = (info.description or notes.get(name, "")).replace("|", "\\|")
            out.append(f"| `{key}` | {kind} | {_default(info)} | {note} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def sink_tables() -> str:
    """Markdown: the SQL sink's tables (one per inbound stream) and their columns."""
    from sync.sinks.base import KEY_COLUMNS, STREAMS
    from sync.sinks.sql import DEFAULT_PREFIX

    kinds = {"str": "text", "text": "text", "int": "integer", "dec": "decimal", "bool": "boolean"}
    out = [
        "## Reference: the ERP sink tables",
        "",
        f"With `sink: {{kind: sql}}` inbound data lands in one table per stream, named "
        f"`{DEFAULT_PREFIX}<stream>` (the prefix is `sink.prefix`), upserted by "
        f"({', '.join(KEY_COLUMNS)}). Every table also has `id` (integer key), `tenant`, "
        "`platform`, `remote_id`, `content_hash`, `payload` (the record as JSON) and "
        "`synced_at`. A stream mapped to an ERP table of your own (`sink.tables`) needs "
        f"({', '.join(KEY_COLUMNS)}) under one unique constraint; only the columns it has are written.",
        "",
    ]
    for stream, columns in sorted(STREAMS.items()):
        out += [f"### `{DEFAULT_PREFIX}{stream}`", "", "| column | type |", "|---|---|"]
        out += [f"| `{col}` | {kinds.get(str(kind), str(kind))} |" for col, kind in columns.items()]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def platform_fields() -> str:
    """Markdown: per platform and entity, the fields a mapping may map (the catalogue mapping
    validation reads): name, type, required on create, directions, reference."""
    from sync.core.platforms import CATALOGUE

    out = [
        "# Platform field catalogue",
        "",
        "The fields a mapping file may name, per platform and entity. `config check` refuses any",
        "other name (and names the close one). *required*: the platform refuses a create",
        "without it. *directions*: the `direction` a mapping may give it (`push`: ERP to",
        "platform, `pull`: platform to ERP, `both`). *reference*: the field holds the id of",
        "another entity of the platform; the mapping gives that entity's ERP key and erpsync",
        "translates it.",
        "",
        BEGIN,
        "",
    ]
    for p in sorted(CATALOGUE.values(), key=lambda p: p.name):
        out += [f"## {p.name}", ""]
        for e in p.entities:
            mode = "" if e.writable else " (read-only reference list: `erpsync inspect`)"
            out += [f"### {p.name} `{e.name}`{mode}", ""]
            facts = []
            if e.natural_key:
                facts.append(f"natural key: {', '.join(f'`{k}`' for k in e.natural_key)}")
            if e.marker:
                facts.append(f"marker (holds the ERP key): `{e.marker}`")
            if e.batchable:
                facts.append("written in batches")
            if facts:
                out += ["; ".join(facts).capitalize() + ".", ""]
            out += _field_table(e.fields)
            for c in e.children:
                out += [f"Children `{c.name}` (key `{c.key}`):", ""]
                out += _field_table(c.fields)
    out += [END]
    return "\n".join(out).rstrip() + "\n"


def _field_table(fields: Any) -> list[str]:
    rows = ["| field | type | required | directions | reference |", "|---|---|---|---|---|"]
    for f in fields:
        dirs = ", ".join(d for d in ("push", "pull", "both") if d in f.directions)
        rows.append(f"| `{f.name}` | {f.type} | {'yes' if f.required else ''} | {dirs} | {f.ref or ''} |")
    return [*rows, ""]


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of a configuration file (``config``) or a mapping file (``mapping``)."""
    if kind == "config":
        from sync.settings import Settings

        schema = Settings.model_json_schema(by_alias=True)
        schema["title"] = "erpsync configuration file"
    elif kind == "mapping":
        from sync.core.mapping.spec import MappingFileSpec

        schema = _shorthands(MappingFileSpec.model_json_schema(by_alias=True))
        schema["title"] = "erpsync mapping file"
    else:
        raise ValueError(f"unknown schema {kind!r}: config or mapping")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _shorthands(node: Any) -> Any:
    """What a mapping file may also write, which the models read before validating: a field
    as its ERP column name (``title: nome``), a single key as text instead of a list."""
    if isinstance(node, dict):
        out = {k: _shorthands(v) for k, v in node.items()}
        if out.get("$ref") == "#/$defs/FieldSpec":
            return {"anyOf": [out, {"type": "string", "description": "the ERP column"}]}
        if out.get("type") == "array" and out.get("items", {}).get("type") == "string":
            return {"anyOf": [out, {"type": "string"}]}
        return out
    if isinstance(node, list):
        return [_shorthands(v) for v in node]
    return node


def _splice(text: str, generated: str) -> str:
    """``text`` with the part between the markers replaced (appended when there is none)."""
    block = f"{BEGIN}\n\n{generated.rstrip()}\n\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def generated_docs(root: Path) -> dict[Path, str]:
    """What each generated document must contain (the whole file)."""
    config = root / "docs" / "configuration.md"
    current = config.read_text(encoding="utf-8") if config.exists() else "# Configuration\n"
    return {
        config: _splice(current, settings_reference() + "\n" + sink_tables()),
        root / "docs" / "platform-fields.md": platform_fields(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync.docgen", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--check", action="store_true", help="fail when the committed docs differ")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_docs(args.root).items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(str(p.relative_to(args.root)) for p in stale)
        print(f"out of date: {names}; run `python -m sync.docgen`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
