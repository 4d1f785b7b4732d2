"""Session features: one pure, vectorised function shared by batch and online.

``session_features`` turns canonical events (any number of sessions) into one
row of features per session. The feature job calls it per block of sessions
and the scoring endpoint calls it on the events of one live session, so batch
and online features are computed by the same code.

Point-in-time rule: when ``cut_at_first_purchase`` is set, only events strictly
before a session's first purchase are used, and the label ``purchased`` says
whether that purchase happened. Sessions whose first event is a purchase have
no pre-purchase evidence and are left out (counted by the caller).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SESSION_FEATURES: tuple[str, ...] = (
    "n_events",
    "n_views",
    "n_carts",
    "n_removes",
    "n_items",
    "n_categories",
    "duration_s",
    "mean_dwell_s",
    "max_dwell_s",
    "last_dwell_s",
    "repeat_ratio",
    "cart_ratio",
    "mean_price",
    "max_price",
    "cart_value",
    "last_event_is_cart",
    "hour",
    "weekday",
    "is_identified",
)
LABEL = "purchased"
KEY = "session_id"


def session_features(events: pd.DataFrame, cut_at_first_purchase: bool = True) -> pd.DataFrame:
    """Compute ``SESSION_FEATURES`` per session from canonical events.

    Returns a frame with ``session_id``, ``user_id`` (last seen), ``tenant``,
    ``cutoff_time`` (time of the last event used), the features and, when
    ``cut_at_first_purchase``, the label ``purchased``. Row order follows
    ``session_id``.
    """
    if events.empty:
        return _empty()
    sids = events["session_id"].to_numpy()
    if len(sids) <= _FAST_MAX and (sids == sids[0]).all():
        return _one_session(events, cut_at_first_purchase)
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
            return _empty()
    else:
        ev = ev[~is_purchase]
        if ev.empty:
            return _empty()

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


_FAST_MAX = 2_000  # one live session scored online: plain numpy, no groupby


def _one_session(events: pd.DataFrame, cut_at_first_purchase: bool) -> pd.DataFrame:
    """``session_features`` for the events of one session, without pandas groupby (~0.2 ms)."""
    t_all = pd.to_datetime(events["event_time"], utc=True).to_numpy(dtype="datetime64[us]").astype(np.int64)
    order = np.argsort(t_all, kind="stable")
    t_all = t_all[order]
    etype = events["event_type"].to_numpy()[order]
    buy = etype == "purchase"
    purchased = bool(buy.any())
    keep = (~np.maximum.accumulate(buy)) if cut_at_first_purchase else ~buy
    if not keep.any():
        return _empty()
    t = t_all[keep] / 1e6
    etype = etype[keep]
    n = len(t)

    def col(name: str) -> np.ndarray:
        if name in events.columns:
            return events[name].to_numpy()[order][keep]
        return np.full(n, np.nan if name == "price" else None, dtype=float if name == "price" else object)

    items, cats, users, tenants = col("item_id"), col("category"), col("user_id"), col("tenant")
    price = pd.to_numeric(pd.Series(col("price")), errors="coerce").to_numpy(dtype=float)
    dwell = np.diff(t)
    cart = etype == "cart"
    cart_prices = price[cart]
    n_items = float(len(pd.unique(items)))
    cat_vals = pd.Series(cats).dropna()
    users_known = pd.Series(users).dropna()
    tenants_known = pd.Series(tenants).dropna()
    last_time = pd.Timestamp(int(t_all[keep][-1]), unit="us", tz="UTC")
    has_price = ~np.isnan(price)
    row = {
        KEY: sids_first(events), "user_id": users_known.iloc[-1] if len(users_known) else None,
        "tenant": tenants_known.iloc[-1] if len(tenants_known) else None, "cutoff_time": last_time,
        "n_events": float(n), "n_views": float((etype == "view").sum()), "n_carts": float(cart.sum()),
        "n_removes": float((etype == "remove_from_cart").sum()), "n_items": n_items,
        "n_categories": float(cat_vals.nunique()), "duration_s": float(t[-1] - t[0]),
        "mean_dwell_s": float(dwell.mean()) if n > 1 else np.nan,
        "max_dwell_s": float(dwell.max()) if n > 1 else np.nan,
        "last_dwell_s": float(t[-1] - t[-2]) if n > 1 else np.nan,
        "repeat_ratio": 1.0 - n_items / n, "cart_ratio": float(cart.sum()) / n,
        "mean_price": float(price[has_price].mean()) if has_price.any() else np.nan,
        "max_price": float(price[has_price].max()) if has_price.any() else np.nan,
        "cart_value": float(np.nansum(cart_prices)) if (~np.isnan(cart_prices)).any() else np.nan,
        "last_event_is_cart": float(cart[-1]), "hour": float(last_time.hour), "weekday": float(last_time.weekday()),
        "is_identified": float(len(users_known) > 0),
    }
    out = pd.DataFrame([row])
    cols = [KEY, "user_id", "tenant", "cutoff_time", *SESSION_FEATURES]
    if cut_at_first_purchase:
        out[LABEL] = np.int8(purchased)
        cols.append(LABEL)
    return out[cols]


def sids_first(events: pd.DataFrame) -> object:
    return events["session_id"].iloc[0]


_INPUT = ("event_time", "session_id", "user_id", "item_id", "event_type", "price", "category", "tenant")


def _empty() -> pd.DataFrame:
    cols = {KEY: pd.Series(dtype=object), "user_id": pd.Series(dtype=object), "tenant": pd.Series(dtype=object),
            "cutoff_time": pd.Series(dtype="datetime64[us, UTC]")}
    cols.update({f: pd.Series(dtype=float) for f in SESSION_FEATURES})
    cols[LABEL] = pd.Series(dtype="int8")
    return pd.DataFrame(cols)
