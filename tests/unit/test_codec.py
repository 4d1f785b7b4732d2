"""store.codec: the one value format that precompute writes and serving reads."""

from __future__ import annotations

import json

import pytest

from store import codec


def test_score_round_trip_is_exact() -> None:
    for score in (0.0, 0.125, 1 / 3, 1e-12, 1.0):
        assert codec.as_score(codec.decode(codec.encode_score(score))) == score
    assert codec.encode_score(0.125) == "0.125"


def test_top_k_round_trip_keeps_order_and_is_compact() -> None:
    pairs = [("i2", 0.9), ("i10", 0.5), ("i1", 0.5)]
    raw = codec.encode_top_k(pairs)
    assert raw == '[["i2",0.9],["i10",0.5],["i1",0.5]]'
    assert codec.as_top_k(codec.decode(raw.encode())) == pairs


@pytest.mark.parametrize("raw", [None, b"not json", "{broken", b"\xff\xfe"])
def test_unreadable_or_missing_values_decode_to_none(raw: bytes | str | None) -> None:
    assert codec.decode(raw) is None


def test_typed_views_refuse_the_wrong_shape() -> None:
    assert codec.as_score([1, 2]) is None and codec.as_score(True) is None and codec.as_score("0.5") is None
    assert codec.as_top_k(0.5) is None and codec.as_top_k(None) is None
    assert codec.as_score(3) == 3.0


def test_events_are_compact_json_objects() -> None:
    raw = codec.encode_event({"item_id": "i1", "price": None})
    assert raw == '{"item_id":"i1","price":null}' and json.loads(raw)["item_id"] == "i1"
