"""Bidding strategies behind one interface: ``bid(pctr, state) -> price``.

A strategy is built once (tables and constants computed up front) and then answers each
auction from the impression's pCTR and the campaign's budget state, with no I/O: a Serve
replica calls it in microseconds. All prices are in the market-price unit (iPinYou: CPM
in fen). The caller caps a bid at the remaining budget and the exchange's max bid.

Strategies (configs are typed; ``build`` turns a config into a ready strategy):

* ``ConstantBid``: the same price for every impression.
* ``LinearBid``: ``base * pctr / avg_ctr`` (Perlich et al. 2012; rlb-dp ``lin_bid``).
* ``OrtbBid``: ORTB1 / ORTB2 of Zhang, Yuan & Wang (KDD'14), concave in pCTR.
* ``PacedBid``: a PID controller on the spend rate that scales another strategy's bids.
* ``RlbBid``: the RLB value-function lookup (see ``models.bidding.rlb``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from models.bidding.rlb import ValueTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuctionState:
    """The campaign's budget state as one auction arrives.

    ``n_left`` counts this auction; ``n_total``/``budget_total`` are the episode's (a pacing
    period's) auctions and budget.
    """

    n_left: int
    budget_left: float
    n_total: int
    budget_total: float

    @property
    def elapsed(self) -> int:
        return self.n_total - self.n_left

    @property
    def spent(self) -> float:
        return self.budget_total - self.budget_left


@runtime_checkable
class BidStrategy(Protocol):
    name: str

    def bid(self, pctr: float, state: AuctionState) -> float:
        """The price to bid (>= 0; 0 means no bid)."""
        ...


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConstantConfig(_Config):
    kind: Literal["constant"] = "constant"
    price: float = Field(ge=0)


class LinearConfig(_Config):
    kind: Literal["linear"] = "linear"
    base: float = Field(ge=0, description="bid at the average CTR")
    avg_ctr: float = Field(gt=0, le=1)


class OrtbConfig(_Config):
    kind: Literal["ortb"] = "ortb"
    variant: Literal[1, 2] = 1
    c: float = Field(gt=0, description="winning-function scale, fitted to the market-price CDF")
    lam: float = Field(gt=0, description="Lagrange multiplier of the budget constraint")


class PidConfig(_Config):
    kind: Literal["paced"] = "paced"
    kp: float = Field(default=0.5, ge=0)
    ki: float = Field(default=0.1, ge=0)
    kd: float = Field(default=0.0, ge=0)
    interval: int = Field(default=50, ge=1, description="auctions between controller updates")
    min_mult: float = Field(default=0.1, gt=0)
    max_mult: float = Field(default=10.0, gt=0)


@dataclass(slots=True)
class ConstantBid:
    cfg: ConstantConfig
    name: str = "constant"

    def bid(self, pctr: float, state: AuctionState) -> float:
        return self.cfg.price


@dataclass(slots=True)
class LinearBid:
    cfg: LinearConfig
    name: str = "linear"

    def bid(self, pctr: float, state: AuctionState) -> float:
        return self.cfg.base * pctr / self.cfg.avg_ctr


@dataclass(slots=True)
class OrtbBid:
    cfg: OrtbConfig
    name: str = "ortb"

    def bid(self, pctr: float, state: AuctionState) -> float:
        c, lam = self.cfg.c, self.cfg.lam
        if pctr <= 0:
            return 0.0
        if self.cfg.variant == 1:  # w(b) = b / (c + b)
            return math.sqrt(c * pctr / lam + c * c) - c
        root = pctr + math.sqrt(c * c * lam * lam + pctr * pctr)  # w(b) = b^2 / (c^2 + b^2)
        ratio = root / (c * lam)
        result: float = c * (ratio ** (1 / 3) - ratio ** (-1 / 3))
        return result


class PacedBid:
    """PID on the spend rate, as a multiplier on an inner strategy's bid.

    Every ``interval`` auctions the controller compares the interval's spend rate with the
    rate that would spend the remaining budget evenly over the remaining auctions,
    ``e = 1 - actual / target`` (positive = under-spending), and sets
    ``multiplier = exp(kp*e + ki*sum(e) + kd*(e - e_prev))`` clipped to [min_mult, max_mult].
    Its memory resets when a new episode starts (elapsed auctions go back down).
    """

    def __init__(self, inner: BidStrategy, cfg: PidConfig):
        self.inner = inner
        self.cfg = cfg
        self.name = f"paced({inner.name})"
        self.reset()

    def reset(self) -> None:
        self.multiplier = 1.0
        self._integral = 0.0
        self._prev_error = 0.0
        self._mark_elapsed = 0
        self._mark_spent = 0.0
        self._mark_target = 0.0

    def _update(self, state: AuctionState) -> None:
        cfg = self.cfg
        done = state.elapsed - self._mark_elapsed
        rate = (state.spent - self._mark_spent) / done
        error = 1.0 - rate / self._mark_target if self._mark_target > 0 else 0.0
        self._integral += error
        u = cfg.kp * error + cfg.ki * self._integral + cfg.kd * (error - self._prev_error)
        self._prev_error = error
        self.multiplier = min(max(math.exp(u), cfg.min_mult), cfg.max_mult)
        self._start_interval(state)

    def _start_interval(self, state: AuctionState) -> None:
        self._mark_elapsed = state.elapsed
        self._mark_spent = state.spent
        self._mark_target = state.budget_left / state.n_left if state.n_left > 0 else 0.0

    def bid(self, pctr: float, state: AuctionState) -> float:
        if state.elapsed < self._mark_elapsed or state.elapsed == 0:  # a new episode
            self.reset()
            self._start_interval(state)
        elif state.elapsed - self._mark_elapsed >= self.cfg.interval:
            self._update(state)
        return self.multiplier * self.inner.bid(pctr, state)


class RlbBid:
    """RLB: the bid that solves the value-function inequality, read from a solved table.

    With ``fixed_ctr`` set, every impression is priced at that CTR instead of its pCTR: the
    SS-MDP baseline of rlb-dp (Yuan et al.), which plans the budget but ignores pCTR.

    More auctions left than the table covers (a day of traffic against a table of 1,000) are
    mapped onto its last row with the budget scaled alike, the large-scale rule of Cai et al.
    (Sec. 4.3): ``a(n, b) ~ a(N0, b * N0 / n)`` for n > N0, so the budget per auction is kept.
    """

    def __init__(self, table: ValueTable, name: str = "rlb", fixed_ctr: float | None = None):
        self.table = table
        self.name = name
        self.fixed_ctr = fixed_ctr

    def bid(self, pctr: float, state: AuctionState) -> float:
        theta = pctr if self.fixed_ctr is None else self.fixed_ctr
        n, b = state.n_left, state.budget_left
        n0 = self.table.n_max
        if n > n0:
            b = b * n0 / n
            n = n0
        return float(self.table.bid(theta, n, b))
