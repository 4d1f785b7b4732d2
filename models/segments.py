"""Events sorted once by (session, time), as contiguous segments, for vectorised per-session reductions.

The batch feature code sorts a block of canonical events once with ``np.lexsort`` on
integer codes (no string sort, no pandas group-by) and reduces each session's rows with
``np.*.reduceat`` over the segment starts. The sort is stable, so events with equal
times keep their input order, the same order as a stable pandas sort by
``["session_id", "event_time"]``. Sessions come out in ``session_id`` order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
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
    pairs = np.unique(seg[ok].astype(np.int64) * width + value_codes[ok])
    return np.bincount(pairs // width, minlength=n_segments)


@dataclass(frozen=True)
class Sorted:
    """Events in (session, time) order.

    ``table`` is the input reordered, ``session`` the ordered session code per row,
    ``t_us`` the event time in microseconds, ``starts`` the first row of each session and
    ``session_ids`` the id of each session (ascending).
    """

    table: pa.Table
    session: np.ndarray
    t_us: np.ndarray
    starts: np.ndarray
    session_ids: pa.Array

    @property
    def n_segments(self) -> int:
        return len(self.starts)

    def segment_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.starts)), np.diff(np.r_[self.starts, len(self.session)]))


def sort_sessions(events: pa.Table) -> Sorted:
    """Sort canonical events by (session_id, event_time), stable, and find the sessions."""
    session, dictionary = codes(events["session_id"], ordered=True)
    t_us = pc.cast(_array(events["event_time"]), _US).cast(pa.int64()).to_numpy(zero_copy_only=False)
    order = np.lexsort((t_us, session))
    table = events.take(pa.array(order))
    session, t_us = session[order], t_us[order]
    starts = segment_starts(session)
    ids = dictionary.take(pa.array(session[starts])) if len(starts) else pa.array([], pa.string())
    return Sorted(table=table, session=session, t_us=t_us, starts=starts, session_ids=ids)


def day_strings(t_us: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` (UTC) of each microsecond time, as an object array."""
    days = np.floor_divide(t_us, np.int64(86_400_000_000))
    uniq, inv = np.unique(days, return_inverse=True)
    names = np.datetime_as_string(uniq.astype("datetime64[D]"), unit="D").astype(object)
    return names[inv]
