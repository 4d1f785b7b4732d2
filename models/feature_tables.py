"""Point-in-time user features, item features, labels and sequences. Pure Arrow/pandas/numpy.

The feature job computes session summaries and sequences per bucket of sessions, then
user features and labels per bucket of users (every session summary of a user lands in
the same bucket), so the user functions see a user's whole history.

Which user a session belongs to:

- its **owner** (``session_summaries``' ``user_id``) is the last non-null user id of the
  session in time order, over all its events. The owner's history counts the session.
- its **feature user** is the last non-null user id among the events before the
  session's cutoff (the ``user_id`` of ``models.features.session_features``). User
  features and the label of the session come from the feature user, so a login that
  happens only at the purchase (after the cutoff) does not leak into them.

Point-in-time rule: a feature attached to a session starting at t uses only sessions
that ended strictly before t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.segments import US_PER_S, Sorted, last_valid, sort_sessions

WINDOWS_DAYS = (1, 7, 30)
USER_FEATURES: tuple[str, ...] = tuple(
    [f"u_sessions_{d}d" for d in WINDOWS_DAYS] + [f"u_purchases_{d}d" for d in WINDOWS_DAYS]
    + [f"u_spend_{d}d" for d in WINDOWS_DAYS] + ["u_days_since_last_purchase", "u_days_since_last_session"]
)
DAY = 86_400.0
_SHIFT = np.int64(1 << 34)  # > seconds in 500 years, so (user, time) packs into one int64


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
    from models.features import events_to_arrow

    return session_summaries_table(sort_sessions(events_to_arrow(events))).to_pandas()


def user_features(summaries: pd.DataFrame, at: pd.Series | None = None) -> pd.DataFrame:
    """Point-in-time RFM features per session, from the user's sessions that ended before ``at``.

    ``at`` (seconds, aligned with ``summaries``) defaults to each session's start.
    Anonymous sessions get NaN.
    """
    s = summaries.reset_index(drop=True)
    at_s = (s["start"] if at is None else at).to_numpy(dtype=float)
    return user_features_at(s, s["user_id"].to_numpy(dtype=object), at_s)


def _user_codes(history_users: np.ndarray, query_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shared integer codes for two arrays of non-null user ids."""
    _, inv = np.unique(np.r_[history_users.astype(str), query_users.astype(str)], return_inverse=True)
    return inv[: len(history_users)].astype(np.int64), inv[len(history_users):].astype(np.int64)


def user_features_at(history: pd.DataFrame, users: np.ndarray, at: np.ndarray) -> pd.DataFrame:
    """User features of each query (``users[i]`` at time ``at[i]``, seconds) over ``history``.

    ``history`` holds session summaries (``user_id``, ``end``, ``purchased``, ``spend``);
    only sessions of the same user that ended strictly before ``at`` count. A null user gives NaN.
    """
    users = np.asarray(users, dtype=object)
    at_s = np.asarray(at, dtype=float)
    out = pd.DataFrame(index=pd.RangeIndex(len(users)), columns=list(USER_FEATURES), dtype=float)
    known = ~pd.isna(users)
    h_known = history["user_id"].notna().to_numpy()
    if not known.any():
        return out
    h_codes, q_user = _user_codes(history["user_id"].to_numpy(dtype=object)[h_known], users[known])
    hist = pd.DataFrame({"u": h_codes, "end": history["end"].to_numpy(dtype=float)[h_known],
                         "buy": history["purchased"].to_numpy(dtype=bool)[h_known],
                         "spend": history["spend"].to_numpy(dtype=float)[h_known]})
    hist = hist.sort_values(["u", "end"], kind="stable").reset_index(drop=True)
    keys = hist["u"].to_numpy() * _SHIFT + np.floor(hist["end"].to_numpy()).astype(np.int64)
    cum_n = np.r_[0, np.arange(1, len(hist) + 1)]
    cum_buy = np.r_[0, np.cumsum(hist["buy"].to_numpy(dtype=float))]
    cum_spend = np.r_[0, np.cumsum(hist["spend"].to_numpy(dtype=float))]
    buy_end = np.where(hist["buy"].to_numpy(), hist["end"].to_numpy(), np.nan)
    last_buy = pd.Series(buy_end).groupby(hist["u"]).ffill().to_numpy()
    q_at = at_s[known]
    hi = np.searchsorted(keys, q_user * _SHIFT + np.ceil(q_at).astype(np.int64), side="left")  # ended before at
    first_of_user = np.searchsorted(keys, q_user * _SHIFT, side="left")
    has_prev = hi > first_of_user
    vals: dict[str, np.ndarray] = {}
    for d in WINDOWS_DAYS:
        lo = np.maximum(np.searchsorted(keys, q_user * _SHIFT + np.ceil(q_at - d * DAY).astype(np.int64), "left"),
                        first_of_user)
        vals[f"u_sessions_{d}d"] = (cum_n[hi] - cum_n[lo]).astype(float)
        vals[f"u_purchases_{d}d"] = cum_buy[hi] - cum_buy[lo]
        vals[f"u_spend_{d}d"] = cum_spend[hi] - cum_spend[lo]
    prev = np.clip(hi - 1, 0, max(len(hist) - 1, 0))
    end_prev = hist["end"].to_numpy()[prev] if len(hist) else np.full(len(prev), np.nan)
    vals["u_days_since_last_session"] = np.where(has_prev, (q_at - end_prev) / DAY, np.nan)
    lb = last_buy[prev] if len(hist) else np.full(len(prev), np.nan)
    vals["u_days_since_last_purchase"] = np.where(has_prev, (q_at - lb) / DAY, np.nan)
    for name, v in vals.items():
        out.loc[known, name] = v
    return out


def purchase_within(summaries: pd.DataFrame, cutoff: pd.Series, days: float) -> np.ndarray:
    """Label: the session, or a later session of the same user, has a purchase in (cutoff, cutoff + days]."""
    s = summaries.reset_index(drop=True)
    return purchase_within_at(s, s["user_id"].to_numpy(dtype=object), cutoff.to_numpy(dtype=float),
                              s["purchased"].to_numpy(dtype=bool), days)


def purchase_within_at(history: pd.DataFrame, users: np.ndarray, cutoff: np.ndarray, own: np.ndarray,
                       days: float) -> np.ndarray:
    """Label per query: ``own`` purchase, or a purchase of the same user in ``history`` (first purchase
    of a session) in (cutoff, cutoff + days]."""
    users = np.asarray(users, dtype=object)
    out = np.asarray(own, dtype=bool).copy()
    known = ~pd.isna(users)
    buys = history[history["user_id"].notna().to_numpy() & history["first_purchase"].notna().to_numpy()]
    if not known.any() or buys.empty:
        return out.astype(np.int8)
    b_codes, q_codes = _user_codes(buys["user_id"].to_numpy(dtype=object), users[known])
    bkeys = np.sort(b_codes * _SHIFT + np.floor(buys["first_purchase"].to_numpy(dtype=float)).astype(np.int64))
    c = np.asarray(cutoff, dtype=float)[known]
    base = q_codes * _SHIFT
    lo = np.searchsorted(bkeys, base + np.floor(c).astype(np.int64), side="right")
    hi = np.searchsorted(bkeys, base + np.floor(c + days * DAY).astype(np.int64), side="right")
    out[known] = out[known] | (hi > lo)
    return out.astype(np.int8)


def item_features(counts: pd.DataFrame) -> pd.DataFrame:
    """Conversion, popularity rank and trend from per-item counts over 1 and 7 days."""
    out = counts.groupby("item_id", sort=False).sum().reset_index()
    out["conversion_7d"] = out["purchases_7d"] / out["views_7d"].where(out["views_7d"] > 0)
    out["trend"] = (out["views_1d"] * 7.0 + 1.0) / (out["views_7d"] + 1.0)
    out["popularity"] = out["views_7d"] + 3 * out["carts_7d"] + 10 * out["purchases_7d"]
    out = out.sort_values("popularity", ascending=False, kind="stable").reset_index(drop=True)
    out["popularity_rank"] = np.arange(1, len(out) + 1)
    return out


def sequences(events: pd.DataFrame) -> pd.DataFrame:
    """Per session: the ordered browsed items (views and carts), their times and the last time."""
    from models.features import events_to_arrow

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
