"""Item features: the ONE place they are computed. Pure pandas/numpy.

The feature job counts views, carts and purchases per item and day (``item_daily``), then
``items_from_daily`` sums the last 7 days and the last day up to the watermark and
``item_features`` adds conversion, trend and popularity. Precompute ranks the same
popularity (``popular_items``) for the ``popular`` table that serving falls back to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COUNTS = ("views", "carts", "purchases")
# popularity = views + 3 * carts + 10 * purchases (over 7 days, or whatever counts a table has)
POPULARITY_WEIGHTS = {"views": 1, "carts": 3, "purchases": 10}
_POPULAR_COLUMNS = ("purchases_7d", "carts_7d", "views_7d", "purchases", "views", "popularity", "count")


def items_from_daily(counts: pd.DataFrame, watermark: pd.Timestamp) -> pd.DataFrame:
    """Item features from per-(date, item) counts: sums over the 7 days and the day up to ``watermark``.

    ``counts`` has ``date`` (UTC dates), ``item_id`` and the ``COUNTS`` columns.
    """
    counts = counts.assign(date=pd.to_datetime(counts["date"], utc=True))
    horizon = pd.Timestamp(watermark).floor("D")
    last7 = counts[counts["date"] > horizon - pd.Timedelta(days=7)]
    agg = last7.groupby("item_id", sort=False)[list(COUNTS)].sum()
    today = last7[last7["date"] == horizon].groupby("item_id", sort=False)[list(COUNTS)].sum()
    frame = pd.DataFrame({"item_id": agg.index, "views_7d": agg["views"].to_numpy(),
                          "carts_7d": agg["carts"].to_numpy(), "purchases_7d": agg["purchases"].to_numpy()})
    for c in COUNTS:
        frame[f"{c}_1d"] = today[c].reindex(agg.index).fillna(0).astype(np.int64).to_numpy()
    return item_features(frame)


def item_features(counts: pd.DataFrame) -> pd.DataFrame:
    """Conversion, popularity rank and trend from per-item counts over 1 and 7 days."""
    out = counts.groupby("item_id", sort=False).sum().reset_index()
    out["conversion_7d"] = out["purchases_7d"] / out["views_7d"].where(out["views_7d"] > 0)
    out["trend"] = (out["views_1d"] * 7.0 + 1.0) / (out["views_7d"] + 1.0)
    out["popularity"] = sum(out[f"{c}_7d"] * w for c, w in POPULARITY_WEIGHTS.items())
    out = out.sort_values("popularity", ascending=False, kind="stable").reset_index(drop=True)
    out["popularity_rank"] = np.arange(1, len(out) + 1)
    return out


def popular_items(items: pd.DataFrame, k: int) -> list[tuple[str, float]]:
    """Top-k items by purchases then views (the first popularity columns present), scores scaled to 1."""
    cols = [c for c in _POPULAR_COLUMNS if c in items.columns]
    if not cols or "item_id" not in items.columns:
        raise ValueError(f"items table has no popularity column; columns are {list(items.columns)}")
    weights = {"purchases_7d": POPULARITY_WEIGHTS["purchases"], "carts_7d": POPULARITY_WEIGHTS["carts"],
               "purchases": POPULARITY_WEIGHTS["purchases"]}
    score = sum(pd.to_numeric(items[c], errors="coerce").fillna(0.0) * weights.get(c, 1.0) for c in cols)
    top = items.assign(_score=score).sort_values(["_score", "item_id"], ascending=[False, True]).head(k)
    peak = float(top["_score"].max() or 1.0) or 1.0
    return [(str(i), float(s) / peak) for i, s in zip(top["item_id"], top["_score"], strict=True)]
