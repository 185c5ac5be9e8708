"""The state store's repositories, one per family of tables, combined by ``StateStore``.

Each module holds the methods of one family as a mixin over ``StoreBase`` (the engine, the
per-thread pinned connection and the transaction helpers), so ``StateStore`` keeps its one
flat API while each family is small and type-checked on its own:

- ``bindings``: bindings and base snapshots (identity and the three-way ancestor);
- ``intents``: the write-ahead log for creates;
- ``quarantine``: rows held back, with their reasons;
- ``runs``: runs and their items;
- ``inbox``: the webhook inbox, pull cursors, inbound record markers, adopted edits;
- ``leases``: leases with fencing tokens, and platform session tokens;
- ``alerts``: alert states and counters;
- ``maintenance``: stale runs, retention, forgetting a tenant.

Only ``sync.state`` writes the state tables (``tests/state/test_only_writer.py`` checks it).
"""
