"""SmartEPI error bodies: RFC 7807 for the application, plain JSON for the gateway.

Application errors (400/404/405/409/422/500) are ``application/problem+json`` with
``type``/``title``/``status``/``detail`` and an ``X-Request-Id`` header. Gateway
answers (401/403/429) are the AWS API Gateway bodies of revision B and carry no
``X-Request-Id`` (contract §2.2, §5.4).

Type tokens the contract does not document, chosen here (assumption):
``bad_request`` (400), ``not_found`` (404), ``method_not_allowed`` (405),
``internal_error`` (500), ``duplicate_identification`` and ``duplicate_email`` (409).
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import time

from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
URN = "urn:smartepi:error:"
_TITLES = {
    "bad_request": "Bad Request",
    "not_found": "Not Found",
    "method_not_allowed": "Method Not Allowed",
    "conflict": "Conflict",
    "duplicate_name": "Duplicate name",
    "duplicate_identification": "Duplicate identification",
    "duplicate_email": "Duplicate email",
    "resource_in_use": "Resource in use",
    "invalid_reference": "Invalid reference",
    "internal_error": "Internal Server Error",
}


class ApiError(Exception):
    """An application error the handlers raise; rendered as problem+json."""

    def __init__(self, status: int, token: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.token = token
        self.detail = detail


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "bad_request", detail)


def not_found() -> ApiError:
    return ApiError(404, "not_found", "Not found, or not yours to access")


def method_not_allowed(detail: str = "Method not allowed on this resource") -> ApiError:
    return ApiError(405, "method_not_allowed", detail)


def request_id() -> str:
    return "req_" + os.urandom(8).hex()


def problem_body(status: int, token: str, detail: str) -> bytes:
    title = _TITLES.get(token, "Error")
    return json.dumps(
        {"type": URN + token, "title": title, "status": status, "detail": detail}, separators=(",", ":")
    ).encode()


def problem_response(status: int, token: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"X-Request-Id": request_id(), **(headers or {})}
    return Response(problem_body(status, token, detail), status, all_headers, PROBLEM_JSON)


def problem_parts(status: int, token: str, detail: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The same problem as a raw ASGI response (used by the fault injector)."""
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"x-request-id", request_id().encode())]
    return status, headers, problem_body(status, token, detail)


GATEWAY_401 = b'{"message":"Unauthorized"}'
GATEWAY_403 = (
    b'{"Message":"User is not authorized to access this resource with an explicit deny '
    b'in an identity-based policy"}'
)
GATEWAY_429 = b'{"message":"Too Many Requests"}'


def gateway_parts(status: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = {401: GATEWAY_401, 403: GATEWAY_403}[status]
    return status, [(b"content-type", b"application/json")], body


GATEWAY_429_A = b'{"message":"Limit Exceeded"}'


def _retry_after_value(retry_after: float, http_date: bool) -> bytes:
    if http_date:  # RFC 9110 allows an HTTP date as well as delta-seconds
        # whole seconds, rounded up: the client never waits less than ``retry_after``
        return email.utils.formatdate(math.ceil(time.time() + retry_after), usegmt=True).encode()
    return (str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)).encode()


def rate_limited_parts(
    retry_after: float | None, style: str = "B", http_date: bool = False
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """429 as the gateway sends it: no request id, Retry-After only when configured (in
    delta-seconds, or as an HTTP date); revision A's endpoint pages show
    ``{"message":"Limit Exceeded"}`` without ``x-amzn-errortype``."""
    headers = [(b"content-type", b"application/json")]
    if style != "A":
        headers.append((b"x-amzn-errortype", b"TooManyRequestsException"))
    if retry_after is not None:
        headers.append((b"retry-after", _retry_after_value(retry_after, http_date)))
    return 429, headers, GATEWAY_429_A if style == "A" else GATEWAY_429


def server_error_parts() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return problem_parts(500, "internal_error", "An internal error occurred; retry with backoff")
