from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.features.session import SESSION_FEATURES
from models.propensity.artifact import load_meta, save
from models.propensity.calibration import correct_downsampling
from models.propensity.finalize import fit_local
from models.propensity.model import PropensityConfig, downsample_negatives
from models.propensity.predictor import PropensityPredictor

FEATURES = list(SESSION_FEATURES)


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    df["session_id"] = [f"s{i}" for i in range(n)]
    logit = 2.5 * df["n_carts"] - 3.5
    df["purchased"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


def test_log_odds_correction_by_hand() -> None:
    # p = 0.5 learned with negatives kept at 0.1 -> q = 0.5 / (0.5 + 0.5 / 0.1) = 1/11
    assert correct_downsampling(np.array([0.5]), 0.1)[0] == pytest.approx(1 / 11)
    assert correct_downsampling(np.array([0.3]), 1.0)[0] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        correct_downsampling(np.array([0.3]), 0.0)


def test_downsampling_keeps_all_positives() -> None:
    df = _frame(2000)
    out = downsample_negatives(df, "purchased", 0.25, seed=1)
    assert out["purchased"].sum() == df["purchased"].sum()
    neg_kept = (out["purchased"] == 0).sum() / (df["purchased"] == 0).sum()
    assert 0.2 < neg_kept < 0.3


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("imbalance", ["weight", "downsample"])
def test_fit_save_load_predict_is_calibrated(tmp_path: Path, kind: str, imbalance: str) -> None:
    train, val = _frame(3000, 1), _frame(2000, 2)
    cfg = PropensityConfig(kind=kind, imbalance=imbalance, num_boost_round=30, num_threads=1)
    booster, art = fit_local(train, val, FEATURES, "purchased", cfg)
    save(tmp_path / "a", booster, art)
    pred = PropensityPredictor.from_artifact(str(tmp_path / "a"))
    scores = pred.predict_proba(val)
    assert scores.shape == (len(val),) and ((scores >= 0) & (scores <= 1)).all()
    # calibrated: mean score tracks the observed rate despite class weights / downsampling
    assert abs(scores.mean() - val["purchased"].mean()) < 0.02
    assert art.metrics["validation"]["pr_auc"] > 0.5
    assert load_meta(tmp_path / "a").feature_names == FEATURES
    batch = pred(val.head(5))
    assert list(batch.columns) == ["session_id", "score"]
    np.testing.assert_allclose(batch["score"].to_numpy(), scores[:5])


def test_missing_features_are_nan_not_errors(tmp_path: Path) -> None:
    booster, art = fit_local(_frame(1500, 3), _frame(800, 4), FEATURES, "purchased",
                             PropensityConfig(num_boost_round=20, num_threads=1))
    save(tmp_path / "a", booster, art)
    pred = PropensityPredictor(str(tmp_path / "a"))
    out = pred.predict_proba(pd.DataFrame({"n_carts": [3.0, -3.0]}))
    assert out[0] > out[1]


def test_score_events_uses_session_features(tmp_path: Path) -> None:
    booster, art = fit_local(_frame(1500, 3), _frame(800, 4), FEATURES, "purchased",
                             PropensityConfig(num_boost_round=20, num_threads=1))
    save(tmp_path / "a", booster, art)
    pred = PropensityPredictor(str(tmp_path / "a"))
    events = pd.DataFrame({"event_time": pd.to_datetime(["2026-01-01 10:00", "2026-01-01 10:01"], utc=True),
                           "session_id": ["x", "x"], "item_id": ["1", "2"], "event_type": ["view", "cart"]})
    scores = pred.score_events(events)
    assert set(scores) == {"x"} and 0.0 <= scores["x"] <= 1.0
    assert pred.score_events(events.iloc[0:0]) == {}


def test_load_rejects_non_artifact(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a propensity artifact"):
        PropensityPredictor(str(tmp_path))
