"""Strategy parameters from training information only (never from a test log).

The rule, for an episode of N auctions with budget B, given the train market-price
histogram and the train CTR (rlb-dp ``info.json``):

* ``b0`` = the highest whole bid whose expected payment per auction under the train
  market-price distribution is at most B / N (``MarketPrice.bid_for_spend``): a constant
  bid that, in expectation, spends the budget evenly.
* constant bids ``b0``; linear bids ``b0 * pctr / ctr_train`` (so it bids b0 at the train CTR).
* ORTB's winning-function scale ``c`` is the least-squares fit of w(b) to the train
  market-price CDF; its ``lambda`` makes ORTB bid b0 at the train CTR.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from models.bidding.market import MarketPrice
from models.bidding.strategies import (
    BidStrategy,
    ConstantBid,
    ConstantConfig,
    LinearBid,
    LinearConfig,
    OrtbBid,
    OrtbConfig,
)

logger = logging.getLogger(__name__)


def linear_base(market: MarketPrice, budget: float, episode_len: int) -> int:
    """b0: the constant bid whose expected spend per auction fits budget / episode_len."""
    if episode_len < 1 or budget < 0:
        raise ValueError("episode_len must be >= 1 and budget >= 0")
    return market.bid_for_spend(budget / episode_len)


def ortb_win(variant: Literal[1, 2], c: float, bids: np.ndarray) -> np.ndarray:
    """ORTB winning functions: w1(b) = b / (c + b); w2(b) = b^2 / (c^2 + b^2)."""
    b = np.asarray(bids, dtype=np.float64)
    if variant == 1:
        return b / (c + b)
    return b * b / (c * c + b * b)


def fit_ortb_c(market: MarketPrice, variant: Literal[1, 2]) -> float:
    """Least-squares fit of the winning function to the market-price CDF over bids 0..K."""
    bids = np.arange(market.max_price + 1, dtype=np.float64)
    cdf = np.cumsum(market.pdf)

    def loss(c: float) -> float:
        return float(np.sum((ortb_win(variant, c, bids) - cdf) ** 2))

    grid = np.geomspace(1e-2, 10.0 * market.max_price, 400)
    losses = [loss(c) for c in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    for _ in range(80):  # golden-section refinement inside the bracketing grid cell
        a = hi - (hi - lo) / 1.618033988749895
        b = lo + (hi - lo) / 1.618033988749895
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def ortb_lambda(variant: Literal[1, 2], c: float, theta: float, bid: float) -> float:
    """The lambda at which ORTB bids ``bid`` for pCTR ``theta``.

    ORTB's optimality condition theta * w'(b) = lambda * (w(b) + b * w'(b)) gives
    ORTB1: lambda = theta * c / (b * (b + 2c)); ORTB2: lambda = 2 * theta * c^2 / (b * (b^2 + 3c^2)).
    """
    if bid <= 0 or theta <= 0 or c <= 0:
        raise ValueError("bid, theta and c must be positive")
    if variant == 1:
        return theta * c / (bid * (bid + 2 * c))
    return 2 * theta * c * c / (bid * (bid * bid + 3 * c * c))


def strategy_configs(market: MarketPrice, ctr_train: float, budget: float, episode_len: int
                     ) -> dict[str, ConstantConfig | LinearConfig | OrtbConfig]:
    """Constant, linear, ORTB1 and ORTB2 configs by the rule in the module docstring."""
    b0 = linear_base(market, budget, episode_len)
    configs: dict[str, ConstantConfig | LinearConfig | OrtbConfig] = {
        "constant": ConstantConfig(price=b0),
        "linear": LinearConfig(base=b0, avg_ctr=ctr_train),
    }
    if b0 > 0:
        for variant in (1, 2):
            c = fit_ortb_c(market, variant)
            configs[f"ortb{variant}"] = OrtbConfig(
                variant=variant, c=c, lam=ortb_lambda(variant, c, ctr_train, b0))
    return configs


def build(cfg: ConstantConfig | LinearConfig | OrtbConfig) -> BidStrategy:
    """A ready strategy from its config."""
    if isinstance(cfg, ConstantConfig):
        return ConstantBid(cfg)
    if isinstance(cfg, LinearConfig):
        return LinearBid(cfg)
    return OrtbBid(cfg, name=f"ortb{cfg.variant}")
