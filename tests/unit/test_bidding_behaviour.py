"""On auctions drawn from the DP's own model, the DP bids best: a check of the whole stack at scale."""

from __future__ import annotations

import numpy as np

from models.bidding.calibrate import build, strategy_configs
from models.bidding.market import MarketPrice
from models.bidding.rlb import CtrModel, ValueTable, solve_value_function
from models.bidding.simulate import AuctionLog, episode_budget, replay
from models.bidding.strategies import PacedBid, PidConfig, RlbBid


def test_rlb_with_the_true_ctr_distribution_wins_the_most_expected_clicks() -> None:
    rng = np.random.default_rng(7)
    counts = np.r_[np.zeros(3), rng.integers(50, 150, 78).astype(float)]  # prices 3..80
    market = MarketPrice.from_counts(counts, laplace=0)
    n, episodes = 100, 300
    theta = np.clip(rng.lognormal(np.log(0.01), 0.8, n * episodes), 0, 1)
    prices = rng.choice(market.pdf.size, size=theta.size, p=market.pdf)
    # expected clicks instead of sampled ones: the comparison is not drowned in Bernoulli noise
    log = AuctionLog(np.zeros(theta.size, dtype=np.int8), prices, theta)
    budget = episode_budget(market.mean(), 1 / 8, n)
    ctr_avg = float(theta.mean())
    table_dist = ValueTable(solve_value_function(market, CtrModel.from_sample(theta[:5000]), n, budget),
                            market.max_price)
    table_point = ValueTable(solve_value_function(market, CtrModel.point(ctr_avg), n, budget), market.max_price)
    cfgs = strategy_configs(market, ctr_avg, budget, n)
    strategies = {"rlb_dist": RlbBid(table_dist), "rlb": RlbBid(table_point),
                  "linear": build(cfgs["linear"]), "constant": build(cfgs["constant"]),
                  "paced(linear)": PacedBid(build(cfgs["linear"]), PidConfig())}
    value = {}
    for name, s in strategies.items():
        won = replay(log, s, budget, n, max_bid=market.max_price, keep_wins=True).wins
        assert won is not None
        value[name] = float(theta[won].sum())
    assert value["rlb_dist"] == max(value.values())
    assert value["rlb_dist"] > 1.02 * value["linear"]
    assert value["rlb"] > value["constant"]
