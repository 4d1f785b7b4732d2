"""The pandas group-by implementation of ``session_features`` before the segment rewrite.

Frozen here as the reference for the parity test; the library no longer uses it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.features.session import KEY, LABEL, SESSION_FEATURES

_INPUT = ("event_time", "session_id", "user_id", "item_id", "event_type", "price", "category", "tenant")


def reference_session_features(events: pd.DataFrame, cut_at_first_purchase: bool = True) -> pd.DataFrame:
    """The old pandas group-by path of ``session_features`` (multi-session input).

    Returns a frame with ``session_id``, ``user_id`` (last seen), ``tenant``,
    ``cutoff_time`` (time of the last event used), the features and, when
    ``cut_at_first_purchase``, the label ``purchased``. Row order follows
    ``session_id``.
    """
    if events.empty:
        return pd.DataFrame()
    ev = events.loc[:, [c for c in _INPUT if c in events.columns]].copy()
    for col in ("user_id", "price", "category", "tenant"):
        if col not in ev.columns:
            ev[col] = np.nan if col == "price" else None
    ev["event_time"] = pd.to_datetime(ev["event_time"], utc=True)
    ev = ev.sort_values(["session_id", "event_time"], kind="stable")

    is_purchase = (ev["event_type"] == "purchase").to_numpy()
    label = None
    if cut_at_first_purchase:
        seen_purchase = pd.Series(is_purchase, index=ev.index).groupby(ev["session_id"], sort=False).cummax()
        label = pd.Series(is_purchase, index=ev.index).groupby(ev["session_id"], sort=True).any()
        ev = ev[~seen_purchase.to_numpy()]
        if ev.empty:
            return pd.DataFrame()
    else:
        ev = ev[~is_purchase]
        if ev.empty:
            return pd.DataFrame()

    sid = ev["session_id"]
    t = ev["event_time"].astype("int64").to_numpy() / 1e6  # seconds (us resolution)
    same_next = np.r_[sid.to_numpy()[1:] == sid.to_numpy()[:-1], False]
    dwell = np.where(same_next, np.r_[np.diff(t), 0.0], np.nan)
    etype = ev["event_type"].to_numpy()
    price = pd.to_numeric(ev["price"], errors="coerce").to_numpy(dtype=float)
    frame = pd.DataFrame(
        {
            "session_id": sid.to_numpy(),
            "t": t,
            "dwell": dwell,
            "view": etype == "view",
            "cart": etype == "cart",
            "remove": etype == "remove_from_cart",
            "price": price,
            "cart_price": np.where(etype == "cart", price, np.nan),
            "item_id": ev["item_id"].to_numpy(),
            "category": ev["category"].to_numpy(),
            "user_id": ev["user_id"].to_numpy(),
            "tenant": ev["tenant"].to_numpy(),
        }
    )
    g = frame.groupby("session_id", sort=True)
    out = pd.DataFrame(
        {
            "n_events": g.size(),
            "n_views": g["view"].sum(),
            "n_carts": g["cart"].sum(),
            "n_removes": g["remove"].sum(),
            "n_items": g["item_id"].nunique(),
            "n_categories": g["category"].nunique(),
            "t_first": g["t"].min(),
            "t_last": g["t"].max(),
            "mean_dwell_s": g["dwell"].mean(),
            "max_dwell_s": g["dwell"].max(),
            "mean_price": g["price"].mean(),
            "max_price": g["price"].max(),
            "cart_value": g["cart_price"].sum(min_count=1),
            "last_cart": g["cart"].last(),
            "user_id": g["user_id"].last(),
            "tenant": g["tenant"].last(),
        }
    )
    # last_dwell: gap between the last two events of the session.
    last_two = frame.groupby("session_id", sort=True)["t"].nth(-2)
    prev_t = pd.Series(last_two.to_numpy(), index=frame.loc[last_two.index, "session_id"].to_numpy())
    out["last_dwell_s"] = out["t_last"] - prev_t.reindex(out.index)
    out["duration_s"] = out["t_last"] - out["t_first"]
    out["repeat_ratio"] = 1.0 - out["n_items"] / out["n_events"]
    out["cart_ratio"] = out["n_carts"] / out["n_events"]
    out["last_event_is_cart"] = out.pop("last_cart").astype(float)
    last_time = pd.to_datetime(out["t_last"] * 1e6, unit="us", utc=True)
    out["hour"] = last_time.dt.hour.to_numpy().astype(float)
    out["weekday"] = last_time.dt.weekday.to_numpy().astype(float)
    out["is_identified"] = out["user_id"].notna().astype(float)
    out["cutoff_time"] = last_time.to_numpy()
    for col in ("n_events", "n_views", "n_carts", "n_removes", "n_items", "n_categories"):
        out[col] = out[col].astype(float)
    out = out.drop(columns=["t_first", "t_last"])
    out.index.name = KEY
    out = out.reset_index()
    cols = [KEY, "user_id", "tenant", "cutoff_time", *SESSION_FEATURES]
    if label is not None:
        out[LABEL] = label.reindex(out[KEY].to_numpy()).to_numpy().astype("int8")
        cols.append(LABEL)
    return out[cols]


