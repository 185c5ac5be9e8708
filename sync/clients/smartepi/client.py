"""The SmartEPI client: the shared request loop plus bearer auth and SmartEPI errors.

Resources are attributes (``client.employees.list(sectorId=…)``, ``client.sectors.create``…;
see ``resources.py`` for the operations and the contract rules checked before sending).
The API key is registered with ``sync.redact`` so it is scrubbed from every log line and
error, and it is kept out of ``repr``. 401/403 are final (a bearer key cannot be
refreshed); a new key may answer 403 for about a minute while it propagates (§2.2).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from sync.clients.http import RequestLoop
from sync.clients.smartepi.errors import map_error
from sync.clients.smartepi.resources import SPECS, Employees, ETagCache, Resource
from sync.errors import ConfigError, StatusError
from sync.redact import register_secret


class SmartEPIClient(RequestLoop):
    platform = "smartepi"
    request_id_header = "X-Request-Id"

    def __init__(self, base_url: str, api_key: str | SecretStr, *, account: str, **kwargs: Any) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key or not key.strip():
            raise ConfigError("SmartEPI api_key is empty", hint="set the tenant's SmartEPI API key")
        register_secret(key)
        self.__key = SecretStr(key)  # masked even in vars(client) and debugger views
        super().__init__(base_url, account=account, **kwargs)
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

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.__key.get_secret_value()}"}

    def map_error(self, method: str, url: str, response: httpx.Response) -> StatusError:
        return map_error(method, url, response)
