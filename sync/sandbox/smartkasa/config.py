"""Settings of the SmartKasa sandbox: every behaviour the contract leaves open is a knob here.

Defaults follow smartkasa.md §9 (lenient: both body styles, both auth forms). Tests tighten them
to check that a client copes with a stricter or odder server.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TenantSpec(BaseModel):
    """One SmartKasa account: an API key plus the phone/password that log in with it."""

    api_key: str = Field(repr=False)  # secrets, even in a sandbox: kept out of reprs and logs
    phone_number: str = "380960000006"
    password: str = Field(default="123456789", repr=False)
    shops: int = Field(default=2, ge=1, le=50)
    terminals_per_shop: int = Field(default=1, ge=0, le=10)


class SmartKasaSandboxConfig(BaseModel):
    tenants: list[TenantSpec] = Field(default_factory=list)
    # --- auth (§2, §9.1)
    jwt_secret: str = Field(default="smartkasa-sandbox-secret", repr=False)
    access_ttl_s: float = 23 * 3600.0
    refresh_ttl_s: float = 729.5 * 3600.0
    auth_scheme: Literal["any", "bare", "bearer"] = "any"
    # --- bodies (§1, §9)
    body_style: Literal["any", "wrapped", "plain"] = "any"
    # --- pagination (§3, §9.2)
    default_per_page: int = 25
    receipts_per_page: int = 10
    max_per_page: int | None = None  # silent cap, Kaminari style
    # ``page`` on paginated lists (§3 documents it on four lists only): ``ignored`` serves page 1
    # with page 1's meta whatever is asked; ``ignored_echo`` serves page 1's records under a meta
    # that claims the page asked for (a server that echoes the parameter but does not apply it).
    page_param: Literal["honoured", "ignored", "ignored_echo"] = "honoured"
    # --- products (§9.3)
    batch_mode: Literal["atomic", "partial"] = "atomic"
    batch_order: Literal["input", "shuffled"] = "input"
    max_batch: int | None = None
    max_batch_status: Literal[400, 413, 422] = 422
    reject_duplicate_number: bool = False
    # Run the form's required-field checks on updates too (product PATCH: ``title``, ``price``;
    # category and subgroup PUT: ``title``): the contract does not prove PATCH/PUT are partial (§5.4).
    update_requires_required_fields: bool = False
    # ``required``: an update body must carry the inner ``id`` (as the Blueprint examples do, §1)
    inner_id: Literal["ignored", "required"] = "ignored"
    # A second card for one (product, shop): the contract's only card error example is 422
    # ``product_id: invalid`` (§5.5, cause unknown); ``taken`` is an invented, clearer code.
    duplicate_card: Literal["invalid", "taken"] = "invalid"
    number_match: Literal["exact", "partial"] = "exact"
    unit_type_mode: Literal["code", "id"] = "code"
    expose_remote_id: bool = False
    # Receipt list filters (§6.2: "which of them act as list filters" is not stated): "honoured",
    # or "ignored": every filter is dropped and the whole list comes back, newest first.
    receipt_filters: Literal["honoured", "ignored"] = "honoured"
    # --- other resources (§9.4)
    unknown_id_status: Literal[404, 422] = 422
    # --- clock (§9.4 item 20: clock skew / odd offsets)
    utc_offsets_minutes: list[int] = Field(default_factory=lambda: [120])
    clock_skew_s: float = 0.0
    # --- admin
    admin_loopback_only: bool = True
    seed: int = 0
