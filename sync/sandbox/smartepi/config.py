"""Settings of the SmartEPI sandbox; keys and secrets are ``SecretStr`` so reprs redact them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sync.sandbox.smartepi.params import FilterMode
from sync.sandbox.smartepi.webhooks import WebhookOptions


class TenantConfig(BaseModel):
    """A tenant as the console would create it; the key and secret are redacted in reprs."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr
    id: str | None = None
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_events: list[str] = ["*"]
    allowed_ips: list[str] | None = None


class SmartEPISandboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: list[TenantConfig] = []
    webhooks: WebhookOptions = Field(default_factory=WebhookOptions)
    key_activation_s: float = Field(0.0, ge=0)  # revision B: a new key is 403 for about a minute
    admin_loopback_only: bool = True
    # strict: undocumented query parameters are 400; lenient: ignored; ignore: list filters
    # are ignored as well (unfiltered pages), to prove clients confirm lookup hits locally
    list_filters: FilterMode = "strict"
    # /training-records has no documented endpoint (contract §3.9): "serve" it (our assumption,
    # §5.5), or answer as a contract-only server would: 404 problem, 405 problem, or API
    # Gateway's 403 {"message":"Missing Authentication Token"} for an unknown resource.
    training_records: Literal["serve", "404", "405", "403"] = "serve"
    # The 409 token for a duplicate name/identification/email: None = ``duplicate_<field>``
    # (ours); the contract documents only ``duplicate_name`` and leaves the employee tokens
    # undocumented (§2.5), so a simulator may answer e.g. ``conflict`` or ``duplicate_key``.
    duplicate_token: str | None = Field(None, pattern=r"^[a-z_]+$")
    # createdSince/createdUntil: at most this many fractional-second digits (6 = microseconds;
    # 3 mimics a millisecond API such as JavaScript's toISOString, 0 a seconds-only one)
    window_fraction_digits: int = Field(6, ge=0, le=6)
    # The employees ``identification`` filter is inferred, not documented (§3.1): "folded"
    # matches case-insensitively and trimmed (ours), "exact_text" only the stored text as typed
    # ("123.456.789-00" is not "12345678900"), "reject" answers 400 to the parameter.
    identification_search: Literal["folded", "exact_text", "reject"] = "folded"
    # Gateway answers of revision B (the default, §2.2 B) or the older revision A: 401 for any
    # bad key, 403 problem+json only for the IP allow-list, 429 {"message":"Limit Exceeded"}
    gateway_style: Literal["A", "B"] = "B"
    # "exact": a page is never followed by an empty one; "dynamo": an exactly full last page
    # still carries a cursor and the next page is empty (``cursor: null``), as a DynamoDB
    # ``LastEvaluatedKey`` does (§2.4: only "cursor null means the last page" is documented)
    paging: Literal["exact", "dynamo"] = "exact"
    # Retry-After (when ``FaultConfig.retry_after`` is set) in delta-seconds or as an HTTP date
    retry_after_format: Literal["seconds", "http_date"] = "seconds"
    # Whether GET /access-groups/:id exists is undocumented (§3.7): False answers 405
    access_group_by_id: bool = True
    # How to clear a field on update is undocumented (§2.6, "no blanking"): "clears" (null
    # clears it), "ignored" (null leaves the value, like an omitted field), "rejected" (400)
    null_on_update: Literal["clears", "ignored", "rejected"] = "clears"
