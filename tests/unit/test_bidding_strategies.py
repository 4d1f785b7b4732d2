"""Bidding strategies on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from models.bidding.calibrate import fit_ortb_c, linear_base, ortb_lambda, ortb_win
from models.bidding.market import MarketPrice
from models.bidding.strategies import (
    AuctionState,
    BidStrategy,
    ConstantBid,
    ConstantConfig,
    LinearBid,
    LinearConfig,
    OrtbBid,
    OrtbConfig,
    PacedBid,
    PidConfig,
)

S = AuctionState(n_left=10, budget_left=100.0, n_total=10, budget_total=100.0)


def test_constant_bids_its_price_whatever_the_pctr() -> None:
    s = ConstantBid(ConstantConfig(price=7))
    assert isinstance(s, BidStrategy)
    assert s.bid(0.0, S) == 7 and s.bid(0.9, S) == 7


def test_linear_scales_base_by_pctr_over_average() -> None:
    s = LinearBid(LinearConfig(base=10, avg_ctr=0.002))
    assert s.bid(0.002, S) == pytest.approx(10)
    assert s.bid(0.005, S) == pytest.approx(25)
    assert s.bid(0.0, S) == 0


def test_configs_reject_bad_fields_by_name() -> None:
    with pytest.raises(ValidationError, match="avg_ctr"):
        LinearConfig(base=1, avg_ctr=0)
    with pytest.raises(ValidationError, match="extra"):
        ConstantConfig(price=1, typo=2)  # type: ignore[call-arg]


def test_ortb1_bid_solves_the_quadratic() -> None:
    # b = sqrt(c*theta/lambda + c^2) - c = sqrt(1*3 + 1) - 1 = 1
    s = OrtbBid(OrtbConfig(variant=1, c=1.0, lam=0.1))
    assert s.bid(0.3, S) == pytest.approx(1.0)
    # c=2, theta/lambda = 6: sqrt(12 + 4) - 2 = 2
    assert OrtbBid(OrtbConfig(variant=1, c=2.0, lam=0.05)).bid(0.3, S) == pytest.approx(2.0)
    assert s.bid(0.0, S) == 0


def test_ortb2_bid_solves_the_cubic() -> None:
    # b^3 + 3c^2 b = 2 theta c^2 / lambda; c=1, theta/lambda=2 -> b^3 + 3b - 4 = 0 -> b = 1
    s = OrtbBid(OrtbConfig(variant=2, c=1.0, lam=0.1))
    assert s.bid(0.2, S) == pytest.approx(1.0)
    # c=1, theta/lambda = 7 -> b^3 + 3b - 14 = 0 -> b = 2
    assert OrtbBid(OrtbConfig(variant=2, c=1.0, lam=0.1)).bid(0.7, S) == pytest.approx(2.0)


@pytest.mark.parametrize("variant", [1, 2])
def test_ortb_lambda_inverts_the_bid(variant: int) -> None:
    assert ortb_lambda(1, c=1.0, theta=0.3, bid=1.0) == pytest.approx(0.1)
    assert ortb_lambda(2, c=1.0, theta=0.2, bid=1.0) == pytest.approx(0.1)
    lam = ortb_lambda(variant, c=37.0, theta=0.004, bid=16.0)  # type: ignore[arg-type]
    s = OrtbBid(OrtbConfig(variant=variant, c=37.0, lam=lam))  # type: ignore[arg-type]
    assert s.bid(0.004, S) == pytest.approx(16.0)


@pytest.mark.parametrize("variant", [1, 2])
def test_fit_ortb_c_recovers_the_scale(variant: int) -> None:
    bids = np.arange(301, dtype=np.float64)
    cdf = ortb_win(variant, 20.0, bids)  # type: ignore[arg-type]
    cdf[-1] = 1.0
    pdf = np.diff(np.r_[0.0, cdf])
    assert fit_ortb_c(MarketPrice(pdf), variant) == pytest.approx(20.0, rel=0.02)  # type: ignore[arg-type]


def test_linear_base_spends_the_budget_rate() -> None:
    # prices 1 and 3 with probability 1/2: spend(1) = 0.5, spend(2) = 0.5, spend(3) = 2.0
    m = MarketPrice(np.array([0.0, 0.5, 0.0, 0.5]))
    assert linear_base(m, budget=100, episode_len=100) == 2  # rate 1.0: bids 1 or 2 spend 0.5
    assert linear_base(m, budget=50, episode_len=100) == 2
    assert linear_base(m, budget=49, episode_len=100) == 0
    assert linear_base(m, budget=200, episode_len=100) == 3
    assert linear_base(m, budget=10**6, episode_len=100) == 3


class _Fixed:
    name = "fixed"

    def bid(self, pctr: float, state: AuctionState) -> float:
        return 10.0


def _state(elapsed: int, spent: float, n: int = 10, budget: float = 100.0) -> AuctionState:
    return AuctionState(n_left=n - elapsed, budget_left=budget - spent, n_total=n, budget_total=budget)


def test_pid_raises_the_multiplier_when_under_spending() -> None:
    p = PacedBid(_Fixed(), PidConfig(kp=1.0, ki=0.5, kd=0.0, interval=2))
    assert p.name == "paced(fixed)"
    assert p.bid(0.1, _state(0, 0)) == pytest.approx(10.0)  # target 100/10 = 10 per auction
    assert p.bid(0.1, _state(1, 0)) == pytest.approx(10.0)  # mid-interval: no update
    # two auctions, nothing spent: e = 1 - 0/10 = 1, integral 1, u = 1 + 0.5 -> e^1.5
    assert p.bid(0.1, _state(2, 0)) == pytest.approx(10.0 * math.exp(1.5))
    # next target = 100 / 8 = 12.5; spent 40 in 2 auctions = 20: e = 1 - 20/12.5 = -0.6,
    # integral 0.4, u = -0.6 + 0.2 = -0.4
    assert p.bid(0.1, _state(4, 40)) == pytest.approx(10.0 * math.exp(-0.4))


def test_pid_derivative_and_clipping() -> None:
    p = PacedBid(_Fixed(), PidConfig(kp=0.0, ki=0.0, kd=2.0, interval=1, min_mult=0.5, max_mult=3.0))
    p.bid(0.1, _state(0, 0))
    # e = 1 (nothing spent), de = 1 - 0: u = 2 -> e^2 = 7.39 clipped to 3
    assert p.bid(0.1, _state(1, 0)) == pytest.approx(30.0)
    # target 100/9; spent 100/9 * 2 in one auction: e = -1, de = -2: u = -4 -> clipped to 0.5
    assert p.bid(0.1, _state(2, 200 / 9)) == pytest.approx(5.0)


def test_pid_resets_at_a_new_episode() -> None:
    p = PacedBid(_Fixed(), PidConfig(kp=1.0, ki=0.0, interval=1))
    p.bid(0.1, _state(0, 0))
    assert p.bid(0.1, _state(1, 0)) == pytest.approx(10.0 * math.e)
    assert p.bid(0.1, _state(0, 0)) == pytest.approx(10.0)  # elapsed back to 0: fresh controller


def test_strategy_configs_bid_b0_at_the_train_ctr() -> None:
    from models.bidding.calibrate import build, strategy_configs

    counts = np.r_[np.zeros(5), np.full(96, 100.0)]  # prices 5..100 uniform
    m = MarketPrice.from_counts(counts, laplace=0)
    cfgs = strategy_configs(m, ctr_train=0.004, budget=10_000, episode_len=1000)  # 10 per auction
    b0 = m.bid_for_spend(10.0)
    assert 0 < b0 < 100 and m.expected_spend(b0) <= 10.0 < m.expected_spend(b0 + 1)
    strategies = {name: build(cfg) for name, cfg in cfgs.items()}
    assert set(strategies) == {"constant", "linear", "ortb1", "ortb2"}
    for name, s in strategies.items():
        assert s.name == name
        assert s.bid(0.004, S) == pytest.approx(b0), name
    # ORTB is concave in pCTR: twice the CTR gets less than twice the bid, linear gets exactly twice
    assert strategies["linear"].bid(0.008, S) == pytest.approx(2 * b0)
    assert b0 < strategies["ortb1"].bid(0.008, S) < 2 * b0
    assert b0 < strategies["ortb2"].bid(0.008, S) < 2 * b0
