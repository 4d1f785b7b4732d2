"""Score calibration: the downsampling log-odds correction, then isotonic, Platt or no map.

With negatives kept at rate ``w`` during training, a raw score p over-states the
odds by 1/w; ``q = p / (p + (1 - p) / w)`` restores them. A map fitted on held-out rows
then turns corrected scores into observed rates (``method``):

- ``none``: ``q`` itself (a log-loss booster trained without reweighting is close already);
- ``platt``: ``sigmoid(a * logit(q) + b)``, two numbers, smooth, needs few rows (Platt's smoothed
  targets keep ``a`` finite on separable data);
- ``isotonic``: the monotone step function fitted by isotonic regression.

``choose_method`` picks among them by cross-fitted log loss on out-of-fold scores. Every map
is strictly increasing, so calibration never changes a ranking (or PR-AUC). For isotonic
regression that needs care: it is a step function that maps whole ranges of raw scores to
one value, and PR-AUC treats a tie as one threshold. ``tie_break`` keeps the map strictly
increasing: the output is ``(1 - tie_break) * isotonic(q) + tie_break * q``, so distinct
raw scores keep their order while the value moves by at most ``tie_break`` (Platt's map gets the
same blend: a steep fit saturates at 0 or 1 in floating point). Artifacts
written before it existed load with ``tie_break = 0`` and score as before; those written
before ``method`` existed are isotonic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.evaluation.classification import log_loss
from models.propensity.focal import sigmoid

logger = logging.getLogger(__name__)

Method = Literal["none", "platt", "isotonic"]
METHODS: tuple[Method, ...] = ("none", "platt", "isotonic")  # simplest first
TIE_BREAK = 1e-6
EPS = 1e-7


def correct_downsampling(p: np.ndarray, keep_rate: float) -> np.ndarray:
    """Undo negative downsampling at rate ``keep_rate`` (1.0 = no downsampling)."""
    if not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
    p = np.asarray(p, dtype=np.float64)
    if keep_rate == 1.0:
        return p
    return p / (p + (1.0 - p) / keep_rate)


def _logit(p: np.ndarray) -> np.ndarray:
    q: np.ndarray = np.clip(p, EPS, 1 - EPS)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


def fit_platt(q: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """``(a, b)`` of ``sigmoid(a * logit(q) + b)`` by Newton's method on the log loss, with Platt's
    smoothed targets (``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``), which keep the slope finite
    on separable data; ``(1, 0)`` (identity) if ``a`` comes out <= 0."""
    z, y = _logit(np.asarray(q, dtype=np.float64)), np.asarray(y, dtype=np.float64)
    pos = float(y.sum())
    y = np.where(y > 0.5, (pos + 1) / (pos + 2), 1 / (len(y) - pos + 2))
    design = np.column_stack([z, np.ones_like(z)])
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = sigmoid(design @ w)
        grad = design.T @ (p - y) + 1e-6 * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    a, b = float(w[0]), float(w[1])
    return (a, b) if a > 0 and np.isfinite([a, b]).all() else (1.0, 0.0)


@dataclass
class Calibrator:
    keep_rate: float = 1.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    tie_break: float = TIE_BREAK
    method: Method = "isotonic"
    a: float = 1.0
    b: float = 0.0

    def fit(self, raw: np.ndarray, labels: np.ndarray) -> Calibrator:
        corrected = correct_downsampling(raw, self.keep_rate)
        labels = np.asarray(labels, dtype=np.float64)
        if self.method == "platt":
            self.a, self.b = fit_platt(corrected, labels)
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(corrected, labels)
            self.x = [float(v) for v in iso.X_thresholds_]
            self.y = [float(v) for v in iso.y_thresholds_]
        return self

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        corrected = correct_downsampling(raw, self.keep_rate)
        if self.method == "none":
            return corrected
        if self.method == "platt":  # tie_break as for isotonic: saturated values keep their order
            platt: np.ndarray = sigmoid(self.a * _logit(corrected) + self.b)
            return (1.0 - self.tie_break) * platt + self.tie_break * corrected
        if len(self.x) < 2:
            return corrected
        result: np.ndarray = (1.0 - self.tie_break) * np.interp(corrected, self.x, self.y) + self.tie_break * corrected
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "keep_rate": self.keep_rate, "x": self.x, "y": self.y,
                "tie_break": self.tie_break, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        return cls(keep_rate=float(d.get("keep_rate", 1.0)), x=list(d.get("x", [])), y=list(d.get("y", [])),
                   tie_break=float(d.get("tie_break", 0.0)), method=d.get("method", "isotonic"),
                   a=float(d.get("a", 1.0)), b=float(d.get("b", 0.0)))


def cross_fitted_log_loss(raw: np.ndarray, y: np.ndarray, groups: np.ndarray, method: Method,
                          keep_rate: float = 1.0) -> float:
    """Log loss of ``method`` when each group's scores are calibrated by a map fitted on the
    other groups (groups whose complement lacks a class are scored uncalibrated)."""
    out = np.empty(len(raw))
    for g in np.unique(groups):
        held, fit = groups == g, groups != g
        cal = Calibrator(keep_rate=keep_rate, method=method)
        if 0 < y[fit].sum() < fit.sum():
            cal.fit(raw[fit], y[fit])
        else:
            cal.method = "none"
        out[held] = cal(raw[held])
    return log_loss(y, out)


def choose_method(raw: np.ndarray, y: np.ndarray, groups: np.ndarray, keep_rate: float = 1.0,
                  min_gain: float = 0.005) -> tuple[Method, dict[str, float]]:
    """The calibration with the lowest cross-fitted log loss on out-of-fold scores ``raw``
    (``groups``: the fold of each row). A more elaborate map must lower the log loss of the
    simpler choice by ``min_gain`` (relative) to be taken; order: none, platt, isotonic."""
    raw, y = np.asarray(raw, dtype=np.float64), np.asarray(y, dtype=np.float64)
    losses = {m: cross_fitted_log_loss(raw, y, groups, m, keep_rate) for m in METHODS}
    chosen: Method = "none"
    for m in METHODS[1:]:
        if losses[m] < losses[chosen] * (1 - min_gain):
            chosen = m
    return chosen, {m: round(v, 6) for m, v in losses.items()}
