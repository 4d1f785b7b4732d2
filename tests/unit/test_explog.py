"""Experiment log records: stream entries to Arrow rows; every bad entry is counted by reason."""

from __future__ import annotations

import json

import pytest

from store import explog, keys


def _exp(seq: int, **kw: object) -> bytes:
    rec = explog.exposure("acme", "e1", "control", f"s{seq}", None, ["a", "b"], "v1", "model", "recommend",
                          1_796_000_000_000 + seq, "w1", seq)
    rec.update(kw)
    return explog.encode(rec)


def test_entries_to_table_and_quarantine() -> None:
    entries = [
        (b"1-0", {explog.FIELD: _exp(0)}),
        (b"1-1", {explog.FIELD: b"{oops"}),
        (b"1-2", {explog.FIELD: _exp(2, variant=None)}),
        (b"1-3", {explog.FIELD: json.dumps([1, 2]).encode()}),
        (b"1-4", None),
        (b"1-5", {explog.FIELD: _exp(5, items=7)}),  # not a list: caught row by row
        ("1-6", {"d": _exp(6).decode()}),  # a client that decodes responses
        (b"1-7", {explog.FIELD: b"[" + _exp(7) + b"," + _exp(8) + b"]"}),  # an array of records
        (b"1-8", {explog.FIELD: explog.encode_batch("acme", "w2", [  # a replica's flush: one entry
            ("e1", "model", "s9", "v9", ["x", "y", "z"], "v1", "model", "recommend", 1_796_000_000_009, 9),
            ("e1", "model", "s10", None, ["x"], None, "popular", "recommend", 1_796_000_000_010, 10),
            ("too", "short")])}),
    ]
    table, bad = explog.to_table("exposures", entries)
    assert table.column("stream_id").to_pylist() == ["1-0", "1-6", "1-7:0", "1-7:1", "1-8:0", "1-8:1"]
    assert table.column("seq").to_pylist() == [0, 6, 7, 8, 9, 10]
    assert bad == {"not JSON": 1, "missing variant": 1, "not a JSON object": 3, "deleted entry": 1,
                   "bad value for items": 1}
    flushed = table.to_pylist()[4]
    assert (flushed["tenant"], flushed["writer"], flushed["visitor_id"], flushed["positions"]) == ("acme", "w2", "v9",
                                                                                                 [0, 1, 2])
    row = table.to_pylist()[0]
    assert row["items"] == ["a", "b"] and row["positions"] == [0, 1] and row["seq"] == 0
    assert row["time"].year == 2026 and str(row["time"].tzinfo) == "UTC"


def test_outcome_rows_and_stream_keys() -> None:
    rec = explog.outcome("acme", "s1", "u1", "purchase", "i9", 30.5, 1_796_000_000_000, 1_796_000_000_500, "w", 3)
    table, bad = explog.to_table("outcomes", [(b"5-0", {explog.FIELD: explog.encode(rec)})])
    assert not bad and table.to_pylist()[0]["revenue"] == 30.5
    assert keys.log_stream("exposures", "acme") == "tandem:acme:log:exposures"
    with pytest.raises(ValueError, match="live-event stream"):
        keys.log_stream("outcomes", "acme")
    assert explog.OUTCOME_OF_EVENT == {"view": "click", "cart": "cart", "purchase": "purchase"}
    assert explog.stream_id_ms("1796000000000-3") == 1_796_000_000_000


def test_outcomes_from_live_events() -> None:
    entries = [
        (b"10-0", explog.event_entry("s1", "i1", "view", 1_796_000_000_000)),
        (b"10-1", explog.event_entry("s1", "i1", "cart", 1_796_000_000_100, 9.5)),
        (b"10-2", explog.event_entry("s1", "i1", "purchase", 1_796_000_000_200, 19.0, user_id="u1")),
        (b"10-3", explog.event_entry("s1", "i1", "remove_from_cart", 1_796_000_000_300)),
        (b"10-4", {"session_id": "s2", "event": "{broken"}),
    ]
    table, bad = explog.outcomes_from_events("acme", entries)
    rows = table.to_pylist()
    assert [(r["event_type"], r["revenue"]) for r in rows] == [("click", 0.0), ("cart", 0.0), ("purchase", 19.0)]
    assert rows[2]["visitor_id"] == "u1" and rows[0]["stream_id"] == "10-0" and rows[0]["tenant"] == "acme"
    assert bad == {"unreadable event": 1}  # remove_from_cart is not an outcome, and not an error
