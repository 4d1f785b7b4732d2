"""Online pCTR recalibration: the MAP fit and the feedback loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.bidding.recalibrate import RecalConfig, RecalibratedBid, fit_platt_map
from models.bidding.simulate import AuctionLog, replay
from models.bidding.strategies import AuctionState

S = AuctionState(n_left=5, budget_left=50.0, n_total=5, budget_total=50.0)


class _Echo:
    name = "echo"

    def bid(self, pctr: float, state: AuctionState) -> float:
        return 1000.0 * pctr


def test_map_fit_recovers_an_overconfident_pctr() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(-4.0, 1.0, 200_000)  # logit pCTR
    true = 1 / (1 + np.exp(-(-2.0 + 0.5 * x)))  # the truth is flatter: b = 0.5, a = -2
    y = (rng.random(x.size) < true).astype(float)
    a, b = fit_platt_map(x, y, prior_sd_a=10.0, prior_sd_b=10.0)
    assert a == pytest.approx(-2.0, abs=0.15) and b == pytest.approx(0.5, abs=0.04)


def test_the_prior_holds_with_no_evidence() -> None:
    a, b = fit_platt_map(np.array([-5.0, -5.0]), np.array([0.0, 0.0]), prior_sd_a=0.01, prior_sd_b=0.01)
    assert a == pytest.approx(0.0, abs=0.01) and b == pytest.approx(1.0, abs=0.05)


def test_feedback_only_from_won_auctions_and_refit_cadence() -> None:
    s = RecalibratedBid(_Echo(), RecalConfig(refit_every=4, prior_sd_a=10, prior_sd_b=10))
    assert s.name == "recal(echo)"
    assert s.bid(0.01, S) == pytest.approx(10.0)  # identity before any fit
    for _ in range(3):
        s.feedback(0.01, won=True, clicked=True)
    assert (s.a, s.b) == (0.0, 1.0)  # three feedbacks: no fit yet
    s.feedback(0.5, won=False, clicked=True)  # a lost auction's click is unknown: not used
    assert len(s._y) == 3 and s._y == [1.0, 1.0, 1.0]
    assert s.calibrated(0.01) > 0.5  # every won impression clicked: p' rises


def test_replay_feeds_outcomes_back() -> None:
    seen: list[tuple[float, bool, bool]] = []

    class _Spy(_Echo):
        def feedback(self, pctr: float, won: bool, clicked: bool) -> None:
            seen.append((pctr, won, clicked))

    log = AuctionLog(np.array([1, 1, 0]), np.array([5, 50, 5]), np.array([0.01, 0.02, 0.03]))
    replay(log, _Spy(), budget=100, episode_len=3)
    # bids 10, 20, 30 against prices 5, 50, 5: won, lost (its click hidden), won
    assert seen == [(0.01, True, True), (0.02, False, False), (0.03, True, False)]


def test_calibrated_matches_the_formula() -> None:
    s = RecalibratedBid(_Echo())
    s.a, s.b = -1.0, 0.5
    p = 0.02
    expected = 1 / (1 + math.exp(-(-1.0 + 0.5 * math.log(p / (1 - p)))))
    assert s.calibrated(p) == pytest.approx(expected)
    assert s.bid(p, S) == pytest.approx(1000 * expected)
