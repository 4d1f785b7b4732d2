"""Calibration report on hand-computed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluation.calibration import calibration_report, wilson


def test_report_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.2, 0.1, 0.9, 0.7])
    r = calibration_report(y, p, bins=2)
    lo, hi = r.bins
    assert (lo.count, lo.clicks, hi.count, hi.clicks) == (2, 0, 2, 2)
    assert lo.mean_pred == pytest.approx(0.15) and lo.observed == 0
    assert hi.mean_pred == pytest.approx(0.8) and hi.observed == 1
    assert (lo.lo, lo.hi, hi.lo, hi.hi) == (0.1, 0.2, 0.7, 0.9)
    assert r.ece == pytest.approx(0.5 * 0.15 + 0.5 * 0.2)
    assert r.max_ce == pytest.approx(0.2)
    expected_ll = -(math.log(0.9) + math.log(0.8) + math.log(0.9) + math.log(0.7)) / 4
    assert r.log_loss == pytest.approx(expected_ll)
    assert r.base_log_loss == pytest.approx(math.log(2))
    assert r.normalized_entropy == pytest.approx(expected_ll / math.log(2))
    assert r.calibration_ratio == pytest.approx(1.9 / 2)
    assert r.as_dict()["bins"][0]["count"] == 2


def test_uniform_bins_and_wilson_interval() -> None:
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.0, 0.1, 0.5, 0.95, 1.0])
    r = calibration_report(y, p, bins=2, binning="uniform")
    assert [b.count for b in r.bins] == [2, 3]  # [0, 0.5) and [0.5, 1]: 0.5 falls in the upper half
    assert [b.clicks for b in r.bins] == [1, 2]
    low, high = wilson(1, 2)
    assert r.bins[0].ci_low == pytest.approx(low) and r.bins[0].ci_high == pytest.approx(high)
    # Wilson 95 % for 0/10: [0, 0.2775]
    assert wilson(0, 10)[1] == pytest.approx(0.27753, abs=1e-4)


def test_a_calibrated_score_beats_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.02, 200_000)
    y = (rng.random(p.size) < p).astype(int)
    good = calibration_report(y, p)
    bad = calibration_report(y, np.minimum(p * 2, 1))
    assert good.ece < 0.001 < bad.ece
    assert abs(good.calibration_ratio - 1) < 0.03 and bad.calibration_ratio > 1.9
    assert good.log_loss < bad.log_loss
    assert good.normalized_entropy < 1


def test_bad_scores_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_report(np.array([0, 1]), np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="differ in length"):
        calibration_report(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match="binning"):
        calibration_report(np.array([0, 1]), np.array([0.5, 0.2]), binning="log")  # type: ignore[arg-type]
