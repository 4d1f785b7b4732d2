"""RLB value function and bid rule on a market solved by hand.

Market: price 1 or 2, each with probability 1/2 (no mass at 0), so K = 2.

Point CTR theta = 1 (rlb-dp's approximation): V(0, .) = 0 and
  V(1, b) = P(price <= b)                      = [0, 0.5, 1, 1, 1]
  V(2, 1) = 0.5 + m1 (1 - (0.5 - 0))           = 0.75
  V(2, 2) = 1 + m1 (1 - (1 - 0.5)) + m2 (1 - 1) = 1.25
  V(2, 3) = 1 + m1 (1 - 0) + m2 (1 - 0.5)      = 1.75   (win, then 1 or 0.5 more)
  V(2, 4) = 2                                   (both auctions affordable)

pCTR 0 or 1 with probability 1/2 (h(x) = 0.5 (1 - x)^+):
  V(1, b) = 0.5 P(price <= b)                   = [0, 0.25, 0.5, 0.5, 0.5]
  V(2, 1) = 0.25 + m1 h(0.25)                   = 0.4375
  V(2, 2) = 0.5 + m1 h(0.25) + m2 h(0.5)        = 0.8125
  V(2, 3) = 0.5 + m1 h(0) + m2 h(0.25)          = 0.9375
"""

from __future__ import annotations

import numpy as np
import pytest

from models.bidding.market import MarketPrice
from models.bidding.rlb import CtrModel, ValueTable, solve_value_function
from models.bidding.strategies import AuctionState, RlbBid

M = MarketPrice(np.array([0.0, 0.5, 0.5]))


def test_ctr_model_expected_excess() -> None:
    h = CtrModel(np.array([0.0, 1.0])).h(np.array([0.0, 0.25, 1.0, 2.0]))
    np.testing.assert_allclose(h, [0.5, 0.375, 0.0, 0.0])
    np.testing.assert_allclose(CtrModel.point(0.3).h(np.array([0.0, 0.1, 0.5])), [0.3, 0.2, 0.0])
    with pytest.raises(ValueError, match="pCTR"):
        CtrModel(np.array([0.5, 1.5]))


def test_value_function_point_ctr_by_hand() -> None:
    v = solve_value_function(M, CtrModel.point(1.0), n_max=3, b_max=4)
    np.testing.assert_allclose(v[0], [0, 0, 0, 0, 0])
    np.testing.assert_allclose(v[1], [0, 0.5, 1, 1, 1])
    np.testing.assert_allclose(v[2], [0, 0.75, 1.25, 1.75, 2.0])


def test_value_function_ctr_distribution_by_hand() -> None:
    v = solve_value_function(M, CtrModel(np.array([0.0, 1.0])), n_max=3, b_max=3)
    np.testing.assert_allclose(v[1], [0, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(v[2], [0, 0.4375, 0.8125, 0.9375])


def test_value_function_does_not_depend_on_the_budget_range() -> None:
    small = solve_value_function(M, CtrModel.point(0.3), n_max=6, b_max=5)
    large = solve_value_function(M, CtrModel.point(0.3), n_max=6, b_max=12)
    np.testing.assert_allclose(small, large[:, :6])


def test_bid_solves_the_rlb_inequality() -> None:
    t = ValueTable(solve_value_function(M, CtrModel.point(1.0), n_max=3, b_max=4), M.max_price)
    # n=2 reads V(1, .) = [0, .5, 1, 1, 1]
    # b=3: d=1 costs V1(3)-V1(2) = 0; d=2 costs V1(3)-V1(1) = 0.5 -> bid 2 iff theta >= 0.5
    assert t.bid(0.6, n_left=2, budget_left=3) == 2
    assert t.bid(0.4, n_left=2, budget_left=3) == 1
    # b=2: d=1 costs 0.5, d=2 costs 1
    assert t.bid(0.4, n_left=2, budget_left=2) == 0
    assert t.bid(0.6, n_left=2, budget_left=2) == 1
    assert t.bid(1.0, n_left=2, budget_left=2) == 2
    # the last auction: future is worth nothing, bid everything up to the price cap
    assert t.bid(0.01, n_left=1, budget_left=5) == 2
    assert t.bid(0.01, n_left=1, budget_left=1) == 1
    # no budget, no auctions
    assert t.bid(0.9, n_left=2, budget_left=0) == 0
    assert t.bid(0.9, n_left=0, budget_left=3) == 0


def test_bid_beyond_the_table_uses_its_edges() -> None:
    t = ValueTable(solve_value_function(M, CtrModel.point(1.0), n_max=3, b_max=4), M.max_price)
    assert t.bid(0.6, n_left=50, budget_left=3) == t.bid(0.6, n_left=3, budget_left=3)
    assert t.bid(0.6, n_left=2, budget_left=40) == t.bid(0.6, n_left=2, budget_left=4)


def test_rlb_strategy_reads_the_state() -> None:
    t = ValueTable(solve_value_function(M, CtrModel.point(1.0), n_max=3, b_max=4), M.max_price)
    s = RlbBid(t)
    assert s.bid(0.6, AuctionState(n_left=2, budget_left=3.0, n_total=3, budget_total=4.0)) == 2
    assert s.bid(0.4, AuctionState(n_left=2, budget_left=3.7, n_total=3, budget_total=4.0)) == 1
    blind = RlbBid(t, "ss_mdp", fixed_ctr=0.6)  # prices every impression at 0.6
    assert blind.bid(0.0, AuctionState(n_left=2, budget_left=3.0, n_total=3, budget_total=4.0)) == 2


def test_fast_h_matches_the_exact_expectation() -> None:
    rng = np.random.default_rng(0)
    sample = rng.lognormal(-6, 0.8, 3000).clip(0, 1)
    model = CtrModel.from_sample(sample)
    x = np.r_[0.0, rng.uniform(0, sample.max() * 1.2, 500)]
    exact = np.array([np.maximum(model.values - xi, 0).mean() for xi in x])
    np.testing.assert_allclose(model.h(x), exact, atol=1e-7)


def test_value_table_round_trips_through_a_memory_mapped_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = ValueTable(solve_value_function(M, CtrModel.point(1.0), n_max=3, b_max=4), M.max_price)
    loaded = ValueTable.load(t.save(tmp_path / "rlb"))
    assert isinstance(loaded.table, np.memmap)
    np.testing.assert_array_equal(loaded.table, t.table)
    assert loaded.bid(0.6, n_left=2, budget_left=3) == 2
    (tmp_path / "rlb" / "value_table.json").write_text('{"n_max": 9, "b_max": 4, "max_price": 2}')
    with pytest.raises(ValueError, match="does not match"):
        ValueTable.load(tmp_path / "rlb")
