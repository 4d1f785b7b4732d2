from __future__ import annotations

import numpy as np
import pytest

from models.evaluation.classification import (
    brier,
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
