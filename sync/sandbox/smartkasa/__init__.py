"""A stateful SmartKasa API v1 sandbox (smartkasa.md §1–9, following the simulator guide of §9).

``create_app(config, faults)`` in ``app`` builds it. Each rule below names its test (``tests/sandbox/``).

Auth (§2, §9.1) — ``test_smartkasa_auth.py``
 1. ``X-API-KEY`` on every API route; missing/unknown → 401 ``{"message":"Unauthorized"}``. Tenants are keyed
    by API key; a token only works with the key it was issued for.
 2. Login ``POST /api/v1/auth/sessions``: ``{"session":{...}}`` and plain bodies (``body_style`` can demand
    one); 201 with ``id:null, access, access_expires_at, csrf, refresh, refresh_expires_at``; bad credentials
    → 422 ``base: phone_number_or_password_invalid``. Phones match in ``0XX…`` or ``380XX…`` form.
 3. HS256 JWTs with the example claims; the payload repeats ``exp`` (issue time first, expiry last) like the
    real tokens. Lifetimes ``access_ttl_s``/``refresh_ttl_s``.
 4. Data routes need ``Authorization``: bare token or ``Bearer <token>`` (``auth_scheme`` restricts).
    Expired, revoked or foreign tokens → 401.
 5. Refresh via ``X-Refresh-Token`` (no body, no Authorization): 201, new access + refresh of a new
    ``session_token``; the used refresh token is dead (rotation); used/expired/access-token → 401. Earlier
    access tokens of the same login stay valid until they expire.
 6. Logout → ``{"id": <uid of the access token>}`` and ends the whole login (every token descended from it).
 7. ``POST /_admin/expire_tokens`` and the fault layer's ``p_expire_token`` revoke access tokens for good.

Envelopes, paging, formats (§1.2–1.3, §3, §4, §9.2) — ``test_smartkasa_org.py``, ``test_smartkasa_formats.py``
 8. ``{"data":…, "meta":{…}}``; Kaminari meta exactly (``next_page``/``prev_page`` null at the edges and out
    of range, ``offset_value=(page-1)*per_page``); default per_page 25, receipts 10; ``max_per_page`` caps
    silently; non-numeric or non-positive ``page``/``per_page`` fall back to defaults (Kaminari's ``to_i``).
 9. total_count-only lists: cards, subgroups, unit types, shops/employees (everything at once).
10. Decimals as Ruby BigDecimal strings (``"100.0"``, ``"71.89"``); money kept at 2 places, quantities at 3;
    z-report and sales-report grand totals as JSON numbers. Timestamps ``…T13:51:48.382+02:00``; offsets
    cycle through ``utc_offsets_minutes``, ``clock_skew_s`` shifts the clock. Dates →
    ``…T00:00:00.000+00:00``.
11. Errors: shape A ``{"errors":{field:[{"error":code}]}}``; B/B′ batch; C ``{"errors":"<string>"}`` for a
    wrong JSON type (``[Inventory::ProductForm.new] "x" (String) has invalid type for :price …``); D 401.
    Malformed JSON → 400 ``{"errors":{"base":[{"error":"invalid_json"}]}}``; a missing wrapper in strict
    ``wrapped`` mode → 400 ``{"errors":{"product":[{"error":"blank"}]}}`` (Rails' ParameterMissing). Unknown
    attributes are dropped silently (so in ``plain`` mode a wrapped body validates as empty).
12. Unknown ids → 422 ``{"errors":{"id":[{"error":"invalid"}]}}`` (``unknown_id_status=404`` → 404
    ``{"message":"Not Found"}``). Unrouted paths 404 and wrong methods 405, both ``{"message":…}``.

Catalog (§5, §9.3–9.4) — ``test_smartkasa_catalog.py``
13. Categories: UUID ids; ``parent_id`` must exist (and not be itself); ``color`` ignored, ``color_id``
    stored; PUT merges; DELETE and batch DELETE return full objects (unknown ids in a batch are skipped);
    deleting detaches products and child categories; batch create returns full objects in input order, any
    invalid item → 422 ``{"errors":{"categories":[{"error":"invalid"}]}}`` and nothing is created. The list
    carries ``partner``.
14. Products: POST/PATCH return ``{id}`` only; no PUT (405, the contract says products have PATCH only);
    GET ``/{id}`` embeds ``cards``, ``category`` (without ``shop_ids``), ``category_type``; the list variant
    has ``partner*``, ``stock: {}``, ``subgroup_title``. ``user_id``/``owner_id`` come from the session.
    Validation: title blank, price blank (required on create), negative price, unknown ``category_id`` /
    ``subgroup_id``, ``tax_group_id`` outside 0–10, ``classifier_type_id`` outside 0–2 → 422 shape A.
    ``tax_amount`` is computed from price and tax group in kopecks under Cyrillic letters.
    ``remote_id`` is stored but only shown with ``expose_remote_id``.
15. Filters: ``number`` exact (``number_match=partial``), ``category_id``, ``subgroup_id``, ``shop_id`` (has a
    card in that shop), ``q`` (case-insensitive substring of title, alter_title, number, alter_number).
16. Batch create: types checked first (shape C rejects the whole batch), then every item validated; failures
    → 422 ``{"errors":{"products":[{"error":"invalid","messages":"title: Не може бути пустим"}]}}``, one entry
    per bad item, no index. ``batch_mode=atomic`` creates nothing; ``partial`` creates the valid items and
    still answers 422. Ids in input order (``batch_order=shuffled`` to test client verification).
    ``max_batch`` → 422 ``products: too_long``, 413, or 400 with the 422 body (``max_batch_status``).
    Batch DELETE skips unknown ids.
17. Duplicate ``number`` allowed; ``reject_duplicate_number`` → 422 ``number: taken`` (within a batch too).
18. ``unit_type_id`` read as a unit code (default) or id (``unit_type_mode``); ``unit_type_name`` null if
    unknown.
19. Cards: int ids, one per (product, shop) (a second → 422 ``product_id: invalid`` as the contract's example,
    or the invented ``taken`` with ``duplicate_card=taken``); unknown
    product → ``product_id: invalid``, unknown shop → ``shop_id: invalid``; POST returns the bare card, PUT
    ``{id}``, GET and list nest ``product`` and ``shop`` (no address); ``count`` is absolute.
    Deleting a product or a shop deletes its cards.
20. Subgroups (int ids, PUT merges, DELETE returns the object and detaches products); unit types (§7.4 list);
    file imports (both fields required, job stays ``state 0``: the file format is undocumented).

Organisation (§5.7–5.10) — ``test_smartkasa_org.py``
21. Each tenant is seeded with ``shops`` shops (≥1, default 2), ``terminals_per_shop`` terminals each, a role
    and a partner. Shops: title required, phones stored as ``380…`` when written through the API (seeded
    records keep what was seeded, as in the fixtures), address merged on PUT, DELETE → ``{id}``.
    ``employees_count`` is the stored value (the example shows 0 despite an embedded employee).
22. Employees: first_name required; dates; PUT answers ``pin_code: null`` while GET shows it; ``role``
    embedded when the role exists. ``/rsn/shops/employees`` lists staff linked by the seeded ``shop_ids``.
23. Terminals: no create; PUT ``name``/``shop_id`` (unknown shop → ``shop_id: invalid``; ``"wrong"`` → shape C
    ``Pos::TerminalForm``); DELETE returns the terminal as it was.

Sales (§6, §9.4) — ``test_smartkasa_sales.py``
24. Shifts (UUID, filters as §6.1, no created_at/updated_at in the payload as in the examples), receipts
    (newest first; list embeds ``payment_transactions`` and ``discount_type_id``, GET does not; filters
    ``shift_id``, ``shop_id``, ``terminal_id``, ``state``, ``type``, ``fiscal_number``), receipt writes
    (``tax_amount`` echoed as sent; shape C ``Pos::ReceiptForm``/``Pos::ReceiptBatchItemForm``; batch DELETE
    answers one object), ``/payment_transactions/{id}`` embedding the receipt without items.
25. Z-reports: amounts as numbers; filters ``date_start``/``date_end`` (inclusive, on ``created_at``; a bare
    date is a whole day in the first configured offset), ``shop_id``, ``terminal_id``, cashier under both
    ``termianl_user_id`` and ``terminal_user_id``. Product sales report: paid sales minus refunds over the
    window, per-product strings, grand totals as numbers, ``popularity`` = share of quantity in %.
26. Generators (``generators``), seeded: open/close shifts, receipts with items and a payment for existing
    products (decrementing counted cards of the shop), z-reports for closed shifts, stock recounts, a day;
    a shift left ``state`` 2 with no ``closed_at`` (``expire``), and offline receipts uploaded late into
    a closed or expired shift (``offline: true``, with ``offline_*`` fields, §6.6).

Admin (``/_admin``, loopback only, tenant named by ``X-API-KEY``) — ``admin`` module,
    ``test_smartkasa_sales.py``
27. tenants, reset, seed, console edit/delete (bumps ``updated_at``), dump, expire_tokens, generate/*, and
    the shared fault layer's ``/_admin/faults`` and ``/_admin/stats``.

Faults (§9.4 item 20): the shared ``sync.sandbox.faults.FaultInjector`` wraps every API route (quota per API
key). SmartKasa's 429 and 5xx bodies are undocumented: assumed ``{"message":"Too Many Requests"}`` (with
``Retry-After`` when configured) and ``{"message":"Internal Server Error"}``.
"""
