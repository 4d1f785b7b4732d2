"""Binary focal loss (Lin et al., 2017) as a custom booster objective on raw margins.

With margin ``z``, ``p = sigmoid(z)`` and label ``y`` in {0, 1}::

    FL(z, y) = -alpha * y * (1 - p)**gamma * log(p) - (1 - alpha) * (1 - y) * p**gamma * log(1 - p)

``gamma`` down-weights rows the model already gets right (easy negatives, most of an
imbalanced table); ``alpha`` weights the positive class. ``gamma = 0`` and
``alpha = 0.5`` is half the log loss. The booster learns raw margins; its scores are
``sigmoid(margin)``, which are *not* probabilities under focal loss (it pushes them towards
0.5), so the isotonic calibration of ``calibration.py`` maps them to rates afterwards.

Derivatives with respect to ``z`` (``q = 1 - p``; ``dp/dz = p q``)::

    y = 1:  g = alpha * q**gamma * (gamma * p * log(p) - q)
            h = alpha * p * q**gamma * (q * (gamma * log(p) + 2 * gamma + 1) - gamma**2 * p * log(p))
    y = 0:  g = (1 - alpha) * p**gamma * (p - gamma * q * log(q))
            h = (1 - alpha) * q * p**gamma * (p * (gamma * log(q) + 2 * gamma + 1) - gamma**2 * q * log(q))

(the ``y = 0`` terms are the ``y = 1`` ones at ``-z`` with ``1 - alpha``). For ``gamma > 0`` the
exact hessian turns negative for badly misclassified rows (e.g. a positive with
``p < exp(-(2 + 1 / gamma))``); Newton steps need a positive one, so the objectives floor it
at ``HESS_FLOOR`` (the usual practice). ``grad_hess`` returns the exact values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HESS_FLOOR = 1e-6


def loss(z: np.ndarray, y: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """Per-row focal loss at margins ``z``."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    log_p, log_q = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)  # log sigmoid(z), log sigmoid(-z)
    p, q = np.exp(log_p), np.exp(log_q)
    result: np.ndarray = -alpha * y * q**gamma * log_p - (1.0 - alpha) * (1.0 - y) * p**gamma * log_q
    return result


def grad_hess(z: np.ndarray, y: np.ndarray, alpha: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact first and second derivatives of ``loss`` with respect to the margin."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    log_p, log_q = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
    p, q = np.exp(log_p), np.exp(log_q)
    g1 = alpha * q**gamma * (gamma * p * log_p - q)
    h1 = alpha * p * q**gamma * (q * (gamma * log_p + 2 * gamma + 1) - gamma**2 * p * log_p)
    g0 = (1.0 - alpha) * p**gamma * (p - gamma * q * log_q)
    h0 = (1.0 - alpha) * q * p**gamma * (p * (gamma * log_q + 2 * gamma + 1) - gamma**2 * q * log_q)
    return y * g1 + (1.0 - y) * g0, y * h1 + (1.0 - y) * h0


def _floored(z: np.ndarray, y: np.ndarray, alpha: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    g, h = grad_hess(z, y, alpha, gamma)
    return g, np.maximum(h, HESS_FLOOR)


def lightgbm_objective(alpha: float, gamma: float) -> Any:
    """``params["objective"]`` for ``lightgbm.train``: (raw scores, Dataset) -> (grad, hess)."""

    def focal(preds: np.ndarray, data: Any) -> tuple[np.ndarray, np.ndarray]:
        return _floored(preds, data.get_label(), alpha, gamma)

    return focal


def xgboost_objective(alpha: float, gamma: float) -> Any:
    """``obj=`` for ``xgboost.train``: (margins, DMatrix) -> (grad, hess)."""

    def focal(predt: np.ndarray, dtrain: Any) -> tuple[np.ndarray, np.ndarray]:
        return _floored(predt, dtrain.get_label(), alpha, gamma)

    return focal


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))

