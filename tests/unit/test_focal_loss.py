"""Focal loss: derivatives against finite differences, limits, and both boosters fitting with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.evaluation.classification import pr_auc
from models.propensity import focal
from models.propensity.artifact import save
from models.propensity.finalize import fit_local
from models.propensity.model import PropensityConfig, raw_margin
from models.propensity.predictor import PropensityPredictor

Z = np.linspace(-8.0, 8.0, 81)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 0.0), (0.75, 1.0), (0.1, 5.0)])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_gradient_and_hessian_match_finite_differences(alpha: float, gamma: float, label: float) -> None:
    y = np.full_like(Z, label)
    g, h = focal.grad_hess(Z, y, alpha, gamma)
    eps = 1e-5
    num_g = (focal.loss(Z + eps, y, alpha, gamma) - focal.loss(Z - eps, y, alpha, gamma)) / (2 * eps)
    g_plus, _ = focal.grad_hess(Z + eps, y, alpha, gamma)
    g_minus, _ = focal.grad_hess(Z - eps, y, alpha, gamma)
    num_h = (g_plus - g_minus) / (2 * eps)
    np.testing.assert_allclose(g, num_g, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(h, num_h, rtol=1e-5, atol=1e-8)


def test_gamma_zero_is_weighted_log_loss() -> None:
    # alpha = 0.5, gamma = 0: half the log loss, gradient (p - y) / 2, hessian p (1 - p) / 2
    y = (np.arange(Z.size) % 2).astype(float)
    p = 1 / (1 + np.exp(-Z))
    g, h = focal.grad_hess(Z, y, 0.5, 0.0)
    np.testing.assert_allclose(g, (p - y) / 2, atol=1e-12)
    np.testing.assert_allclose(h, p * (1 - p) / 2, atol=1e-12)
    np.testing.assert_allclose(focal.loss(Z, y, 0.5, 0.0), -(y * np.log(p) + (1 - y) * np.log(1 - p)) / 2,
                               rtol=1e-9)


def test_easy_rows_weigh_less_and_hessian_is_floored() -> None:
    # a confidently right negative (z = -4) keeps a far smaller share of its log-loss gradient than a wrong one
    g_easy, _ = focal.grad_hess(np.array([-4.0]), np.array([0.0]), 0.5, 2.0)
    g_hard, _ = focal.grad_hess(np.array([4.0]), np.array([0.0]), 0.5, 2.0)
    p_easy, p_hard = 1 / (1 + np.exp(4.0)), 1 / (1 + np.exp(-4.0))
    assert g_easy[0] / (p_easy / 2) < 0.01 and g_hard[0] / (p_hard / 2) > 0.9
    # the exact hessian is negative for a badly missed positive; the objective floors it
    z, y = np.array([-6.0]), np.array([1.0])
    assert focal.grad_hess(z, y, 0.25, 2.0)[1][0] < 0

    class _Data:
        def get_label(self) -> np.ndarray:
            return y

    _, h = focal.lightgbm_objective(0.25, 2.0)(z, _Data())
    assert h[0] == focal.HESS_FLOOR


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = rng.random(n) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 3.0)))
    return pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=y.astype(int))


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_focal_boosters_learn_and_calibrate(tmp_path: Path, kind: str) -> None:
    train, val = _frame(4000, 1), _frame(3000, 2)
    cfg = PropensityConfig(kind=kind, imbalance="focal", focal_alpha=0.25, focal_gamma=2.0, num_boost_round=60,
                           num_threads=1)
    booster, art = fit_local(train, val, ["a", "b", "c"], "y", cfg)
    margins = raw_margin(booster, kind, val[["a", "b", "c"]].to_numpy())
    assert pr_auc(val["y"].to_numpy(), margins) > 0.4  # learns the signal in feature a
    save(tmp_path / "m", booster, art)
    scores = PropensityPredictor(str(tmp_path / "m")).predict_proba(val)
    assert np.all((scores >= 0) & (scores <= 1))
    # focal scores are not rates; after isotonic calibration their mean tracks the base rate
    assert abs(scores.mean() - val["y"].mean()) < 0.01
    assert art.config["imbalance"] == "focal" and art.config["focal_gamma"] == 2.0

