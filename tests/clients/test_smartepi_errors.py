"""Every documented SmartEPI error body (smartepi.md §2.2, §2.5) maps to the right type."""

from __future__ import annotations

import httpx
import pytest

from sync.clients.smartepi.errors import map_error, parse_error
from sync.errors import (
    BadRequest,
    Conflict,
    Duplicate,
    FieldRejected,
    Forbidden,
    InUse,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    ServerError,
    StaleVersion,
    Unauthorized,
    Unprocessable,
)

PJ = {"content-type": "application/problem+json", "X-Request-Id": "req_abc"}


def problem(token, status, detail, title="T"):
    return {"type": f"urn:smartepi:error:{token}", "title": title, "status": status, "detail": detail}


CASES = [
    # gateway (revision B): plain JSON, no request id
    (401, {"message": "Unauthorized"}, {}, Unauthorized, None, None, "terminal"),
    (
        403,
        {
            "Message": "User is not authorized to access this resource with an explicit deny"
            " in an identity-based policy"
        },
        {},
        Forbidden,
        None,
        None,
        "terminal",
    ),
    (
        429,
        {"message": "Too Many Requests"},
        {"x-amzn-errortype": "TooManyRequestsException"},
        RateLimited,
        None,
        None,
        "transient",
    ),
    (
        429,
        {"message": "Limit Exceeded"},
        {},
        RateLimited,
        None,
        None,
        "transient",
    ),  # revision A endpoint pages
    # revision A: 403 as problem+json
    (
        403,
        problem("forbidden", 403, "source IP not allowed", "Forbidden"),
        PJ,
        Forbidden,
        "forbidden",
        None,
        "terminal",
    ),
    # application problem+json
    # a 400 to a write naming a record field is the row's fault: quarantined like a 422
    (400, problem("bad_request", 400, "name: required"), PJ, FieldRejected, "bad_request", "name", "record"),
    (
        400,
        problem("bad_request", 400, "_version: required"),
        PJ,
        BadRequest,
        "bad_request",
        "_version",
        "terminal",
    ),
    (400, problem("bad_request", 400, "invalid cursor"), PJ, BadRequest, "bad_request", None, "terminal"),
    (
        404,
        problem("not_found", 404, "Not found, or not yours to access"),
        PJ,
        NotFound,
        "not_found",
        None,
        "record",
    ),
    (
        405,
        problem("method_not_allowed", 405, "read-only"),
        PJ,
        MethodNotAllowed,
        "method_not_allowed",
        None,
        "terminal",
    ),
    (409, problem("conflict", 409, "version mismatch"), PJ, StaleVersion, "conflict", None, "record"),
    (
        409,
        problem("duplicate_name", 409, "An entity with the same name already exists"),
        PJ,
        Duplicate,
        "duplicate_name",
        None,
        "record",
    ),
    (
        409,
        problem("duplicate_identification", 409, "identification already in use"),
        PJ,
        Duplicate,
        "duplicate_identification",
        None,
        "record",
    ),
    (409, problem("duplicate_email", 409, "email taken"), PJ, Duplicate, "duplicate_email", None, "record"),
    (
        409,
        problem("resource_in_use", 409, "referenced by 3 employees"),
        PJ,
        InUse,
        "resource_in_use",
        None,
        "record",
    ),
    (409, problem("something_new", 409, "whatever"), PJ, Conflict, "something_new", None, "record"),
    (
        422,
        problem(
            "invalid_reference", 422, "Unknown or cross-tenant reference: costCenterId", "Invalid reference"
        ),
        PJ,
        Unprocessable,
        "invalid_reference",
        "costCenterId",
        "record",
    ),
    (500, problem("internal_error", 500, "boom"), PJ, ServerError, "internal_error", None, "transient"),
    (502, None, {}, ServerError, None, None, "transient"),  # empty body
    (503, "<html>Service Unavailable</html>", {}, ServerError, None, None, "transient"),  # not JSON
]


@pytest.mark.parametrize(("status", "body", "headers", "cls", "code", "field", "kind"), CASES)
def test_error_mapping(status, body, headers, cls, code, field, kind):
    if body is None:
        resp = httpx.Response(status, headers=headers)
    elif isinstance(body, str):
        resp = httpx.Response(status, text=body, headers=headers)
    else:
        resp = httpx.Response(status, json=body, headers=headers)
    err = map_error("PUT", "https://h/v1/employees/e1", resp)
    assert type(err) is cls
    assert (err.status, err.code, err.field, err.kind) == (status, code, field, kind)
    assert err.platform == "smartepi"
    assert err.request_id == ("req_abc" if headers is PJ else None)
    assert str(status) in str(err) and err.hint in str(err)


@pytest.mark.parametrize(
    ("detail", "cls"),
    [
        ("Duplicate identification", Duplicate),
        ("a record with this email already exists", Duplicate),
        ("cannot delete: still referenced", InUse),
        ("stale version, re-read", StaleVersion),
    ],
)
def test_unknown_409_tokens_fall_back_to_detail_words(detail, cls):
    resp = httpx.Response(
        409, json={"type": "urn:smartepi:error:other", "title": "Conflict", "detail": detail}
    )
    assert type(map_error("PUT", "u", resp)) is cls


@pytest.mark.parametrize(
    ("token", "detail", "cls"),
    [
        ("conflict", "Employee identification exists", Duplicate),
        ("conflict", "version mismatch", Duplicate),  # a create has no version to be stale
        ("duplicate_key", "exists", Duplicate),
        ("other", "whatever", Duplicate),
        ("resource_in_use", "referenced", InUse),
    ],
)
def test_a_409_to_a_post_is_a_duplicate_unless_in_use(token, detail, cls):
    resp = httpx.Response(
        409, json={"type": f"urn:smartepi:error:{token}", "title": "Conflict", "detail": detail}
    )
    assert type(map_error("POST", "u", resp)) is cls
    assert type(map_error("PUT", "u", resp)) is not Duplicate or token != "conflict"


def test_problem_extensions_name_the_field():
    body = {
        "type": "urn:smartepi:error:invalid",
        "title": "Invalid",
        "detail": "bad",
        "invalid-params": [{"name": "email", "reason": "format"}],
    }
    assert parse_error(body).field == "email"
    assert parse_error({"title": "x", "field": "sectorId"}).field == "sectorId"


def test_error_bodies_are_redacted():
    resp = httpx.Response(
        400,
        json={
            "type": "urn:smartepi:error:bad_request",
            "detail": "bad",
            "api_key": "sk_live_secret",
            "authorization": "Bearer sk_live_secret",
        },
    )
    err = map_error("POST", "u", resp)
    assert err.body["api_key"] == "***" and "sk_live_secret" not in str(err) + repr(err.body)


@pytest.mark.parametrize("body", [[], 42, "", {"unexpected": True}, {"message": 3}])
def test_parser_never_crashes_on_odd_shapes(body):
    parsed = parse_error(body)
    assert parsed.layer in {"unknown", "gateway", "application"}


def test_a_400_names_a_record_field_only_on_writes():
    """A list query's 400 naming a parameter (``limit: must be 1..100``) is erpsync's bug, not a row's."""
    body = problem("bad_request", 400, "name: required")
    for method, cls in (("POST", FieldRejected), ("PUT", FieldRejected), ("GET", BadRequest)):
        err = map_error(method, "https://h/v1/employees", httpx.Response(400, json=body, headers=PJ))
        assert type(err) is cls, method
    limit = problem("bad_request", 400, "limit: must be an integer from 1 to 100")
    err = map_error("POST", "https://h/v1/employees", httpx.Response(400, json=limit, headers=PJ))
    assert type(err) is BadRequest
