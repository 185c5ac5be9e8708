"""SmartKasa error shapes (contract §4) → sync.errors classes, field and code; redaction."""

from __future__ import annotations

import pytest

from sync import errors as E
from sync.clients.smartkasa.errors import map_status_error, parse_error_body
from sync.redact import register_secret

COERCION = (
    '[Pos::ReceiptForm.new] "wrong" (String) has invalid type for :total_amount violates constraints '
    '(invalid value for Float(): "wrong" failed)'
)


@pytest.mark.parametrize(
    ("status", "body", "cls", "field", "code"),
    [
        # A: field validation
        (422, {"errors": {"title": [{"error": "blank"}]}}, E.Unprocessable, "title", "blank"),
        (
            422,
            {"errors": {"base": [{"error": "phone_number_or_password_invalid"}]}},
            E.Unprocessable,
            None,
            "phone_number_or_password_invalid",
        ),
        (
            422,
            {"errors": {"url": [{"error": "blank"}], "category_id": [{"error": "blank"}]}},
            E.Unprocessable,
            "url",
            "blank",
        ),
        (422, {"errors": {"product_id": [{"error": "invalid"}]}}, E.Unprocessable, "product_id", "invalid"),
        # unknown id answered 422 id/invalid, or 404
        (422, {"errors": {"id": [{"error": "invalid"}]}}, E.NotFound, "id", "invalid"),
        (404, {"message": "Not Found"}, E.NotFound, None, None),
        (404, None, E.NotFound, None, None),
        # duplicate number (sandbox rule) and 409
        (422, {"errors": {"number": [{"error": "taken"}]}}, E.Duplicate, "number", "taken"),
        (409, {"errors": {"number": [{"error": "taken"}]}}, E.Duplicate, "number", "taken"),
        # B / B': batch validation
        (
            422,
            {"errors": {"products": [{"error": "invalid", "messages": "title: Не може бути пустим"}]}},
            E.BatchRejected,
            "title",
            "invalid",
        ),
        (422, {"errors": {"categories": [{"error": "invalid"}]}}, E.BatchRejected, None, "invalid"),
        # C: string errors
        (422, {"errors": COERCION}, E.Unprocessable, "total_amount", "invalid_type"),
        # D: message
        (401, {"message": "Unauthorized"}, E.Unauthorized, None, None),
        (403, {"message": "Forbidden"}, E.Forbidden, None, None),
        # E: declared 400 with an errors object
        (400, {"errors": {"q": [{"error": "invalid"}]}}, E.BadRequest, "q", "invalid"),
        # unknown shapes never crash
        (422, {"errors": []}, E.Unprocessable, None, None),
        (422, {"errors": {"title": "blank"}}, E.Unprocessable, "title", "blank"),
        (422, {"errors": {"title": []}}, E.Unprocessable, "title", None),
        (422, ["weird"], E.Unprocessable, None, None),
        (500, "<html>Internal Server Error</html>", E.ServerError, None, None),
        (503, None, E.ServerError, None, None),
        (418, {"foo": 1}, E.BadRequest, None, None),
        (405, {}, E.MethodNotAllowed, None, None),
    ],
)
def test_error_shapes_map_to_classes(status, body, cls, field, code):
    err = map_status_error(status, body, method="POST", url="https://sk.test/api/v1/x")
    assert type(err) is cls
    assert err.status == status
    assert err.field == field
    assert err.code == code
    assert err.platform == "smartkasa"
    assert str(err)  # renders without raising


def test_batch_create_422_is_always_batch_rejected():
    err = map_status_error(422, {"errors": {"title": [{"error": "blank"}]}}, batch_create=True)
    assert isinstance(err, E.BatchRejected) and err.field == "title"
    assert isinstance(map_status_error(413, None, batch_create=True), E.BatchRejected)
    assert not isinstance(map_status_error(422, {"errors": {"title": [{"error": "blank"}]}}), E.BatchRejected)


def test_rate_limited_carries_retry_after():
    err = map_status_error(429, {"message": "slow down"}, headers={"retry-after": "3"})
    assert isinstance(err, E.RateLimited) and err.retry_after == 3.0
    assert (
        map_status_error(429, None, headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}).retry_after
        is None
    )


def test_messages_text_is_kept():
    parsed = parse_error_body({"errors": {"products": [{"error": "invalid", "messages": "price: bad"}]}})
    assert parsed.batch and parsed.field == "price" and "price: bad" in parsed.message


def test_error_bodies_are_redacted():
    register_secret("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    body = {
        "errors": {"base": [{"error": "x", "messages": "key 0f1e2d3c4b5a69788796a5b4c3d2e1f0 refused"}]},
        "password": "hunter2-secret",
        "access": "eyJhbGciOi.secret.jwt",
    }
    err = map_status_error(422, body, url="https://sk.test/api/v1/p?k=0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    text = f"{err} {err!r} {err.body} {err.url}"
    assert "0f1e2d3c4b5a69788796a5b4c3d2e1f0" not in text
    assert "hunter2-secret" not in text and "eyJhbGciOi" not in text
    coercion = map_status_error(422, {"errors": "bad value 0f1e2d3c4b5a69788796a5b4c3d2e1f0 for :price"})
    assert "0f1e2d3c4b5a69788796a5b4c3d2e1f0" not in str(coercion) and coercion.field == "price"
