"""A stateful SmartEPI External API sandbox (contract: shared/contracts/smartepi.md).

Rules implemented (contract section in brackets; each has a test in
``tests/sandbox/test_smartepi_*.py``):

Gateway and transport
 1. ``Authorization: Bearer <key>``; no header -> 401 ``{"message":"Unauthorized"}`` [§2.2 B].
 2. A key sent but unknown, malformed, not yet active (``key_activation_s``) or from an IP
    outside the tenant's allow-list -> 403 AWS deny body ``{"Message": ...}`` [§2.2 B].
 3. Gateway answers (401/403/429) carry no ``X-Request-Id`` and are not problem+json [§2.5].
 4. 429 ``{"message":"Too Many Requests"}`` + ``x-amzn-errortype: TooManyRequestsException``,
    Retry-After only when configured; quota per tenant (``FaultConfig.quota_rps``) [§2.9, §5.4].
 5. Multi-tenant by key: another tenant's record is 404; a reference to it is 422 [§2.1].
 6. No CORS: no ``Access-Control-*`` header on any answer, OPTIONS included [§2.10].

Application
 7. Envelopes ``{"data": …}`` and ``{"data": [...], "cursor": …}`` [§2.3].
 8. Opaque base64 JSON cursors; ``cursor: null`` on the last page; invalid -> 400 [§2.4].
 9. ``limit`` default 20, integer 1..100, anything else 400 [§2.4 B].
10. Newest first; ascending by name/code when those filters are used [§2.4 B].
11. ``name`` (all) and ``code`` (cost centers) are case-insensitive prefix filters [§2.4 B].
12. At most one relationship filter (employees: sectorId/costCenterId/jobRoleId/groupId;
    transactions: employeeId/productId/costCenterId/sectorId) -> else 400; one may be
    combined with ``name`` or (employees) ``identification`` [§0]. Any query parameter
    the contract does not document for that endpoint (e.g. ``email``) -> 400, from the
    one table in ``params.py``; ``list_filters`` can make the API lenient or make it
    ignore filters altogether (for testing clients) [§2.5].
13. Transaction time window ``createdSince`` (inclusive) / ``createdUntil`` (exclusive),
    ISO-8601 UTC; combined with a relationship filter -> 400 [§0, §3.8, §5.5]. Bounds are
    parsed strictly: extended format, ``Z`` or ``+00:00``, at most
    ``window_fraction_digits`` (6) fractional digits; anything else -> 400.
14. Read-only resources (access groups, transactions, training records): writes -> 405;
    transactions and training records have no GET by id -> 405 [§2.5, §3.8].
15. Strong ETag ``"<int>"`` on every single-record response, none on lists; the version
    never in a body [§2.6].
16. Update/delete need If-Match or ``_version`` (body for PUT, query for DELETE); missing
    -> 400; stale -> 409 ``urn:smartepi:error:conflict``; +1 per change [§2.6].
17. PUT is partial: omitted fields stay (no blanking); ``null`` clears an optional field [§2.6].
18. Soft delete returns the deleted record (200 + ETag); the record leaves lists, is 404
    by id and frees its name/identification/email; products drop sizes/certificates [§2.6, §5.5].
19. Duplicate name (case-insensitive, trimmed) -> 409 ``duplicate_name``; employee
    identification/email -> 409 ``duplicate_identification``/``duplicate_email``
    (tokens assumed); employees without either have no unique key [§2.7].
20. Delete of an org entity referenced by a live employee -> 409 ``resource_in_use`` [§2.6].
21. References validated -> 422 ``invalid_reference``, detail
    ``Unknown or cross-tenant reference: <field>`` [§2.8].
22. Products: nested ``sizes``/``certificates`` created with the product; on PUT upserted
    by ``id``, added without ``id`` [§3.2].
23. RFC 7807 problem+json with ``X-Request-Id`` on every application error [§2.5].
24. Create -> 201 + ``ETag`` + ``Location`` [§2.6].
25. Malformed JSON, a non-object body, unknown/read-only fields or wrong types -> 400
    problem (never a 422 validation error, never a 500).
26. DTOs carry ``createdAt``/``updatedAt`` as ISO-8601 UTC strings (transactions:
    ``createdAt``) [§5.5].
27. Webhooks for transactions, signed ``X-SmartEPI-Signature: t=<unix>,v1=<hex>``,
    at-least-once with retries and backoff [§4, §5.5] (see ``webhooks.py``;
    ``WebhookOptions.key_mode`` and ``encoding`` pick the other readings of the recipe).

Strictness knobs (``SmartEPISandboxConfig``; at run time ``PATCH /_admin/strictness``), for
behaviours the contract leaves open, so clients can be tested against each answer:
``training_records`` (serve, or 404/405/gateway 403 "Missing Authentication Token": the
endpoint is undocumented, §3.9), ``duplicate_token`` (the 409 token of every duplicate, e.g.
``conflict``, §2.5), ``window_fraction_digits`` (3 mimics a millisecond API),
``identification_search`` (folded, exact_text or reject, §3.1), ``gateway_style`` (A or B,
§5.1), ``paging`` (exact, or dynamo: a trailing empty page, §2.4), ``retry_after_format``,
``access_group_by_id`` (False: 405, §3.7), ``null_on_update`` (clears, ignored or rejected:
how to clear a field is undocumented, §2.6) and ``key_activation_s``.

State is in memory (no SQLite store). Assumptions per area are in each module's
docstring: ``store`` (paging, uniqueness, references), ``schema`` (validation),
``problems`` (error tokens), ``webhooks`` (signature, delivery), ``admin``.
"""

from sync.sandbox.smartepi.app import SmartEPISandboxConfig, TenantConfig, create_app
from sync.sandbox.smartepi.webhooks import WebhookOptions, sign, signature_header, verify_signature

__all__ = [
    "SmartEPISandboxConfig",
    "TenantConfig",
    "WebhookOptions",
    "create_app",
    "sign",
    "signature_header",
    "verify_signature",
]
