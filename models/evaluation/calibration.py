"""Calibration report for a pCTR column: reliability table, ECE, log loss, normalized entropy.

Bids are priced from pCTR, so its level matters as much as its ranking. CTRs are small
(0.1-1 %), so the default reliability table uses equal-count (quantile) bins: equal-width
bins would put almost every impression in the first bin. Bins are formed from the scores
sorted ascending (ties may straddle a bin edge).

* ``observed`` is the click rate in a bin, with a 95 % Wilson interval.
* ``ece`` = sum_b n_b / N * |observed_b - mean_pred_b|; ``max_ce`` the largest bin gap.
* ``calibration_ratio`` = sum(pCTR) / clicks (1 = the predicted clicks match).
* ``normalized_entropy`` = log loss / log loss of always predicting the observed CTR
  (He et al., 2014); below 1 means the scores carry information.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from models.evaluation.classification import _check, brier, log_loss


@dataclass(frozen=True)
class ReliabilityBin:
    lo: float
    hi: float
    count: int
    clicks: int
    mean_pred: float
    observed: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class CalibrationReport:
    rows: int
    clicks: int
    mean_pred: float
    observed_ctr: float
    calibration_ratio: float
    log_loss: float
    base_log_loss: float
    normalized_entropy: float
    brier: float
    ece: float
    max_ce: float
    binning: str
    bins: list[ReliabilityBin] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def wilson(clicks: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a rate."""
    if n == 0:
        return 0.0, 1.0
    phat = clicks / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _groups(p: np.ndarray, bins: int, binning: str) -> list[np.ndarray]:
    if binning == "quantile":
        order = np.argsort(p, kind="mergesort")
        return [g for g in np.array_split(order, bins) if g.size]
    if binning == "uniform":
        lo, hi = float(p.min()), float(p.max())
        width = (hi - lo) / bins or 1.0
        idx = np.minimum(((p - lo) / width).astype(int), bins - 1)
        return [np.flatnonzero(idx == b) for b in range(bins) if (idx == b).any()]
    raise ValueError(f"binning must be 'quantile' or 'uniform', got {binning!r}")


def calibration_report(y: np.ndarray, p: np.ndarray, bins: int = 10,
                       binning: Literal["quantile", "uniform"] = "quantile") -> CalibrationReport:
    """The report for labels ``y`` (0/1) and scores ``p`` in [0, 1]."""
    y, p = _check(y, p)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("pCTR must be finite numbers in [0, 1]")
    rows = []
    ece = max_ce = 0.0
    for g in _groups(p, bins, binning):
        n, c = int(g.size), int(y[g].sum())
        mean_pred, observed = float(p[g].mean()), c / n
        gap = abs(observed - mean_pred)
        ece += n / y.size * gap
        max_ce = max(max_ce, gap)
        rows.append(ReliabilityBin(float(p[g].min()), float(p[g].max()), n, c, mean_pred, observed, *wilson(c, n)))
    clicks = int(y.sum())
    rate = clicks / y.size
    base = log_loss(y, np.full_like(p, rate))
    ll = log_loss(y, p)
    return CalibrationReport(
        rows=int(y.size), clicks=clicks, mean_pred=float(p.mean()), observed_ctr=rate,
        calibration_ratio=float(p.sum() / clicks) if clicks else math.inf,
        log_loss=ll, base_log_loss=base, normalized_entropy=ll / base if base > 0 else math.inf,
        brier=brier(y, p), ece=ece, max_ce=max_ce, binning=binning, bins=rows,
    )
