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
import pyarrow as pa
import pyarrow.compute as pc

from models.features.sessionize import (
    US_PER_S,
    Sorted,
    count_distinct,
    last_valid,
    segment_starts,
    sort_sessions,
)

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
    out = session_features_table(events_to_arrow(events), cut_at_first_purchase).to_pandas()
    if out.empty:
        return _empty()
    for col in ("user_id", "tenant"):
        if out[col].isna().all():
            out[col] = pd.Series([None] * len(out), dtype=object)
    return out


def session_features_table(events: pa.Table | Sorted, cut_at_first_purchase: bool = True) -> pa.Table:
    """``session_features`` on an Arrow table of canonical events, with numpy segment reductions.

    The events are sorted once by (session, time) (``models.features.sessionize``); each feature is a
    reduction over the contiguous rows of a session. The batch feature job calls this.
    """
    srt = events if isinstance(events, Sorted) else sort_sessions(events)
    n = srt.n_rows
    if n == 0:
        return _empty_table(cut_at_first_purchase)
    etype, types = srt.codes("event_type")
    kinds = {name: int(i) for i, name in enumerate(types.to_pylist())}

    def is_type(name: str) -> np.ndarray:
        return etype == kinds[name] if name in kinds else np.zeros(n, dtype=bool)

    buy = is_type("purchase")
    rows = np.arange(n)
    seg_of_row = srt.segment_of_row()
    label = None
    if cut_at_first_purchase:
        first_buy = np.minimum.reduceat(np.where(buy, rows, n), srt.starts)
        label = first_buy < n
        keep = rows < first_buy[seg_of_row]
    else:
        keep = ~buy
    kept = np.flatnonzero(keep)
    if len(kept) == 0:
        return _empty_table(cut_at_first_purchase)
    sess = srt.session[kept]
    starts = segment_starts(sess)
    source = seg_of_row[kept[starts]]  # each output session's segment in ``srt``
    m = len(starts)
    ends = np.r_[starts[1:], len(kept)]
    seg = np.repeat(np.arange(m), ends - starts)
    t = srt.t_us[kept] / US_PER_S
    lengths = (ends - starts).astype(float)

    def total(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts)

    view, cart, remove = is_type("view")[kept], is_type("cart")[kept], is_type("remove_from_cart")[kept]
    price = srt.floats("price")[kept]
    same_next = np.r_[sess[1:] == sess[:-1], False]
    dwell = np.where(same_next, np.r_[np.diff(t), 0.0], np.nan)
    has_dwell = ~np.isnan(dwell)
    has_price = ~np.isnan(price)
    cart_price = cart & has_price
    n_items = count_distinct(seg, srt.codes("item_id")[0][kept], m).astype(float)
    t_first, t_last = t[starts], t[ends - 1]
    last_us = srt.t_us[kept][ends - 1]
    multi = lengths > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        n_dwell, n_price, n_cart_price = total(has_dwell), total(has_price), total(cart_price)
        cols: dict[str, object] = {
            "n_events": lengths, "n_views": total(view).astype(float), "n_carts": total(cart).astype(float),
            "n_removes": total(remove).astype(float), "n_items": n_items,
            "n_categories": count_distinct(seg, srt.codes("category")[0][kept], m).astype(float),
            "duration_s": t_last - t_first,
            "mean_dwell_s": np.where(n_dwell > 0, total(np.where(has_dwell, dwell, 0.0)) / n_dwell, np.nan),
            "max_dwell_s": np.fmax.reduceat(dwell, starts),
            "last_dwell_s": np.where(multi, t_last - t[np.maximum(ends - 2, 0)], np.nan),
            "repeat_ratio": 1.0 - n_items / lengths,
            "cart_ratio": total(cart) / lengths,
            "mean_price": np.where(n_price > 0, total(np.where(has_price, price, 0.0)) / n_price, np.nan),
            "max_price": np.fmax.reduceat(price, starts),
            "cart_value": np.where(n_cart_price > 0, total(np.where(cart_price, price, 0.0)), np.nan),
            "last_event_is_cart": cart[ends - 1].astype(float),
            "hour": (np.floor_divide(last_us, np.int64(3_600_000_000)) % 24).astype(float),
            "weekday": ((np.floor_divide(last_us, np.int64(86_400_000_000)) + 3) % 7).astype(float),
        }
    user_row = last_valid(srt.valid("user_id")[kept], starts)
    tenant_row = last_valid(srt.valid("tenant")[kept], starts)
    cols["is_identified"] = (user_row >= 0).astype(float)
    out = {
        KEY: srt.session_ids.take(pa.array(source)),
        "user_id": srt.take("user_id", np.where(user_row >= 0, kept[np.maximum(user_row, 0)], -1)),
        "tenant": srt.take("tenant", np.where(tenant_row >= 0, kept[np.maximum(tenant_row, 0)], -1)),
        "cutoff_time": pa.array(last_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    }
    out.update({f: pa.array(cols[f], pa.float64()) for f in SESSION_FEATURES})
    if label is not None:
        out[LABEL] = pa.array(label[source].astype(np.int8))
    return pa.table(out)


def _strings(values: pd.Series) -> pa.Array:
    """A column as Arrow strings; None/NaN give null, other values their ``str``."""
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in an object column
        arr = pa.array([None if pd.isna(v) else str(v) for v in values.to_numpy(dtype=object)], pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == pa.string() else pc.cast(arr, pa.string())


def events_to_arrow(events: pd.DataFrame) -> pa.Table:
    """Canonical columns of a pandas frame as Arrow (missing optional columns are null)."""
    n = len(events)
    cols: dict[str, pa.Array] = {
        "event_time": pa.array(pd.to_datetime(events["event_time"], utc=True).to_numpy(dtype="datetime64[us]"),
                               pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
    }
    for name in ("session_id", "user_id", "item_id", "event_type", "category", "tenant"):
        if name in events.columns:
            cols[name] = _strings(events[name])
        else:
            cols[name] = pa.nulls(n, pa.string())
    price = pd.to_numeric(events["price"], errors="coerce") if "price" in events.columns else pd.Series(np.nan, index=events.index)
    cols["price"] = pa.array(price.to_numpy(dtype=float), pa.float64(), from_pandas=True)
    return pa.table(cols)


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
            result: np.ndarray = events[name].to_numpy()[order][keep]
            return result
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


def _empty_table(with_label: bool) -> pa.Table:
    fields = [pa.field(KEY, pa.string()), pa.field("user_id", pa.string()), pa.field("tenant", pa.string()),
              pa.field("cutoff_time", pa.timestamp("us", tz="UTC"))]
    fields += [pa.field(f, pa.float64()) for f in SESSION_FEATURES]
    if with_label:
        fields.append(pa.field(LABEL, pa.int8()))
    return pa.schema(fields).empty_table()
