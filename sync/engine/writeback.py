"""ERP write-back: remote edits of ``pull``/``both`` fields go back into the ERP.

Apply calls the function ``make_write_back`` builds when the three-way diff decides a
platform edit wins (``direction: pull``/``both``). The ERP row is written when its mapping
is ``writable`` and the source can write; otherwise the edit is kept in ``adopted_edits``
for the ERP to consume, once per value, so nothing a person typed on a console is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sync.core.records import EntityPolicy
from sync.engine.runtime import TenantRuntime
from sync.errors import ConfigError
from sync.state.models import AdoptedEdit
from sync.state.store import StateStore

log = logging.getLogger("erpsync.engine")

WriteBack = Callable[[EntityPolicy, str, dict[str, Any], str], bool]


def make_write_back(store: StateStore, rt: TenantRuntime) -> WriteBack:
    """Remote edits of pull/both fields → the ERP table when writable, else adopted_edits."""

    def write(policy: EntityPolicy, erp_key: str, fields: dict[str, Any], why: str) -> bool:
        """True when the ERP row was written; False when the edit waits in adopted_edits."""
        em = rt.mappings.entity(policy.platform, policy.entity)
        erp_fields = em.to_erp(fields)
        if em.writable and erp_fields:
            try:
                rt.source.write_back(em.source_entity, em.erp_key_field, erp_key, erp_fields)
                return True
            except ConfigError as exc:
                # The mapping allows write-back but the source table does not (a query, a
                # file export): keep the edit for the ERP to consume instead of losing it.
                log.info("%s: %s; recording the edit in adopted_edits", policy.entity, exc.message)
        pending = {(e.entity, e.erp_key, e.field, e.new_value) for e in store.adopted_edits(rt.tenant_id)}
        edits = []
        for name, value in (erp_fields or fields).items():
            text = None if value is None else str(value)
            if (policy.entity, erp_key, name, text) not in pending:  # recorded once until consumed
                edits.append(
                    AdoptedEdit(
                        tenant=rt.tenant_id,
                        platform=policy.platform,
                        entity=policy.entity,
                        erp_key=erp_key,
                        field=name,
                        new_value=text,
                        resolution="pulled",
                    )
                )
        store.add_adopted_edits(edits)
        return False

    return write
