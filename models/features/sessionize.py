"""Sessionization: events sorted once by (session, time), stable hashes, day strings, gap sessions.

The batch feature code sorts a block of canonical events once with ``np.lexsort`` on
integer codes (no string sort, no pandas group-by) and reduces each session's rows with
``np.*.reduceat`` over the segment starts. The sort is stable, so events with equal
times keep their input order, the same order as a stable pandas sort by
``["session_id", "event_time"]``. Sessions come out in ``session_id`` order.

Gap sessionization cuts a user's events at an inactivity gap: ``sessionize_by_gap`` on a
frame (the feature job's ``--gap-minutes``, ids ``<user>@<start s>``) and ``sessionize_gap``
on arrays (the Retailrocket ingest adapter, ids ``<user>-<start ms>``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

US_PER_S = 1e6
_US = pa.timestamp("us", tz="UTC")


def _array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def codes(col: pa.ChunkedArray | pa.Array, ordered: bool = False) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of a string column (null: -1) and the dictionary they index.

    With ``ordered`` the codes follow the sort order of the values, so sorting by code
    sorts by value.
    """
    enc = pc.dictionary_encode(_array(col))
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    dictionary = enc.dictionary
    if ordered and len(dictionary):
        by_value = pc.sort_indices(dictionary).to_numpy()
        rank = np.empty(len(by_value), dtype=np.int64)
        rank[by_value] = np.arange(len(by_value))
        idx = np.where(idx >= 0, rank[np.maximum(idx, 0)], -1)
        dictionary = dictionary.take(pa.array(by_value))
    return idx, dictionary


def segment_starts(keys: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal values in ``keys`` (sorted)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def last_valid(valid: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment, the position of its last row where ``valid`` holds, or -1."""
    pos = np.where(valid, np.arange(len(valid)), -1)
    return np.maximum.reduceat(pos, starts) if len(starts) else np.zeros(0, dtype=np.int64)


def take_or_null(col: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> pa.Array:
    """``col`` at ``rows``; -1 gives null."""
    missing = rows < 0
    return _array(col).take(pa.array(np.where(missing, 0, rows), mask=missing))


def count_distinct(seg: np.ndarray, value_codes: np.ndarray, n_segments: int) -> np.ndarray:
    """Per segment, the number of distinct non-null (code >= 0) values."""
    ok = value_codes >= 0
    if not ok.any():
        return np.zeros(n_segments, dtype=np.int64)
    width = np.int64(value_codes.max() + 1)
    pairs = np.sort(seg[ok].astype(np.int64) * width + value_codes[ok])
    first = np.r_[True, pairs[1:] != pairs[:-1]]
    return np.bincount(pairs[first] // width, minlength=n_segments)


@dataclass(frozen=True)
class Sorted:
    """Events in (session, time) order, without copying the table.

    ``table`` is the input as given and ``order`` the sorting permutation; ``session`` is the
    ordered session code per sorted row, ``t_us`` the sorted event time in microseconds,
    ``starts`` the first sorted row of each session and ``session_ids`` the id of each session
    (ascending). Columns are reordered on demand, as numpy codes or values where possible.
    """

    table: pa.Table
    order: np.ndarray
    session: np.ndarray
    t_us: np.ndarray
    starts: np.ndarray
    session_ids: pa.Array

    @property
    def n_rows(self) -> int:
        return len(self.order)

    def segment_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.starts)), np.diff(np.r_[self.starts, len(self.session)]))

    def codes(self, name: str) -> tuple[np.ndarray, pa.Array]:
        """Dictionary codes of a string column in sorted order (null: -1) and the dictionary."""
        idx, dictionary = codes(self.table[name])
        return idx[self.order], dictionary

    def floats(self, name: str) -> np.ndarray:
        col = pc.cast(_array(self.table[name]), pa.float64()).to_numpy(zero_copy_only=False)
        result: np.ndarray = np.asarray(col, dtype=float)[self.order]
        return result

    def valid(self, name: str) -> np.ndarray:
        result: np.ndarray = _array(self.table[name]).is_valid().to_numpy(zero_copy_only=False)[self.order]
        return result

    def take(self, name: str, rows: np.ndarray) -> pa.Array:
        """Column ``name`` at sorted positions ``rows`` (-1 gives null)."""
        return take_or_null(self.table[name], np.where(rows >= 0, self.order[np.maximum(rows, 0)], -1))


def sort_sessions(events: pa.Table) -> Sorted:
    """Sort canonical events by (session_id, event_time), stable, and find the sessions."""
    session, dictionary = codes(events["session_id"], ordered=True)
    t_us = pc.cast(_array(events["event_time"]), _US).cast(pa.int64()).to_numpy(zero_copy_only=False)
    order = np.lexsort((t_us, session))
    session, t_us = session[order], t_us[order]
    starts = segment_starts(session)
    ids = dictionary.take(pa.array(session[starts])) if len(starts) else pa.array([], pa.string())
    return Sorted(table=events, order=order, session=session, t_us=t_us, starts=starts, session_ids=ids)


def hash_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable 64-bit hash of each string (null hashes as ""), vectorised over Arrow's buffers.

    A polynomial over the UTF-8 bytes, then the splitmix64 finaliser; it depends only on the
    bytes, so buckets are the same in every process and run.
    """
    arr = pc.fill_null(_array(values), "")
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    n = len(arr)
    if n > _HASH_CHUNK:  # bounds the per-byte temporaries
        return np.concatenate([hash_strings(arr.slice(i, _HASH_CHUNK)) for i in range(0, n, _HASH_CHUNK)])
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0]:offsets[-1]].astype(np.uint64)
    off = offsets - offsets[0]
    lengths = np.diff(off)
    h = np.zeros(n, dtype=np.uint64)
    if len(data):
        powers = np.cumprod(np.r_[np.uint64(1), np.full(int(lengths.max()), _P, dtype=np.uint64)])
        exponent = np.repeat(off[1:] - 1, lengths) - np.arange(len(data))
        some = lengths > 0
        h[some] = np.add.reduceat(data * powers[exponent], off[:-1][some])
    h ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


_HASH_CHUNK = 1 << 18
_P = np.uint64(1_099_511_628_211)  # the FNV-1 64-bit prime


def day_strings(t_us: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` (UTC) of each microsecond time, as an object array."""
    days = np.floor_divide(t_us, np.int64(86_400_000_000))
    uniq, inv = np.unique(days, return_inverse=True)
    names = np.datetime_as_string(uniq.astype("datetime64[D]"), unit="D").astype(object)
    return names[inv]


def sessionize_by_gap(ev: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """New session ids: per user (or source session when anonymous), split at gaps > ``gap_minutes``."""
    who = ev["user_id"].fillna("anon:" + ev["session_id"].astype(str)).astype(str)
    ev = ev.assign(_who=who).sort_values(["_who", "event_time"], kind="stable")
    t = ev["event_time"].astype("int64").to_numpy() / 1e6
    w = ev["_who"].to_numpy()
    new = np.r_[True, (w[1:] != w[:-1]) | (np.diff(t) > gap_minutes * 60)]
    start = pd.Series(np.where(new, t, np.nan), index=ev.index).ffill().to_numpy()
    ev["session_id"] = ev["_who"] + "@" + start.astype(np.int64).astype(str)
    return ev.drop(columns=["_who"])


def sessionize_gap(users: np.ndarray, times_us: np.ndarray, gap_minutes: float) -> np.ndarray:
    """Session ids ``<user>-<first event ms>``: a new session after ``gap_minutes`` of inactivity."""
    n = len(users)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    order = np.lexsort((times_us, users))
    u, t = users[order], times_us[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (t[1:] - t[:-1] > gap_minutes * 60e6)
    start_idx = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    out[order] = [f"{user}-{ms}" for user, ms in zip(u, t[start_idx] // 1000, strict=True)]
    return out
