"""Make a patched copy of the SmartKasa OpenAPI file for the Prism conformance test.

The published file (``smartkasa-openapi.json``, contract §10) was converted mechanically
from the Blueprint and wrongly rejects requests a correct client sends. Each patch below
is the minimum that lets Prism judge the requests ``SmartKasaClient`` makes in its
default ``plain`` + ``bearer`` mode; nothing else is touched, so every other check
(paths, methods, security, required login fields, declared types) still applies.

1. ``decimal_types``: decimals the client sends as JSON numbers were typed ``integer``
   from examples like ``50.0`` (contract §5.4, §10.1): product ``procurement_price``
   (POST, PATCH) and card ``count`` (POST) become ``number``.
2. ``category_types``: category ``color_id`` is an integer enum and ``shop_ids`` an array of
   integer shop ids (contract §5.2); OA typed both ``string``.
3. ``bodyless_deletes``: single-record DELETEs take no body (Blueprint), OA marks one
   required on six operations; the requirement is dropped (the schema stays, optional).
4. ``refresh_header``: refresh follows the Blueprint (contract §2.3): the refresh token in
   ``X-Refresh-Token``, no ``Authorization``, no body. The operation's security becomes
   ``ApiKeyAuth`` + a new ``RefreshToken`` apiKey header scheme, and its body optional.
5. ``transaction_example``: the payment-transaction example is filed under ``DELETE
   /pos/receipts/batch`` and ``GET /pos/payment_transactions/{id}`` has no 200 content
   (contract §10.1); the example is moved to where it belongs, so the client's read of a
   transaction gets a body to parse.

Paths: the source file is ``<repo>/../shared/contracts/smartkasa-openapi.json`` unless
``ERPSYNC_SHARED_DIR`` names the shared directory. Usage:
``python tests/prism/patch_spec.py OUT.json`` (or import ``write_patched``).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Spec = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    override = os.environ.get("ERPSYNC_SHARED_DIR")
    return Path(override) if override else REPO.parent / "shared"


def source_path() -> Path:
    return shared_dir() / "contracts" / "smartkasa-openapi.json"


def _body_schema(spec: Spec, path: str, method: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path][method]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    return schema


def decimal_types(spec: Spec) -> None:
    for path, method, prop in [
        ("/api/v1/inventory/products", "post", "procurement_price"),
        ("/api/v1/inventory/products/{id}", "patch", "procurement_price"),
        ("/api/v1/inventory/cards", "post", "count"),
    ]:
        props = _body_schema(spec, path, method)["properties"]
        assert props[prop]["type"] == "integer", (path, method, prop)  # fail loudly if the source changed
        props[prop]["type"] = "number"


def category_types(spec: Spec) -> None:
    for path, method in [
        ("/api/v1/inventory/categories", "post"),
        ("/api/v1/inventory/categories/{id}", "put"),
    ]:
        props = _body_schema(spec, path, method)["properties"]
        props["color_id"] = {**props["color_id"], "type": ["integer", "null"]}
        props["shop_ids"] = {**props["shop_ids"], "type": ["array", "null"], "items": {"type": "integer"}}


BODYLESS_DELETES = [
    "/api/v1/pos/terminals/{id}",
    "/api/v1/rsn/shops/{id}",
    "/api/v1/rsn/employees/{id}",
    "/api/v1/inventory/cards/{id}",
    "/api/v1/inventory/product_subgroups/{id}",
    "/api/v1/pos/receipts/{id}",
]


def bodyless_deletes(spec: Spec) -> None:
    for path in BODYLESS_DELETES:
        body = spec["paths"][path]["delete"]["requestBody"]
        assert body.get("required") is True, path
        body["required"] = False


def refresh_header(spec: Spec) -> None:
    spec["components"]["securitySchemes"]["RefreshToken"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-Refresh-Token",
        "description": "Refresh JWT (Blueprint form of POST /auth/refresh).",
    }
    op = spec["paths"]["/api/v1/auth/refresh"]["post"]
    op["security"] = [{"ApiKeyAuth": [], "RefreshToken": []}]
    op["requestBody"]["required"] = False


def transaction_example(spec: Spec) -> None:
    misfiled = spec["paths"]["/api/v1/pos/receipts/batch"]["delete"]["responses"]["200"]["content"]
    target = spec["paths"]["/api/v1/pos/payment_transactions/{id}"]["get"]["responses"]["200"]
    target["content"] = copy.deepcopy(misfiled)


PATCHES: list[Callable[[Spec], None]] = [
    decimal_types,
    category_types,
    bodyless_deletes,
    refresh_header,
    transaction_example,
]


def patched(spec: Spec) -> Spec:
    out = copy.deepcopy(spec)
    for patch in PATCHES:
        patch(out)
    return out


def write_patched(out: Path, source: Path | None = None) -> Path:
    spec = json.loads((source or source_path()).read_text(encoding="utf-8"))
    out.write_text(json.dumps(patched(spec), ensure_ascii=False, indent=1), encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: patch_spec.py OUT.json")
    print(write_patched(Path(sys.argv[1])))
