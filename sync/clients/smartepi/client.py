"""The SmartEPI client: the shared request loop plus bearer auth and SmartEPI errors.

Resources are attributes (``client.employees.list(sectorId=…)``, ``client.sectors.create``…;
see ``resources.py`` for the operations and the contract rules checked before sending).
The API key is registered with ``sync.redact`` so it is scrubbed from every log line and
error, and it is kept out of ``repr``. 401 is final (a bearer key cannot be refreshed).
A new key answers 403 for about a minute while it propagates (§2.2 [B]), and the gateway's
403 looks the same for a key that is not active yet and for a wrong one: so until this client
has had its first answer from behind the gateway, a 403 is retried with backoff for up to
``key_activation_wait`` seconds (90 by default); after that a 403 is final. The gateway
answers before the application runs, so resending a POST that got this 403 is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from sync.clients.http import ApiResponse, RequestLoop
from sync.clients.smartepi.errors import map_error
from sync.clients.smartepi.resources import SPECS, Employees, ETagCache, Resource
from sync.errors import ConfigError, StatusError
from sync.redact import register_secret

log = logging.getLogger(__name__)

KEY_ACTIVATION_WAIT_S = 90.0
"""How long a 403 before the first answer is retried (a new key propagates "about 1 minute")."""
_ACTIVATION_FIRST_DELAY_S = 0.5
_ACTIVATION_MAX_DELAY_S = 15.0


class SmartEPIClient(RequestLoop):
    platform = "smartepi"
    request_id_header = "X-Request-Id"

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        account: str,
        key_activation_wait: float | None = None,
        **kwargs: Any,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key or not key.strip():
            raise ConfigError("SmartEPI api_key is empty", hint="set the tenant's SmartEPI API key")
        register_secret(key)
        # The key is opaque (§2.2) and compared exactly by the gateway: whitespace around it
        # (a trailing newline from a secrets file) is never part of it, so it is not sent.
        key = key.strip()
        register_secret(key)
        self.__key = SecretStr(key)  # masked even in vars(client) and debugger views
        super().__init__(base_url, account=account, **kwargs)
        self.key_activation_wait = (
            KEY_ACTIVATION_WAIT_S if key_activation_wait is None else key_activation_wait
        )
        self._key_active = False  # set by the first answer from behind the gateway
        self.etags = ETagCache()
        self.sectors = Resource(self, SPECS["sectors"])
        self.cost_centers = Resource(self, SPECS["cost-centers"])
        self.job_roles = Resource(self, SPECS["job-roles"])
        self.groups = Resource(self, SPECS["groups"])
        self.access_groups = Resource(self, SPECS["access-groups"])
        self.employees = Employees(self, SPECS["employees"])
        self.products = Resource(self, SPECS["products"])
        self.withdrawals = Resource(self, SPECS["withdrawals"])
        self.returns = Resource(self, SPECS["returns"])
        self.exchanges = Resource(self, SPECS["exchanges"])
        self.training_records = Resource(self, SPECS["training-records"])

    def resource(self, name: str) -> Resource:
        """A resource by its path name (``"cost-centers"``) or attribute name (``"cost_centers"``)."""
        found = getattr(self, name.replace("-", "_"), None)
        if not isinstance(found, Resource):
            raise KeyError(name)
        return found

    async def request(
        self,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> ApiResponse:
        """``RequestLoop.request``, plus the key-activation wait (see the module docstring)."""
        waited = 0.0
        delay = _ACTIVATION_FIRST_DELAY_S
        while True:
            started = time.monotonic()
            try:
                response = await super().request(
                    method,
                    path,
                    path_params=path_params,
                    params=params,
                    json=json,
                    headers=headers,
                    idempotent=idempotent,
                )
            except StatusError as exc:
                if exc.status not in (401, 403, 429):  # 401/403/429 come from the gateway (§2.5 B)
                    self._key_active = True  # the application answered: the key passed the gateway
                waited += time.monotonic() - started
                if exc.status != 403 or self._key_active or waited >= self.key_activation_wait:
                    raise
                step = min(delay, self.key_activation_wait - waited)
                log.info(
                    "%s %s: 403 before any answer; a new key may still be activating, retry in %.1fs",
                    self.platform,
                    self.account,
                    step,
                )
                await self._sleep(step)
                waited += step
                delay = min(delay * 2, _ACTIVATION_MAX_DELAY_S)
                continue
            self._key_active = True
            return response

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.__key.get_secret_value()}"}

    def map_error(self, method: str, url: str, response: httpx.Response) -> StatusError:
        return map_error(method, url, response)
