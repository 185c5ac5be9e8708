"""``InboundRecord`` markers: which inbound record versions the ERP sink already holds.

They live in the state store now (``sync.state.repos.inbox``), the only writer of its tables:
sinks call ``StateStore.inbound_unwritten`` / ``inbound_marked`` to skip what is written,
``inbound_mark_delivered`` after writing, or ``inbound_mark`` inside ``StateStore.transaction()``
to commit the markers together with their own bookkeeping. The session-level functions are
re-exported here for code written against this module.
"""

from __future__ import annotations

from sync.state.repos.inbox import found_for, mark, marked, unwritten

__all__ = ["found_for", "mark", "marked", "unwritten"]
