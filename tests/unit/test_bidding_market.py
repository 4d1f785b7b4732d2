"""The market-price model on a hand-computed histogram."""

from __future__ import annotations

import numpy as np
import pytest

from models.bidding.market import MarketPrice


def test_laplace_smoothed_histogram() -> None:
    m = MarketPrice.from_counts([0, 3, 1])  # (c + 1) / (4 + 3)
    np.testing.assert_allclose(m.pdf, [1 / 7, 4 / 7, 2 / 7])
    assert m.max_price == 2
    np.testing.assert_allclose(MarketPrice.from_counts([0, 3, 1], laplace=0).pdf, [0, 0.75, 0.25])


def test_win_probability_counts_ties_as_wins() -> None:
    m = MarketPrice(np.array([0.0, 0.5, 0.25, 0.25]))
    assert m.win_prob(-1) == 0
    assert m.win_prob(0.9) == 0
    assert m.win_prob(1) == 0.5
    assert m.win_prob(2.5) == 0.75
    assert m.win_prob(500) == 1.0


def test_expected_spend_pays_the_market_price() -> None:
    m = MarketPrice(np.array([0.0, 0.5, 0.25, 0.25]))
    assert m.expected_spend(1) == pytest.approx(0.5)
    assert m.expected_spend(2) == pytest.approx(1.0)
    assert m.expected_spend(3) == pytest.approx(1.75) == m.mean()
    assert m.bid_for_spend(0.99) == 1
    assert m.bid_for_spend(1.0) == 2
    assert m.bid_for_spend(100) == 3


def test_bad_distributions_are_rejected() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        MarketPrice(np.array([0.5, 0.2]))
    with pytest.raises(ValueError, match="non-negative"):
        MarketPrice.from_counts([1, -1])
    with pytest.raises(ValueError, match="all zero"):
        MarketPrice.from_counts([0, 0], laplace=0)
