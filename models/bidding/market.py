"""The market-price model: a discrete distribution of the winning (second) price.

Prices are integers ``0..max_price`` in the log's unit (iPinYou: CPM in fen, capped at
300 as in han-cai/rlb-dp). The pdf is a Laplace-smoothed histogram (rlb-dp's
``calc_m_pdf``: ``(count + laplace) / (total + K * laplace)``).

Tie rule (rlb-dp's ``if a >= price``): a bid wins when ``bid >= market price`` and pays
the market price. With integer prices, ``bid >= price`` holds exactly when
``floor(bid) >= price``, so fractional bids need no rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketPrice:
    """pdf[d] = P(market price == d) for d = 0..max_price."""

    pdf: np.ndarray

    def __post_init__(self) -> None:
        pdf = np.asarray(self.pdf, dtype=np.float64)
        if pdf.ndim != 1 or pdf.size < 2:
            raise ValueError("market-price pdf must be a 1-d array over prices 0..max_price")
        if (pdf < 0).any() or not np.isclose(pdf.sum(), 1.0, atol=1e-9):
            raise ValueError(f"market-price pdf must be non-negative and sum to 1 (sum={pdf.sum():.6g})")
        object.__setattr__(self, "pdf", pdf)
        object.__setattr__(self, "_cdf", np.cumsum(pdf))
        object.__setattr__(self, "_spend", np.cumsum(pdf * np.arange(pdf.size)))

    @classmethod
    def from_counts(cls, counts: Sequence[float] | np.ndarray, laplace: float = 1.0) -> MarketPrice:
        """Laplace-smoothed histogram of observed market prices (index = price)."""
        c = np.asarray(counts, dtype=np.float64)
        if c.ndim != 1 or c.size < 2:
            raise ValueError("price counts must be a 1-d array over prices 0..max_price")
        if (c < 0).any():
            raise ValueError("price counts must be non-negative")
        if laplace < 0 or c.sum() + c.size * laplace <= 0:
            raise ValueError("price counts are all zero and laplace is 0: no distribution")
        return cls((c + laplace) / (c.sum() + c.size * laplace))

    @property
    def max_price(self) -> int:
        return int(self.pdf.size - 1)

    def mean(self) -> float:
        return float(self._spend[-1])  # type: ignore[attr-defined]

    def win_prob(self, bid: float) -> float:
        """P(price <= bid): the chance a bid wins (ties win)."""
        if bid < 0:
            return 0.0
        return float(self._cdf[min(int(np.floor(bid)), self.max_price)])  # type: ignore[attr-defined]

    def expected_spend(self, bid: float) -> float:
        """E[price * 1{price <= bid}]: the expected payment of one auction at this bid."""
        if bid < 0:
            return 0.0
        return float(self._spend[min(int(np.floor(bid)), self.max_price)])  # type: ignore[attr-defined]

    def bid_for_spend(self, rate: float) -> int:
        """The highest integer bid whose expected payment per auction is at most ``rate``."""
        if rate < 0:
            raise ValueError(f"spend rate must be >= 0, got {rate}")
        spend = self._spend  # type: ignore[attr-defined]
        return int(np.searchsorted(spend, rate * (1 + 1e-12), side="right") - 1) if rate < spend[-1] \
            else self.max_price
