"""Sorting into session segments and the stable string hash that assigns buckets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from models.features.sessionize import count_distinct, hash_strings, sort_sessions


def test_hash_is_pinned_slice_safe_and_spreads() -> None:
    a = pa.array(["", "a", "s123", None, "ü"])
    # Pinned: bucket files of earlier runs must keep their meaning (incremental runs rely on it).
    assert hash_strings(a).tolist() == [0, 18119689086777206668, 6296795546465718838, 0, 8662396718738504163]
    assert hash_strings(a.slice(2)).tolist() == hash_strings(a)[2:].tolist()
    assert hash_strings(pa.chunked_array([a.slice(0, 2), a.slice(2)])).tolist() == hash_strings(a).tolist()
    ids = pa.array([f"s{i}" for i in range(300_000)])  # crosses the internal chunk size
    counts = np.bincount(hash_strings(ids) % np.uint64(16), minlength=16)
    assert counts.min() > 0.9 * 300_000 / 16 and counts.max() < 1.1 * 300_000 / 16


def test_sort_sessions_is_stable_and_ordered_by_session_id() -> None:
    t = pa.array([3, 1, 1, 2, 0], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table({"event_time": t, "session_id": ["b", "a", "b", "b", "a"], "tag": ["b3", "a1", "b1", "b2", "a0"]})
    srt = sort_sessions(table)
    assert srt.session_ids.to_pylist() == ["a", "b"] and srt.starts.tolist() == [0, 2]
    assert table["tag"].take(pa.array(srt.order)).to_pylist() == ["a0", "a1", "b1", "b2", "b3"]


def test_count_distinct_ignores_nulls() -> None:
    seg = np.array([0, 0, 0, 1, 1, 2])
    assert count_distinct(seg, np.array([5, 5, 7, -1, -1, 0]), 3).tolist() == [2, 0, 1]


def test_bucket_of_matches_hashing_every_row() -> None:
    from pipelines.feature_tasks import bucket_of

    keys = pa.chunked_array([["s1", "s2", None, "s1"], ["", "s3", "s2", None, "é"]])
    want = (hash_strings(keys) % np.uint64(7)).astype(np.int32)
    assert bucket_of(keys, 7).tolist() == want.tolist()
    assert bucket_of(pa.array([None, None], pa.string()), 5).tolist() == [0, 0]
    assert bucket_of(pa.array([], pa.string()), 5).tolist() == []
