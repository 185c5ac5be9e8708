"""Settings of one SmartKasa account (a pydantic model the app settings can embed).

Defaults: ``bearer`` auth (the overview's form, contract §2.1; a 401 to a fresh token
switches once to ``bare``, see ``client``) and ``both`` bodies (the Blueprint's wrapped
and the overview's plain form in one body, see ``encoding``); ``plain``/``wrapped`` send
one form only. Secrets are ``SecretStr`` so they
never print; the client registers them for log scrubbing as well.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

AuthScheme = Literal["bearer", "bare"]


class SmartKasaSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = "https://core.smartkasa.ua"
    api_key: SecretStr
    phone_number: SecretStr
    password: SecretStr
    auth_scheme: AuthScheme = "bearer"
    body_style: Literal["plain", "wrapped", "both"] = "both"
    refresh_margin_seconds: float = Field(300.0, ge=0)
    batch_size: int = Field(100, ge=1, le=1000)
    # Read back every batch create and match the records to the inputs, not only on a count
    # mismatch: the contract does not state the order of the returned ids (§5.4, §8), and a
    # positional mapping of a reordered answer binds rows to each other's products.
    verify_batch_order: bool = True
    per_page: int = Field(100, ge=1, le=1000)
    timeout: float = Field(30.0, gt=0)
    max_connections: int = Field(8, ge=1)
    read_back_concurrency: int = Field(8, ge=1)  # parallel GETs when verifying a batch
