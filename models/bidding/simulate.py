"""Offline auction replay under the han-cai/rlb-dp protocol.

* The test log is replayed in file (time) order and cut into episodes of N auctions; each
  episode starts with the full budget B. A last, shorter episode (the log's tail) is played
  too, as rlb-dp does, and the strategy is told n = N at its start (it does not know the
  log ends early) unless ``tail_horizon_known`` is set.
* B = int(c0 * N * CPM_train), CPM_train = cost_train / imp_train from info.json: rlb-dp's
  ``B = int(self.cpm * c0 * N)``; the *train* average market price, not the test one.
* A strategy with a ``feedback(pctr, won, clicked)`` method is told each auction's outcome
  after it (the click only when won: what a live bidder learns from win notices and click
  tracking).
* Second price: the bid is capped at the remaining budget and at ``max_bid`` (rlb-dp: 300);
  it wins when ``bid >= market price`` (rlb-dp's ``if a >= price``: ties win) and pays the
  market price.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

from models.bidding.strategies import AuctionState, BidStrategy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuctionLog:
    """One row per auction, in time order."""

    click: np.ndarray
    price: np.ndarray
    pctr: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.click)
        if not (len(self.price) == len(self.pctr) == n):
            raise ValueError("click, price and pctr columns differ in length")

    def __len__(self) -> int:
        return len(self.click)


def episode_budget(cpm_train: float, c0: float, episode_len: int) -> int:
    """rlb-dp's budget: int(CPM_train * c0 * N)."""
    if c0 <= 0 or episode_len < 1 or cpm_train <= 0:
        raise ValueError("c0, N and CPM_train must be positive")
    return int(cpm_train * c0 * episode_len)


@dataclass(frozen=True)
class ReplayResult:
    strategy: str
    auctions: int
    impressions: int
    clicks: int
    spend: float
    episodes: int
    budget_per_episode: float
    overspent_episodes: int
    episode_clicks: tuple[int, ...] = ()
    wins: np.ndarray | None = None  # per auction, when replay(keep_wins=True)

    @property
    def ecpc(self) -> float:
        """Cost per click in the price unit / 1000 (CPM fen -> fen per click, as rlb-dp prints)."""
        return self.spend / 1000 / self.clicks if self.clicks else math.inf

    @property
    def win_rate(self) -> float:
        return self.impressions / self.auctions if self.auctions else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        d = asdict(self)
        d.pop("episode_clicks")
        d.pop("wins")
        d["ecpc"] = round(self.ecpc, 4) if self.clicks else None
        d["win_rate"] = round(self.win_rate, 6)
        return d


def replay(log: AuctionLog, strategy: BidStrategy, budget: float, episode_len: int = 1000,
           max_bid: float = 300, tail_horizon_known: bool = False, keep_wins: bool = False) -> ReplayResult:
    """Replay ``log`` through ``strategy``; returns totals over all episodes (and which rows won)."""
    if budget < 0 or episode_len < 1:
        raise ValueError("budget must be >= 0 and episode_len >= 1")
    clicks_col = log.click.tolist()
    price_col = log.price.tolist()
    pctr_col = log.pctr.tolist()
    total = len(clicks_col)
    imps = clicks = episodes = overspent = 0
    per_episode: list[int] = []
    wins = np.zeros(total, dtype=bool) if keep_wins else None
    feedback = getattr(strategy, "feedback", None)  # strategies that learn from outcomes
    spend = 0.0
    start = 0
    while start < total:
        stop = min(start + episode_len, total)
        horizon = stop - start if tail_horizon_known else episode_len
        left = float(budget)
        episodes += 1
        clicks_before = clicks
        for i in range(start, stop):
            n_left = horizon - (i - start)
            state = AuctionState(n_left, left, horizon, float(budget))
            b = strategy.bid(pctr_col[i], state)
            if b > left:
                b = left
            if b > max_bid:
                b = max_bid
            price = price_col[i]
            won = b >= price
            if won:
                if wins is not None:
                    wins[i] = True
                imps += 1
                clicks += clicks_col[i]
                left -= price
                spend += price
            if feedback is not None:
                feedback(pctr_col[i], won, won and clicks_col[i] == 1)
        if left < -1e-9:
            overspent += 1
        per_episode.append(clicks - clicks_before)
        start = stop
    return ReplayResult(strategy.name, total, imps, clicks, spend, episodes, float(budget), overspent,
                        tuple(per_episode), wins)


def merge(results: list[ReplayResult], name: str) -> ReplayResult:
    """Totals of consecutive replays of one log's parts (e.g. a warm-up then the rest)."""
    if not results:
        raise ValueError("nothing to merge")
    budgets = {r.budget_per_episode for r in results}
    if len(budgets) != 1:
        raise ValueError(f"parts were replayed with different budgets: {sorted(budgets)}")
    return ReplayResult(
        name, sum(r.auctions for r in results), sum(r.impressions for r in results),
        sum(r.clicks for r in results), sum(r.spend for r in results), sum(r.episodes for r in results),
        results[0].budget_per_episode, sum(r.overspent_episodes for r in results),
        tuple(c for r in results for c in r.episode_clicks))


def paired_bootstrap(a: tuple[int, ...], b: tuple[int, ...], resamples: int = 2000, seed: int = 0
                     ) -> tuple[float, float]:
    """95 % percentile interval of sum(a) - sum(b), resampling episodes (paired)."""
    if len(a) != len(b) or not a:
        raise ValueError("per-episode series must be non-empty and of equal length")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(resamples, diff.size))
    sums = diff[idx].sum(axis=1)
    return float(np.percentile(sums, 2.5)), float(np.percentile(sums, 97.5))
