from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.classification import (
    bootstrap,
    brier,
    decile_table,
    evaluate,
    expected_calibration_error,
    log_loss,
    pr_auc,
    precision_at_recall,
    psi,
    recall_at_precision,
    roc_auc,
)

Y = np.array([1, 0, 1, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.2, 0.1])


def test_pr_auc_by_hand() -> None:
    # thresholds: 0.9 -> P=1, R=.5 ; 0.8 -> P=.5, R=.5 ; 0.7 -> P=2/3, R=1
    assert pr_auc(Y, P) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))


def test_pr_auc_ties_are_one_threshold() -> None:
    # both scored 0.5: one threshold with P=.5, R=1
    assert pr_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_roc_auc_by_hand() -> None:
    # positives at ranks 5 and 3 of 5: pairs won = (3 + 2) / 6
    assert roc_auc(Y, P) == pytest.approx(5 / 6)
    assert roc_auc(np.array([1, 0]), np.array([0.3, 0.3])) == pytest.approx(0.5)


def test_log_loss_and_brier_by_hand() -> None:
    y, p = np.array([1, 0]), np.array([0.8, 0.4])
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert brier(y, p) == pytest.approx((0.04 + 0.16) / 2)


def test_ece_by_hand() -> None:
    y = np.array([1, 0, 0, 1])
    p = np.array([0.05, 0.05, 0.95, 0.95])  # two bins, each observed 0.5
    assert expected_calibration_error(y, p, bins=10) == pytest.approx(0.45)


def test_operating_points_by_hand() -> None:
    recall, thr = recall_at_precision(Y, P, 0.6)
    assert recall == pytest.approx(1.0) and thr == pytest.approx(0.7)
    recall, thr = recall_at_precision(Y, P, 0.9)
    assert recall == pytest.approx(0.5) and thr == pytest.approx(0.9)
    assert recall_at_precision(np.array([0, 1]), np.array([0.9, 0.1]), 0.99) == (0.0, float("inf"))
    assert precision_at_recall(Y, P, 1.0) == pytest.approx(2 / 3)


def test_evaluate_rejects_bad_labels_and_lengths() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        evaluate(np.array([2, 0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="differ in length"):
        evaluate(np.array([1, 0]), np.array([0.1]))


def test_psi_zero_for_same_distribution_and_large_for_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(5000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-9)
    assert psi(a, np.clip(a + 0.5, 0, 1)) > 1.0


def test_decile_table_by_hand() -> None:
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    p = np.linspace(1.0, 0.1, 10)
    table = decile_table(y, p, bins=5)
    assert [r["rows"] for r in table] == [2] * 5 and [r["positives"] for r in table] == [2, 1, 0, 0, 0]
    assert table[0]["rate"] == 1.0 and table[0]["lift"] == pytest.approx(1.0 / 0.3, rel=1e-3)
    assert [r["cumulative_recall"] for r in table] == [pytest.approx(2 / 3, abs=1e-4), 1.0, 1.0, 1.0, 1.0]
    assert table[0]["min_score"] == pytest.approx(0.9) and table[-1]["max_score"] == pytest.approx(0.2)


def test_bootstrap_intervals_cover_the_estimate_and_pair_the_models() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.2).astype(float)
    good, bad = y + rng.normal(0, 0.6, 3000), y + rng.normal(0, 1.2, 3000)
    out = bootstrap(y, {"good": good, "bad": bad, "same": good.copy()}, min_precision=0.3,
                    thresholds={"good": 0.5}, reference="bad", n=300, seed=1)
    lo, hi = out["good"]["pr_auc_ci"]
    assert lo < pr_auc(y, good) < hi and hi - lo < 0.1
    r_lo, r_hi = out["good"]["recall_at_precision_ci"]
    assert r_lo <= recall_at_precision(y, good, 0.3)[0] <= r_hi
    t_lo, t_hi = out["good"]["recall_at_threshold_ci"]
    assert t_lo < float(((good >= 0.5) & (y == 1)).sum() / y.sum()) < t_hi
    assert out["good"]["pr_auc_diff_ci"][0] > 0 and out["good"]["ahead_share"] == 1.0
    # an identical model: a zero-width difference, paired resample by resample
    assert out["same"]["pr_auc_ci"] == out["good"]["pr_auc_ci"]
    assert "recall_at_threshold_ci" not in out["bad"] and "pr_auc_diff_ci" not in out["bad"]
