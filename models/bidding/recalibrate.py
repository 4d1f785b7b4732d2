"""Online pCTR recalibration from the bidder's own click feedback.

A bidder sees clicks only on the impressions it wins. ``RecalibratedBid`` keeps the
(pCTR, clicked) pairs of its won impressions, fits ``p' = sigmoid(a + b * logit(p))`` to them
by maximum a posteriori with the prior ``a ~ N(0, prior_sd_a^2)``, ``b ~ N(1, prior_sd_b^2)``
(centred on "trust the pCTR as it is"), and prices every new impression at ``p'`` through an
inner strategy. With few clicks the prior keeps ``p' ~ p``; as clicks accrue, an over-confident
pCTR (b < 1) is pulled toward the mean and an under-confident one spread out. The fit
runs every ``refit_every`` feedbacks, on all won impressions so far (causal: only the past).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.bidding.strategies import AuctionState, BidStrategy

logger = logging.getLogger(__name__)

_EPS = 1e-7


class RecalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prior_sd_a: float = Field(default=1.0, gt=0)
    prior_sd_b: float = Field(default=0.5, gt=0)
    refit_every: int = Field(default=1000, ge=1, description="feedbacks (auctions) between fits")
    newton_steps: int = Field(default=25, ge=1)


def _logit(p: float | np.ndarray) -> float | np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    result: float | np.ndarray = np.log(p / (1 - p))
    return result


def fit_platt_map(x: np.ndarray, y: np.ndarray, prior_sd_a: float, prior_sd_b: float,
                  steps: int = 25) -> tuple[float, float]:
    """MAP (a, b) of y ~ Bernoulli(sigmoid(a + b x)) with a ~ N(0, sd_a^2), b ~ N(1, sd_b^2)."""
    a, b = 0.0, 1.0
    prec = np.array([1 / prior_sd_a ** 2, 1 / prior_sd_b ** 2])
    for _ in range(steps):
        z = a + b * x
        s = 1.0 / (1.0 + np.exp(-z))
        r = y - s
        w = s * (1 - s)
        g = np.array([r.sum(), (r * x).sum()]) - prec * np.array([a, b - 1.0])
        h = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]]) + np.diag(prec)
        step = np.linalg.solve(h, g)
        a, b = a + float(step[0]), b + float(step[1])
        if abs(step).max() < 1e-9:
            break
    return a, b


class RecalibratedBid:
    """Wraps a strategy: bids ``inner.bid(p', state)`` with ``p'`` the recalibrated pCTR."""

    def __init__(self, inner: BidStrategy, cfg: RecalConfig | None = None, name: str | None = None):
        self.inner = inner
        self.cfg = cfg or RecalConfig()
        self.name = name or f"recal({inner.name})"
        self.a, self.b = 0.0, 1.0
        self._x: list[float] = []
        self._y: list[float] = []
        self._since_fit = 0

    def feedback(self, pctr: float, won: bool, clicked: bool) -> None:
        """The outcome of one auction (``clicked`` is only known, and only used, when won)."""
        if won:
            self._x.append(float(_logit(pctr)))
            self._y.append(1.0 if clicked else 0.0)
        self._since_fit += 1
        if self._since_fit >= self.cfg.refit_every and self._y:
            self.a, self.b = fit_platt_map(np.asarray(self._x), np.asarray(self._y), self.cfg.prior_sd_a,
                                           self.cfg.prior_sd_b, self.cfg.newton_steps)
            self._since_fit = 0
            logger.debug("recalibrated on %d wins (%d clicks): a=%.3f b=%.3f", len(self._y), sum(self._y),
                         self.a, self.b)

    def calibrated(self, pctr: float) -> float:
        if self.a == 0.0 and self.b == 1.0:
            return pctr
        return 1.0 / (1.0 + math.exp(-(self.a + self.b * float(_logit(pctr)))))

    def bid(self, pctr: float, state: AuctionState) -> float:
        return self.inner.bid(self.calibrated(pctr), state)
