"""``StoredBases`` holds each stored row packed into one string where it can, and decodes on lookup."""

from __future__ import annotations

from decimal import Decimal

from sync.state.store import StoredBases


def test_packed_rows_decode_to_the_stored_bases() -> None:
    rows = {
        "a": StoredBases.pack("r1", '{"x": 1}', None),
        "b": StoredBases.pack("r2", '{"p": "\\u001fd:1.5", "__children__": {"s": [{"n": "M"}]}}', '"3"'),
        "c": StoredBases.pack("r\x003", None, "v"),  # no snapshot, a NUL in the id: kept as a tuple
        "d": StoredBases.pack("r4", "{}", ""),
    }
    assert isinstance(rows["a"], str) and isinstance(rows["b"], str) and isinstance(rows["c"], tuple)
    bases = StoredBases(rows)
    assert len(bases) == 4 and list(bases) == ["a", "b", "c", "d"] and "a" in bases
    a, b, c, d = (bases[k] for k in "abcd")
    assert (a.remote_id, a.fields, a.children, a.version) == ("r1", {"x": 1}, {}, None)
    assert (b.remote_id, b.fields, b.children, b.version) == (
        "r2",
        {"p": Decimal("1.5")},
        {"s": [{"n": "M"}]},
        '"3"',
    )
    assert (c.remote_id, c.fields, c.version) == ("r\x003", {}, "v")
    assert (d.remote_id, d.fields, d.version) == ("r4", {}, "")
    assert bases.get("zz") is None and bases.get("a") == a
