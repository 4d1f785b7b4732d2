"""Per-session tables from sorted events: browsed-item sequences and session summaries. Pure Arrow/numpy.

``sequences_table`` feeds the recommenders; ``session_summaries_table`` (owner, start, end,
purchase, spend) is the history that user features and labels are computed from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.features.session import events_to_arrow
from models.features.sessionize import US_PER_S, Sorted, last_valid, sort_sessions


def session_summaries_table(srt: Sorted) -> pa.Table:
    """One row per session: owner ``user_id``, start, end (seconds), purchased, spend (purchase value),
    first_purchase (seconds, NaN if none). Sessions in ``session_id`` order."""
    starts = srt.starts
    if srt.n_rows == 0:
        return _empty_summaries()
    t = srt.t_us / US_PER_S
    buy = pc.equal(srt.table["event_type"], "purchase").to_numpy(zero_copy_only=False)[srt.order]
    price = srt.floats("price")
    spend_rows = buy & ~np.isnan(price)
    user = last_valid(srt.valid("user_id"), starts)
    ends = np.r_[starts[1:], len(t)]
    first_buy = np.minimum.reduceat(np.where(buy, np.arange(len(t)), len(t)), starts)
    return pa.table({
        "session_id": srt.session_ids, "user_id": srt.take("user_id", user),
        "start": t[starts], "end": t[ends - 1], "purchased": first_buy < len(t),
        "spend": np.add.reduceat(np.where(spend_rows, price, 0.0), starts),
        "first_purchase": np.where(first_buy < len(t), t[np.minimum(first_buy, len(t) - 1)], np.nan),
    })


def _empty_summaries() -> pa.Table:
    return pa.schema([("session_id", pa.string()), ("user_id", pa.string()), ("start", pa.float64()),
                      ("end", pa.float64()), ("purchased", pa.bool_()), ("spend", pa.float64()),
                      ("first_purchase", pa.float64())]).empty_table()


def session_summaries(events: pd.DataFrame) -> pd.DataFrame:
    """``session_summaries_table`` for a pandas frame of canonical events."""
    return session_summaries_table(sort_sessions(events_to_arrow(events))).to_pandas()


def sequences(events: pd.DataFrame) -> pd.DataFrame:
    """Per session: the ordered browsed items (views and carts), their times and the last time."""
    out = sequences_table(sort_sessions(events_to_arrow(events))).to_pandas()
    for col in ("items", "times"):
        out[col] = out[col].map(list)
    return out


def sequences_table(srt: Sorted) -> pa.Table:
    """``sequences`` from events sorted by (session, time): list columns built from segment offsets."""
    browse = np.flatnonzero(pc.not_equal(srt.table["event_type"], "purchase").to_numpy(zero_copy_only=False)[srt.order])
    sess = srt.session[browse]
    starts = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]]) if len(sess) else np.zeros(0, dtype=np.int64)
    offsets = pa.array(np.r_[starts, len(browse)].astype(np.int32))
    ends = np.r_[starts[1:], len(browse)]
    times = srt.take("event_time", browse)
    tenant = last_valid(srt.valid("tenant")[browse], starts)
    seg = np.searchsorted(srt.starts, browse[starts], side="right") - 1
    return pa.table({
        "session_id": srt.session_ids.take(pa.array(seg, pa.int64())),
        "items": pa.ListArray.from_arrays(offsets, srt.take("item_id", browse)),
        "times": pa.ListArray.from_arrays(offsets, times),
        "last_time": times.take(pa.array(ends - 1, pa.int64())) if len(starts) else times,
        "tenant": srt.take("tenant", np.where(tenant >= 0, browse[np.maximum(tenant, 0)], -1)),
    })
