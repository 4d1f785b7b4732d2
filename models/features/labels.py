"""Labels: did the session's user buy within a window after the session's cutoff. Pure pandas/numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.features.user import DAY, SHIFT, user_codes


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
    b_codes, q_codes = user_codes(buys["user_id"].to_numpy(dtype=object), users[known])
    bkeys = np.sort(b_codes * SHIFT + np.floor(buys["first_purchase"].to_numpy(dtype=float)).astype(np.int64))
    c = np.asarray(cutoff, dtype=float)[known]
    base = q_codes * SHIFT
    lo = np.searchsorted(bkeys, base + np.floor(c).astype(np.int64), side="right")
    hi = np.searchsorted(bkeys, base + np.floor(c + days * DAY).astype(np.int64), side="right")
    out[known] = out[known] | (hi > lo)
    return out.astype(np.int8)
