"""The rlb-dp replay protocol on hand-computed logs."""

from __future__ import annotations

import numpy as np
import pytest

from models.bidding.simulate import AuctionLog, episode_budget, replay
from models.bidding.strategies import AuctionState, ConstantBid, ConstantConfig


def _log(prices: list[int], clicks: list[int]) -> AuctionLog:
    return AuctionLog(np.array(clicks), np.array(prices), np.full(len(prices), 0.01))


def test_budget_is_train_cpm_times_c0_times_n_truncated() -> None:
    # rlb-dp 2997: cost_train / imp_train = 19689072 / 312437 = 63.017...
    assert episode_budget(19689072 / 312437, 1 / 32, 1000) == 1969
    assert episode_budget(19689072 / 312437, 1 / 2, 1000) == 31508
    with pytest.raises(ValueError):
        episode_budget(63.0, 0, 1000)


def test_second_price_ties_win_and_episodes_restart_the_budget() -> None:
    log = _log([3, 4, 6, 5, 5], [1, 0, 1, 1, 0])
    r = replay(log, ConstantBid(ConstantConfig(price=5)), budget=10, episode_len=2, keep_wins=True)
    assert r.wins is not None and r.wins.tolist() == [True, True, False, True, True]
    # ep1: win 3, win 4; ep2: lose 6, win 5 (tie); ep3 (tail of one auction): win 5
    assert (r.impressions, r.clicks, r.spend, r.episodes) == (4, 2, 17.0, 3)
    assert r.ecpc == pytest.approx(17 / 1000 / 2)
    assert r.overspent_episodes == 0
    assert r.episode_clicks == (1, 1, 0)
    assert "episode_clicks" not in r.as_dict()


def test_bid_is_capped_at_remaining_budget_and_max_bid() -> None:
    log = _log([3, 4, 2], [0, 1, 1])
    r = replay(log, ConstantBid(ConstantConfig(price=50)), budget=6, episode_len=3)
    # win 3 (3 left); the bid is capped at 3 < 4: lose; win 2
    assert (r.impressions, r.clicks, r.spend) == (2, 1, 5.0)
    r = replay(_log([3, 4], [1, 1]), ConstantBid(ConstantConfig(price=50)), budget=100, max_bid=3)
    assert (r.impressions, r.clicks, r.spend) == (1, 1, 3.0)


class _Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.states: list[AuctionState] = []

    def bid(self, pctr: float, state: AuctionState) -> float:
        self.states.append(state)
        return 0.0


def test_strategy_sees_remaining_auctions_and_the_tail_horizon() -> None:
    rec = _Recorder()
    replay(_log([1] * 5, [0] * 5), rec, budget=7, episode_len=2)
    assert [s.n_left for s in rec.states] == [2, 1, 2, 1, 2]  # rlb-dp: the tail starts at n = N
    assert all(s.budget_left == 7 and s.n_total == 2 for s in rec.states)
    rec = _Recorder()
    replay(_log([1] * 5, [0] * 5), rec, budget=7, episode_len=2, tail_horizon_known=True)
    assert [s.n_left for s in rec.states] == [2, 1, 2, 1, 1]


def test_log_columns_must_match() -> None:
    with pytest.raises(ValueError, match="length"):
        AuctionLog(np.zeros(2), np.zeros(3), np.zeros(2))


def test_merge_and_paired_bootstrap() -> None:
    from models.bidding.simulate import merge, paired_bootstrap

    log = _log([3, 4, 6, 5, 5], [1, 0, 1, 1, 0])
    s = ConstantBid(ConstantConfig(price=5))
    whole = replay(log, s, budget=10, episode_len=2)
    first = replay(AuctionLog(log.click[:2], log.price[:2], log.pctr[:2]), s, budget=10, episode_len=2)
    rest = replay(AuctionLog(log.click[2:], log.price[2:], log.pctr[2:]), s, budget=10, episode_len=2)
    m = merge([first, rest], "constant")
    assert (m.impressions, m.clicks, m.spend, m.episodes, m.episode_clicks) == \
        (whole.impressions, whole.clicks, whole.spend, whole.episodes, whole.episode_clicks)
    with pytest.raises(ValueError, match="different budgets"):
        merge([first, replay(log, s, budget=9, episode_len=2)], "x")
    lo, hi = paired_bootstrap((1, 1, 1, 1), (0, 0, 0, 0))
    assert lo == hi == 4.0  # every resample sums four differences of 1
    lo, hi = paired_bootstrap((1, 0) * 50, (0, 1) * 50)
    assert lo < 0 < hi
