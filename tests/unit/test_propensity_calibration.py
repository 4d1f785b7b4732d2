"""Calibration: the isotonic map keeps the raw ranking (no ties) and stays calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.classification import pr_auc
from models.propensity.calibration import Calibrator


def test_calibration_keeps_the_raw_ranking() -> None:
    rng = np.random.default_rng(3)
    raw = rng.random(4000)
    y = (rng.random(4000) < raw**3).astype(float)
    cal = Calibrator().fit(raw, y)
    scores = cal(raw)
    # strictly increasing in the raw score: no ties, so PR-AUC is the raw one
    assert np.unique(scores).size == np.unique(raw).size
    assert pr_auc(y, scores) == pytest.approx(pr_auc(y, raw))
    # and still calibrated: within tie_break of the plain isotonic map, which has plateaus
    plain = Calibrator.from_dict({**cal.to_dict(), "tie_break": 0.0})
    assert np.unique(plain(raw)).size < raw.size / 10
    assert np.max(np.abs(scores - plain(raw))) <= cal.tie_break
    # artifacts written before tie_break existed score exactly as before
    old = {k: v for k, v in cal.to_dict().items() if k != "tie_break"}
    np.testing.assert_array_equal(Calibrator.from_dict(old)(raw), plain(raw))


def test_platt_on_separable_scores_keeps_the_ranking() -> None:
    # a tiny, perfectly separated validation split: a plain Platt fit would saturate at 0 and 1
    raw = np.r_[np.linspace(0.01, 0.3, 30), np.linspace(0.6, 0.95, 8)]
    y = np.r_[np.zeros(30), np.ones(8)]
    cal = Calibrator(method="platt").fit(raw, y)
    assert 0 < cal.a < 50 and np.isfinite(cal.b)
    test = np.r_[raw, 0.999, 0.9999, 1e-5]
    scores = cal(test)
    assert np.unique(scores).size == test.size  # no ties made
    assert np.all(np.diff(scores[np.argsort(test)]) > 0)
    assert Calibrator.from_dict(cal.to_dict())(test).tolist() == scores.tolist()
