"""The state store's facade: ``StateStore``, the only writer of the state tables.

Everything the engine, sinks, tasks and web app need from the state store goes through
``StateStore``; each method is one short transaction, so a crash between two calls
leaves the store consistent (the intent log makes the rest recoverable). The methods live
in typed repositories, one per family of tables (``sync.state.repos``); this module
combines them and keeps the names other modules import from here.
``tests/state/test_only_writer.py`` checks that nothing outside ``sync.state`` writes the
tables or opens a session of its own.

Field values are stored as JSON. Decimals are tagged (``"\\x1fd:1.5"``) so that a
loaded base compares equal to freshly normalized ERP data; the tag uses a control
character that the mapping layer never lets through from the ERP.
"""

from __future__ import annotations

import logging

from sync.state.gauges import GaugeRows, gauge_rows
from sync.state.repos._base import StoreBase, decode_text, decode_value, encode_value, iter_chunks
from sync.state.repos.alerts import AlertsRepo
from sync.state.repos.bindings import BindingsRepo, BindRow, StoredBases
from sync.state.repos.inbox import InboxRepo
from sync.state.repos.intents import OPEN_INTENT_STATES, IntentClaimed, IntentsRepo
from sync.state.repos.leases import LeasesRepo, TokenRow
from sync.state.repos.maintenance import MaintenanceRepo
from sync.state.repos.quarantine import QuarantineRepo
from sync.state.repos.runs import RunsRepo

log = logging.getLogger(__name__)

# Names other modules import from here (the repositories live in sync.state.repos).
__all__ = [
    "OPEN_INTENT_STATES",
    "BindRow",
    "IntentClaimed",
    "StateStore",
    "StoredBases",
    "TokenRow",
    "decode_text",
    "decode_value",
    "encode_value",
    "iter_chunks",
]


class StateStore(
    BindingsRepo,
    IntentsRepo,
    QuarantineRepo,
    RunsRepo,
    InboxRepo,
    LeasesRepo,
    AlertsRepo,
    MaintenanceRepo,
    StoreBase,
):
    """State store of one deployment (all tenants), on SQLite or PostgreSQL.

    The facade over the repositories in ``sync.state.repos`` (one per family of tables);
    every method is one short transaction unless it says otherwise."""

    def gauge_rows(self) -> GaugeRows:
        """The rows the service's state gauges show (``sync.state.gauges``), in one connection."""
        return gauge_rows(self)
