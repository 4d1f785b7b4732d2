from __future__ import annotations

import pandas as pd
import pytest

from models.features.session import LABEL, SESSION_FEATURES, session_features


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_time": pd.to_datetime(
                ["2024-01-01 10:00", "2024-01-01 10:01", "2024-01-01 10:03", "2024-01-01 10:04",
                 "2024-01-01 11:05", "2024-01-01 11:00", "2024-01-01 12:00"], utc=True),
            "session_id": ["a", "a", "a", "a", "b", "b", "c"],
            "item_id": ["1", "2", "2", "3", "4", "1", "9"],
            "event_type": ["view", "view", "cart", "purchase", "view", "view", "purchase"],
            "price": [10.0, 20.0, 20.0, 30.0, 5.0, 10.0, 1.0],
            "category": ["x", "y", "y", "y", None, "x", "z"],
            "user_id": [None, None, None, None, "u1", "u1", None],
        }
    )


def test_features_by_hand() -> None:
    out = session_features(_events()).set_index("session_id")
    a = out.loc["a"]
    assert a["n_events"] == 3 and a["n_views"] == 2 and a["n_carts"] == 1
    assert a["n_items"] == 2 and a["n_categories"] == 2
    assert a["duration_s"] == 180.0 and a["mean_dwell_s"] == 90.0 and a["last_dwell_s"] == 120.0
    assert a["cart_value"] == 20.0 and a["last_event_is_cart"] == 1.0
    assert a[LABEL] == 1 and a["is_identified"] == 0.0
    b = out.loc["b"]  # unsorted input is ordered by time
    assert b["duration_s"] == 300.0 and b[LABEL] == 0 and b["is_identified"] == 1.0
    assert b["hour"] == 11


def test_point_in_time_cut_ignores_purchase_and_later_events() -> None:
    ev = _events()
    later = pd.DataFrame({"event_time": pd.to_datetime(["2024-01-01 10:30"], utc=True), "session_id": ["a"],
                          "item_id": ["7"], "event_type": ["cart"], "price": [999.0], "category": ["q"],
                          "user_id": [None]})
    with_later = session_features(pd.concat([ev, later])).set_index("session_id")
    assert with_later.loc["a", list(SESSION_FEATURES)].equals(
        session_features(ev).set_index("session_id").loc["a", list(SESSION_FEATURES)])


def test_purchase_only_session_has_no_features() -> None:
    assert "c" not in set(session_features(_events())["session_id"])


def test_online_mode_has_no_label_and_matches_batch_rows() -> None:
    ev = _events()
    online = session_features(ev[ev.session_id == "b"], cut_at_first_purchase=False)
    assert LABEL not in online.columns
    batch = session_features(ev).set_index("session_id").loc[["b"], list(SESSION_FEATURES)]
    pd.testing.assert_frame_equal(online.set_index("session_id")[list(SESSION_FEATURES)], batch)


def test_empty_input_gives_typed_empty_frame() -> None:
    out = session_features(_events().iloc[0:0])
    assert out.empty and set(SESSION_FEATURES) <= set(out.columns)


@pytest.mark.parametrize("missing", ["price", "category", "user_id"])
def test_optional_columns_may_be_absent(missing: str) -> None:
    out = session_features(_events().drop(columns=[missing]))
    assert len(out) == 2


def test_single_session_fast_path_equals_the_vectorised_path() -> None:
    from pipelines.synthetic import GeneratorConfig, generate

    ev = generate(GeneratorConfig(events=3_000, seed=4, items=300)).to_pandas()
    ev.loc[ev.index[::17], "price"] = None  # missing prices too
    for cut in (True, False):
        batch = session_features(ev, cut_at_first_purchase=cut).set_index("session_id")
        for sid in ev["session_id"].drop_duplicates().head(150):
            one = session_features(ev[ev["session_id"] == sid], cut_at_first_purchase=cut)
            if sid not in batch.index:
                assert one.empty
                continue
            got = one.set_index("session_id").iloc[0]
            want = batch.loc[sid]
            pd.testing.assert_series_equal(got[list(SESSION_FEATURES)].astype(float),
                                           want[list(SESSION_FEATURES)].astype(float), check_names=False)
            assert got["cutoff_time"] == want["cutoff_time"]
            if cut:
                assert got[LABEL] == want[LABEL]


def _messy_events(n: int, seed: int) -> pd.DataFrame:
    """Generated events plus the awkward cases: missing prices and categories, ties in time,
    unsorted rows, several user ids in one session, purchase-first sessions."""
    import numpy as np

    from pipelines.synthetic import GeneratorConfig, generate

    ev = generate(GeneratorConfig(events=n, seed=seed, items=300, anonymous_share=0.5)).to_pandas()
    rng = np.random.default_rng(seed)
    ev.loc[ev.index[::17], "price"] = None
    ev.loc[ev.index[::23], "category"] = None
    ev.loc[ev.index[5::31], "user_id"] = "login-" + ev.loc[ev.index[5::31], "session_id"]
    ev.loc[ev.index[1::13], "event_time"] = ev.loc[ev.index[0::13], "event_time"].to_numpy()[: len(ev.index[1::13])]
    ev.loc[ev.index[::41], "event_type"] = "remove_from_cart"
    return ev.sample(frac=1.0, random_state=int(rng.integers(1000))).reset_index(drop=True)


@pytest.mark.parametrize("cut", [True, False])
def test_segment_path_equals_the_old_pandas_groupby(cut: bool) -> None:
    from tests.unit.reference_features import reference_session_features

    ev = _messy_events(20_000, seed=11)
    new = session_features(ev, cut_at_first_purchase=cut).reset_index(drop=True)
    old = reference_session_features(ev, cut_at_first_purchase=cut).reset_index(drop=True)
    assert len(new) == len(old) > 1_000
    assert new["session_id"].tolist() == old["session_id"].tolist()
    assert new["user_id"].fillna("<na>").tolist() == old["user_id"].fillna("<na>").tolist()
    assert (new["cutoff_time"] == old["cutoff_time"]).all()
    pd.testing.assert_frame_equal(new[list(SESSION_FEATURES)], old[list(SESSION_FEATURES)], rtol=1e-12)
    if cut:
        assert new[LABEL].tolist() == old[LABEL].tolist()
