"""Point-in-time user features, item features, labels and sequences. Pure pandas/numpy.

These run per bucket of users inside the feature job (every session of a user lands
in the same bucket), so each function sees a user's whole history.

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
_SHIFT = np.int64(1 << 34)  # > seconds in 500 years, so (user, time) packs into one int64


def session_summaries(events: pd.DataFrame) -> pd.DataFrame:
    """One row per session: user, start, end (seconds), purchased, spend (purchase value)."""
    t = pd.to_datetime(events["event_time"], utc=True).astype("int64").to_numpy() / 1e6
    is_buy = (events["event_type"] == "purchase").to_numpy()
    price = pd.to_numeric(events.get("price"), errors="coerce") if "price" in events else pd.Series(np.nan, index=events.index)
    frame = pd.DataFrame({"session_id": events["session_id"].to_numpy(), "user_id": events["user_id"].to_numpy()
                          if "user_id" in events else None, "t": t, "buy": is_buy,
                          "spend": np.where(is_buy, price.to_numpy(dtype=float), 0.0)})
    g = frame.groupby("session_id", sort=False)
    out = pd.DataFrame({"user_id": g["user_id"].last(), "start": g["t"].min(), "end": g["t"].max(),
                        "purchased": g["buy"].any(), "spend": g["spend"].sum(min_count=1).fillna(0.0)})
    first_buy = frame[frame["buy"]].groupby("session_id")["t"].min()
    out["first_purchase"] = first_buy.reindex(out.index)
    return out.reset_index()


def user_features(summaries: pd.DataFrame, at: pd.Series | None = None) -> pd.DataFrame:
    """Point-in-time RFM features per session, from the user's sessions that ended before ``at``.

    ``at`` (seconds, aligned with ``summaries``) defaults to each session's start.
    Anonymous sessions get NaN.
    """
    s = summaries.reset_index(drop=True)
    at_s = (s["start"] if at is None else at).to_numpy(dtype=float)
    out = pd.DataFrame(index=s.index, columns=list(USER_FEATURES), dtype=float)
    known = s["user_id"].notna().to_numpy()
    if not known.any():
        return out
    users, codes = np.unique(s.loc[known, "user_id"].astype(str).to_numpy(), return_inverse=True)
    hist = pd.DataFrame({"u": codes.astype(np.int64), "end": s.loc[known, "end"].to_numpy(),
                         "buy": s.loc[known, "purchased"].to_numpy(), "spend": s.loc[known, "spend"].to_numpy()})
    hist = hist.sort_values(["u", "end"], kind="stable").reset_index(drop=True)
    keys = hist["u"].to_numpy() * _SHIFT + np.floor(hist["end"].to_numpy()).astype(np.int64)
    cum_n = np.r_[0, np.arange(1, len(hist) + 1)]
    cum_buy = np.r_[0, np.cumsum(hist["buy"].to_numpy(dtype=float))]
    cum_spend = np.r_[0, np.cumsum(hist["spend"].to_numpy(dtype=float))]
    buy_end = np.where(hist["buy"].to_numpy(), hist["end"].to_numpy(), np.nan)
    last_buy = pd.Series(buy_end).groupby(hist["u"]).ffill().to_numpy()
    q_user = codes.astype(np.int64)
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
    vals["u_days_since_last_session"] = np.where(has_prev, (q_at - hist["end"].to_numpy()[prev]) / DAY, np.nan)
    lb = last_buy[prev] if len(hist) else np.full(len(prev), np.nan)
    vals["u_days_since_last_purchase"] = np.where(has_prev, (q_at - lb) / DAY, np.nan)
    for name, v in vals.items():
        out.loc[known, name] = v
    return out


def purchase_within(summaries: pd.DataFrame, cutoff: pd.Series, days: float) -> np.ndarray:
    """Label: the session, or a later session of the same user, has a purchase in (cutoff, cutoff + days]."""
    s = summaries.reset_index(drop=True)
    own = s["purchased"].to_numpy(dtype=bool)
    out = own.copy()
    known = s["user_id"].notna().to_numpy()
    if not known.any():
        return out.astype(np.int8)
    buys = s.loc[known & s["first_purchase"].notna().to_numpy()]
    if buys.empty:
        return out.astype(np.int8)
    users, codes = np.unique(s.loc[known, "user_id"].astype(str).to_numpy(), return_inverse=True)
    lookup = dict(zip(users, range(len(users)), strict=True))
    bkeys = np.sort(buys["user_id"].astype(str).map(lookup).to_numpy(np.int64) * _SHIFT
                    + np.floor(buys["first_purchase"].to_numpy()).astype(np.int64))
    c = cutoff.to_numpy(dtype=float)[known]
    base = codes.astype(np.int64) * _SHIFT
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
    ev = events[events["event_type"] != "purchase"].sort_values(["session_id", "event_time"], kind="stable")
    g = ev.groupby("session_id", sort=True)
    out = pd.DataFrame({"items": g["item_id"].agg(list), "times": g["event_time"].agg(list),
                        "last_time": g["event_time"].max(),
                        "tenant": g["tenant"].last() if "tenant" in ev else None})
    return out.reset_index()
