"""Column typing and encoding of real tabular data: missing, unseen and rare categories, mixed
types, high cardinality, unusable columns named, label leakage, and online = offline encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.propensity.data import LABEL, DataError, prepare
from models.propensity.encoding import FIRST, MISSING, OTHER, Encoding, canonical_strings, fit_encoding


def test_categories_missing_rare_and_unseen_get_their_codes() -> None:
    train = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["rare"] + [None, ""]})
    enc = fit_encoding(train, set(), min_count=2)
    assert enc.categorical == ["c"] and enc.columns[0].values == ["a", "b"]  # most frequent first
    codes = enc.transform(pd.DataFrame({"c": ["a", "b", "rare", None, "", "  ", "never seen", " a "]}))["c"]
    assert codes.tolist() == [FIRST, FIRST + 1, OTHER, MISSING, MISSING, MISSING, OTHER, FIRST]
    # a column absent at scoring time is missing
    assert enc.transform(pd.DataFrame({"x": [1]}))["c"].tolist() == [MISSING]


def test_empty_categorical_values_in_a_csv_no_longer_crash(tmp_path: Path) -> None:
    # the crash: '<' not supported between 'float' and 'str' in encode_features
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"x": rng.normal(size=n), "cat": rng.choice(["u", "v", "w", ""], n),
                       "y": (rng.random(n) < 0.3).astype(int)})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    prep = prepare(str(path), "y", None, seed=0)
    assert prep.encoding.categorical == ["cat"]
    assert set(prep.parts.train["cat"].unique()) <= {MISSING, FIRST, FIRST + 1, FIRST + 2}
    assert (prep.parts.train["cat"] == MISSING).any()


def test_mixed_types_mostly_numbers_are_numeric_and_words_count_as_missing() -> None:
    values = [str(i) for i in range(99)] + ["n/a"]
    enc = fit_encoding(pd.DataFrame({"m": values}), set())
    assert enc.columns[0].kind == "numeric"
    out = enc.transform(pd.DataFrame({"m": ["7", 7, "7.5", "abc", None]}))["m"].tolist()
    assert out[:3] == [7.0, 7.0, 7.5] and np.isnan(out[3]) and np.isnan(out[4])


def test_mixed_types_mostly_words_are_one_category_per_value_whatever_the_type() -> None:
    # numbers and text mixed in one object column (as Parquet or JSON gives them)
    train = pd.DataFrame({"m": pd.Series([7, "7", 7.0, "news", "news", "sports", "sports", 3, "3"] * 4,
                                         dtype=object)})
    enc = fit_encoding(train, set(), min_count=2)
    assert enc.columns[0].kind == "categorical"
    codes = enc.transform(pd.DataFrame({"m": pd.Series([7, "7", 7.0, " 7 "], dtype=object)}))["m"]
    assert codes.nunique() == 1 and codes.iloc[0] >= FIRST
    assert canonical_strings(pd.Series([1.0, 2.5, np.nan])).tolist() == ["1", "2.5", None]


def test_high_cardinality_keeps_the_most_frequent_and_drops_id_like_columns() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    zipf = np.minimum(rng.zipf(1.3, n), 3000)
    train = pd.DataFrame({"site": [f"s{v}" for v in zipf], "uid": [f"u{i}" for i in range(n)],
                          "y": rng.integers(0, 2, n)})
    enc = fit_encoding(train, {"y"}, min_count=5, max_categories=20)
    site = enc.columns[0]
    assert site.name == "site" and len(site.values) == 20
    counts = pd.Series(zipf).value_counts()
    assert site.values[0] == f"s{counts.index[0]}"
    assert "uid" in enc.dropped and "id-like" in enc.dropped["uid"]
    codes = enc.transform(train)["site"]
    assert codes.max() == FIRST + 19 and (codes == OTHER).any()


def test_unusable_columns_are_named_with_their_reason() -> None:
    n = 50
    train = pd.DataFrame({
        "ok": np.arange(n, dtype=float), "empty": [np.nan] * n, "same": [3.0] * n,
        "when": pd.date_range("2026-01-01", periods=n, freq="h"),
        "category_id": [2.10381e18, 2.05301e18] * (n // 2),  # a spreadsheet's scientific notation
        "iso": [f"2026-01-{1 + i % 28:02d} 10:00:00 UTC" for i in range(n)],
        "rare": [f"v{i % 25}" for i in range(n)],
    })
    enc = fit_encoding(train, set(), min_count=3)
    assert enc.feature_names == ["ok"]
    assert enc.dropped["empty"] == "all values missing" and enc.dropped["same"] == "constant"
    assert "timestamps" in enc.dropped["when"] and "timestamps" in enc.dropped["iso"]
    assert "2**53" in enc.dropped["category_id"] and "rarer than min_count=3" in enc.dropped["rare"]
    with pytest.raises(DataError, match=r"no usable feature column.*'empty': all values missing"):
        fit_encoding(train.drop(columns=["ok"]), set(), min_count=3, source="t.csv")


def test_integer_id_columns_are_categories_not_magnitudes() -> None:
    train = pd.DataFrame({"item_id": [10, 20, 30, 10, 20, 30, 10, 20] * 5, "price": np.arange(40.0)})
    enc = fit_encoding(train, set(), min_count=2)
    assert enc.categorical == ["item_id"] and "price" not in enc.categorical
    assert enc.transform(pd.DataFrame({"item_id": ["10", 10.0, 99]}))["item_id"].tolist() == [FIRST, FIRST, OTHER]


def test_encoding_round_trips_through_its_dict() -> None:
    train = pd.DataFrame({"c": ["a", "b", None] * 10, "x": np.arange(30.0)})
    enc = fit_encoding(train, set(), min_count=2)
    again = Encoding.from_dict(enc.to_dict())
    pd.testing.assert_frame_equal(enc.transform(train), again.transform(train))


def _csv(tmp_path: Path, df: pd.DataFrame) -> str:
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return str(path)


def test_a_copy_of_the_label_is_rejected_with_its_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(300) < 0.3).astype(int)
    df = pd.DataFrame({"x": rng.normal(size=300), "bought_flag": np.where(y == 1, "yes", "no"), "y": y})
    with pytest.raises(DataError, match=r"column 'bought_flag' gives the label 'y' away.*--exclude bought_flag"):
        prepare(_csv(tmp_path, df), "y", None, seed=0)
    order_value = np.where(y == 1, rng.uniform(10, 100, 300), np.nan)  # present only for buyers
    df2 = pd.DataFrame({"x": rng.normal(size=300), "order_value": order_value, "y": y})
    with pytest.raises(DataError, match="'order_value'.*missing exactly when the label is 0"):
        prepare(_csv(tmp_path, df2), "y", None, seed=0)
    ok = prepare(_csv(tmp_path, df2), "y", None, seed=0, exclude=["order_value"])
    assert ok.features == ["x"]


def test_bad_label_and_exclude_errors_name_the_column(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": np.arange(40.0), "y": [0] * 40})
    with pytest.raises(DataError, match="label 'y' has one class only"):
        prepare(_csv(tmp_path, df), "y", None, seed=0)
    df["y"] = [0, 1] * 20
    with pytest.raises(DataError, match=r"--exclude column\(s\) \['nope'\] not found"):
        prepare(_csv(tmp_path, df), "y", None, seed=0, exclude=["nope"])


def test_encoding_is_fitted_on_training_rows_only(tmp_path: Path) -> None:
    # a category that first appears after the training window is unseen: OTHER, not a new code
    n = 300
    df = pd.DataFrame({"t": np.arange(n), "c": ["a", "b"] * 135 + ["late"] * 30, "y": [0, 0, 1] * 100})
    prep = prepare(_csv(tmp_path, df), "y", "t", seed=0)
    assert prep.parts.kind == "time" and "late" not in prep.encoding.columns[0].values
    assert (prep.parts.test["c"].iloc[-30:] == OTHER).all() and (prep.parts.test["c"].iloc[:15] >= FIRST).all()
    assert LABEL in prep.parts.test.columns and "t" in prep.parts.test.columns


def test_artifacts_from_before_the_encoding_still_score(tmp_path: Path) -> None:
    # an artifact with the old ``categories`` map (sorted values, codes from 0, unseen -> missing)
    import lightgbm as lgb

    from models.propensity.artifact import PropensityArtifact, save
    from models.propensity.predictor import PropensityPredictor

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 3, 600).astype(float)
    y = (rng.random(600) < np.array([0.1, 0.5, 0.9])[codes.astype(int)]).astype(float)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(codes[:, None], label=y, feature_name=["c"]), num_boost_round=10)
    art = PropensityArtifact(kind="lightgbm", feature_names=["c"], threshold=0.5,
                             calibration={"keep_rate": 1.0, "x": [], "y": []}, base_rate=float(y.mean()),
                             categories={"c": ["a", "b", "z"]})
    save(tmp_path / "old", booster, art)
    pred = PropensityPredictor(str(tmp_path / "old"))
    scores = pred.predict_proba(pd.DataFrame({"c": ["a", "b", "z", "unseen"]}))
    assert scores[0] < scores[1] < scores[2] and np.isfinite(scores[3])


@pytest.mark.shared_data
def test_real_schema_samples_are_typed_sensibly(shared_data: Path) -> None:
    s = shared_data / "schema_samples"
    rees = pd.read_csv(s / "rees46_events_head.csv")
    enc = fit_encoding(rees, {"event_type"}, source="rees46")
    assert "2**53" in enc.dropped["category_id"]  # 2.10381E+18: a spreadsheet mangled the ids
    assert "timestamps" in enc.dropped["event_time"] and "id-like" in enc.dropped["product_id"]
    assert "price" in enc.feature_names and {"brand", "category_code"} <= set(enc.categorical)
    codes = enc.transform(rees)
    assert (codes.loc[rees["brand"].isna(), "brand"] == MISSING).all()
    criteo = pd.read_csv(s / "criteo_sample.csv")
    enc = fit_encoding(criteo, {"label"}, source="criteo")
    assert [c for c in enc.feature_names if c.startswith("I")] == [f"I{i}" for i in range(1, 14)]
    assert all(c.startswith("C") for c in enc.categorical) and "C7" in enc.dropped
    assert (enc.transform(criteo)["C20"] == MISSING).sum() == criteo["C20"].isna().sum()
