"""Point-in-time user features, labels, item features and sequences, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.features.item import item_features
from models.features.labels import purchase_within
from models.features.sequences import sequences, session_summaries
from models.features.user import user_features

DAY = 86_400.0


def _events() -> pd.DataFrame:
    rows = [  # (time, session, user, item, type, price)
        ("2026-01-01 10:00", "a", "u1", "i1", "view", 10.0),
        ("2026-01-01 10:05", "a", "u1", "i1", "purchase", 10.0),
        ("2026-01-03 09:00", "b", "u1", "i2", "view", 5.0),
        ("2026-01-03 09:10", "b", "u1", "i2", "purchase", 5.0),
        ("2026-01-09 12:00", "c", "u1", "i3", "view", 7.0),
        ("2026-01-09 12:00", "d", None, "i3", "view", 7.0),
        ("2026-01-09 12:01", "d", None, "i1", "cart", 10.0),
    ]
    return pd.DataFrame(rows, columns=["event_time", "session_id", "user_id", "item_id", "event_type", "price"]).assign(
        event_time=lambda d: pd.to_datetime(d["event_time"], utc=True))


def test_user_features_use_only_sessions_that_ended_before() -> None:
    s = session_summaries(_events()).set_index("session_id").loc[["a", "b", "c", "d"]].reset_index()
    f = user_features(s)
    f.index = s["session_id"]
    assert f.loc["a", "u_sessions_30d"] == 0  # nothing before the first session
    assert np.isnan(f.loc["a", "u_days_since_last_session"])
    assert f.loc["b", "u_sessions_7d"] == 1 and f.loc["b", "u_purchases_7d"] == 1 and f.loc["b", "u_spend_7d"] == 10
    assert f.loc["b", "u_sessions_1d"] == 0  # a ended ~47 h before b
    assert f.loc["c", "u_sessions_7d"] == 1 and f.loc["c", "u_sessions_30d"] == 2  # a is 8+ days back
    assert f.loc["c", "u_days_since_last_purchase"] == pytest.approx((pd.Timestamp("2026-01-09 12:00") -
                                                                       pd.Timestamp("2026-01-03 09:10")).total_seconds() / DAY)
    assert f.loc["d"].isna().all()  # anonymous


def test_future_sessions_do_not_leak_into_features() -> None:
    ev = _events()
    early = session_summaries(ev[ev.session_id.isin(["a", "b"])])
    full = session_summaries(ev)
    f_early = user_features(early).set_axis(early["session_id"]).loc[["a", "b"]]
    f_full = user_features(full).set_axis(full["session_id"]).loc[["a", "b"]]
    pd.testing.assert_frame_equal(f_early, f_full)


def test_purchase_within_days_label() -> None:
    s = session_summaries(_events()).set_index("session_id").loc[["a", "b", "c", "d"]].reset_index()
    cutoff = s["start"]
    label = purchase_within(s, cutoff, 7.0)
    # a: own purchase; b: own purchase; c: no later purchase; d: anonymous, no purchase
    assert label.tolist() == [1, 1, 0, 0]
    # a session without a purchase whose user buys 2 days later is positive
    s2 = s.copy()
    s2.loc[0, ["purchased", "first_purchase"]] = [False, np.nan]
    assert purchase_within(s2, s2["start"], 7.0).tolist()[0] == 1
    assert purchase_within(s2, s2["start"], 1.0).tolist()[0] == 0


def test_item_features_conversion_trend_and_rank() -> None:
    counts = pd.DataFrame({"item_id": ["a", "b", "a"], "views_1d": [1, 7, 1], "views_7d": [7, 7, 3],
                           "carts_1d": [0, 0, 0], "carts_7d": [1, 0, 0], "purchases_1d": [0, 0, 0],
                           "purchases_7d": [1, 0, 0]})
    items = item_features(counts).set_index("item_id")
    assert items.loc["a", "views_7d"] == 10 and items.loc["a", "conversion_7d"] == pytest.approx(0.1)
    assert items.loc["a", "popularity"] == 10 + 3 + 10 and items.loc["a", "popularity_rank"] == 1
    assert items.loc["b", "trend"] == pytest.approx((7 * 7 + 1) / 8)


def test_sequences_are_time_ordered_without_purchases() -> None:
    seq = sequences(_events().sample(frac=1.0, random_state=1)).set_index("session_id")
    assert seq.loc["d", "items"] == ["i3", "i1"]
    assert seq.loc["a", "items"] == ["i1"]


def test_summary_owner_is_the_last_user_id_in_time_order() -> None:
    ev = pd.DataFrame({
        "event_time": pd.to_datetime(["2026-01-01 10:02", "2026-01-01 10:00", "2026-01-01 10:01", "2026-01-01 10:03"],
                                     utc=True),
        "session_id": ["s", "s", "s", "s"], "user_id": [None, "u2", "u1", None], "item_id": ["i"] * 4,
        "event_type": ["view", "view", "view", "purchase"], "price": [1.0, 1.0, 1.0, 4.0]})
    s = session_summaries(ev.iloc[::-1]).set_index("session_id").loc["s"]
    assert s["user_id"] == "u1" and s["spend"] == 4.0 and s["purchased"]
    assert s["first_purchase"] == pd.Timestamp("2026-01-01 10:03", tz="UTC").timestamp()


def test_user_features_at_query_users_other_than_the_history_rows() -> None:
    from models.features.user import user_features_at

    hist = session_summaries(_events())
    at = np.array([pd.Timestamp("2026-01-04", tz="UTC").timestamp()] * 3)
    f = user_features_at(hist, np.array(["u1", None, "nobody"], dtype=object), at)
    assert f.loc[0, "u_sessions_7d"] == 2 and f.loc[0, "u_purchases_7d"] == 2 and f.loc[0, "u_spend_7d"] == 15
    assert f.loc[1].isna().all()
    assert f.loc[2, "u_sessions_30d"] == 0 and np.isnan(f.loc[2, "u_days_since_last_session"])
