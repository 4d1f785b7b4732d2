"""Point-in-time user features (RFM over a user's earlier sessions). Pure pandas/numpy.

The feature job computes session summaries per bucket of sessions (``models.features.sequences``),
then user features per bucket of users (every session summary of a user lands in the same
bucket), so these functions see a user's whole history.

Which user a session belongs to:

- its **owner** (``session_summaries``' ``user_id``) is the last non-null user id of the
  session in time order, over all its events. The owner's history counts the session.
- its **feature user** is the last non-null user id among the events before the
  session's cutoff (the ``user_id`` of ``models.features.session.session_features``). User
  features and the label of the session come from the feature user, so a login that
  happens only at the purchase (after the cutoff) does not leak into them.

Point-in-time rule: a feature attached to a session starting at t uses only sessions
that ended strictly before t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOWS_DAYS = (1, 7, 30)
USER_FEATURES: tuple[str, ...] = tuple(
    [f"u_sessions_{d}d" for d in WINDOWS_DAYS] + [f"u_purchases_{d}d" for d in WINDOWS_DAYS]
    + [f"u_spend_{d}d" for d in WINDOWS_DAYS] + ["u_days_since_last_purchase", "u_days_since_last_session"]
)
DAY = 86_400.0
SHIFT = np.int64(1 << 34)  # > seconds in 500 years, so (user, time) packs into one int64


def user_features(summaries: pd.DataFrame, at: pd.Series | None = None) -> pd.DataFrame:
    """Point-in-time RFM features per session, from the user's sessions that ended before ``at``.

    ``at`` (seconds, aligned with ``summaries``) defaults to each session's start.
    Anonymous sessions get NaN.
    """
    s = summaries.reset_index(drop=True)
    at_s = (s["start"] if at is None else at).to_numpy(dtype=float)
    return user_features_at(s, s["user_id"].to_numpy(dtype=object), at_s)


def user_codes(history_users: np.ndarray, query_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    h_codes, q_user = user_codes(history["user_id"].to_numpy(dtype=object)[h_known], users[known])
    hist = pd.DataFrame({"u": h_codes, "end": history["end"].to_numpy(dtype=float)[h_known],
                         "buy": history["purchased"].to_numpy(dtype=bool)[h_known],
                         "spend": history["spend"].to_numpy(dtype=float)[h_known]})
    hist = hist.sort_values(["u", "end"], kind="stable").reset_index(drop=True)
    keys = hist["u"].to_numpy() * SHIFT + np.floor(hist["end"].to_numpy()).astype(np.int64)
    cum_n = np.r_[0, np.arange(1, len(hist) + 1)]
    cum_buy = np.r_[0, np.cumsum(hist["buy"].to_numpy(dtype=float))]
    cum_spend = np.r_[0, np.cumsum(hist["spend"].to_numpy(dtype=float))]
    buy_end = np.where(hist["buy"].to_numpy(), hist["end"].to_numpy(), np.nan)
    last_buy = pd.Series(buy_end).groupby(hist["u"]).ffill().to_numpy()
    q_at = at_s[known]
    hi = np.searchsorted(keys, q_user * SHIFT + np.ceil(q_at).astype(np.int64), side="left")  # ended before at
    first_of_user = np.searchsorted(keys, q_user * SHIFT, side="left")
    has_prev = hi > first_of_user
    vals: dict[str, np.ndarray] = {}
    for d in WINDOWS_DAYS:
        lo = np.maximum(np.searchsorted(keys, q_user * SHIFT + np.ceil(q_at - d * DAY).astype(np.int64), "left"),
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
