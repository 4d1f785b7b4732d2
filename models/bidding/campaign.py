"""A campaign's bidding config, typed, and the pure decision behind ``POST /v1/bid``.

A ``CampaignConfig`` says what a campaign may spend and how it bids:

* ``budget`` per pacing period, in the campaign's price unit (whole numbers: iPinYou's CPM
  fen; spend is the sum of the CPM prices paid, as in rlb-dp). Periods are ``period_s``
  long, counted from ``start``; each period starts with the full budget.
* ``auctions_per_period``: the forecast of bid requests in a period. The strategy sees
  ``n_left = forecast - requests seen so far`` (at least 1), so the forecast should be an
  upper estimate: past it, a strategy plans as if each request were the period's last.
* ``strategy``: one of the typed strategy configs (constant, linear, ORTB, PID-paced, RLB).
  RLB reads a value table solved when the campaign is published (``CampaignBook``), never on
  a serving replica.
* ``market``: the market-price histogram (counts per whole price) RLB is solved from.
* ``max_bid``, ``hold_ms`` (how long a bid's budget is held waiting for its win/loss notice),
  and an optional pinned version of the tenant's ``pctr`` model, used when a request sends
  features instead of a pCTR; ``pctr_prior``, when set, prices such a request when no model
  answers in time (the fallback chain's last step; unset: a no-bid).

``decide`` turns (strategy, pCTR, budget state, floor) into a whole price or a no-bid reason;
the serving engine (``serve.bid``) adds I/O around it: the budget cache, the Redis hold, the
deadline.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.bidding.market import MarketPrice
from models.bidding.rlb import CtrModel, ValueTable, solve_value_function
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
    RlbBid,
)

logger = logging.getLogger(__name__)

CAMPAIGN_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"  # no '.': a period's budget key is '<id>.<period>'
MAX_CAMPAIGNS = 1000


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PacedConfig(_Config):
    """A PID controller on the spend rate around a linear, constant or ORTB strategy."""

    kind: Literal["paced"] = "paced"
    inner: Annotated[ConstantConfig | LinearConfig | OrtbConfig, Field(discriminator="kind")]
    pid: PidConfig = Field(default_factory=PidConfig)


class RlbConfig(_Config):
    """RLB (Cai et al., WSDM'17): a value table over (auctions left, budget left), solved at publication.

    ``avg_ctr`` is the CTR the table assumes of future impressions (rlb-dp's theta_avg, e.g.
    the train CTR). The table covers ``horizon`` auctions; a period with more auctions is
    mapped onto it as in the paper's large-scale rule, ``a(n, b) ~ a(horizon, b * horizon / n)``,
    with budgets up to ``budget_headroom`` times the period's budget per auction.
    ``fixed_ctr`` prices every impression at that CTR (SS-MDP, pCTR-blind)."""

    kind: Literal["rlb"] = "rlb"
    avg_ctr: float = Field(gt=0, le=1)
    horizon: int = Field(1000, ge=1, le=10_000)
    budget_headroom: float = Field(2.0, ge=1, le=16)
    fixed_ctr: float | None = Field(None, ge=0, le=1)


StrategyConfig = Annotated[ConstantConfig | LinearConfig | OrtbConfig | PacedConfig | RlbConfig,
                           Field(discriminator="kind")]


class MarketSpec(_Config):
    """Market-price histogram: ``counts[d]`` = auctions whose winning price was ``d`` (whole units)."""

    counts: list[float] = Field(min_length=2, max_length=100_001)
    laplace: float = Field(1.0, ge=0)

    def market(self) -> MarketPrice:
        return MarketPrice.from_counts(self.counts, laplace=self.laplace)


class CampaignConfig(_Config):
    campaign_id: str = Field(pattern=CAMPAIGN_ID)
    budget: int = Field(ge=1, le=10**15, description="spend allowed per period, in the price unit")
    period_s: int = Field(86_400, ge=1, le=366 * 86_400)
    start: datetime = Field(description="the first period's start (a zone-less time is UTC)")
    end: datetime | None = Field(None, description="no bids at or after this time (default: never ends)")
    auctions_per_period: int = Field(ge=1, le=10**12, description="forecast of bid requests per period")
    strategy: StrategyConfig
    market: MarketSpec | None = None
    max_bid: int = Field(300, ge=1, le=10**9)
    hold_ms: int = Field(2000, ge=10, le=3_600_000, description="budget held per bid until its notice")
    pctr_version: str | None = Field(None, description="a pinned version of the tenant's pctr model "
                                     "(default: its champion)")
    pctr_prior: float | None = Field(None, gt=0, le=1, description="the pCTR a request with features is priced "
                                     "at when no pctr model answers in time (none loaded, an error, too slow): "
                                     "the last step of the chain, like /v1/score's prior (default: no-bid)")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignConfig:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"campaign {self.campaign_id}: end must be after start")
        if isinstance(self.strategy, RlbConfig) and self.market is None:
            raise ValueError(f"campaign {self.campaign_id}: an rlb strategy needs a market price histogram "
                             "(market.counts)")
        return self


class CampaignSet(_Config):
    """A tenant's campaigns, published and loaded as one registry version."""

    campaigns: list[CampaignConfig] = Field(default_factory=list, max_length=MAX_CAMPAIGNS)

    @field_validator("campaigns")
    @classmethod
    def _unique(cls, value: list[CampaignConfig]) -> list[CampaignConfig]:
        seen: set[str] = set()
        for c in value:
            if c.campaign_id in seen:
                raise ValueError(f"campaign_id {c.campaign_id!r} appears twice")
            seen.add(c.campaign_id)
        return value


@dataclass(frozen=True, slots=True)
class Period:
    index: int
    start_s: float
    end_s: float

    def budget_key(self, campaign_id: str) -> str:
        """The campaign name of this period's budget in ``store.budget`` (one budget per period)."""
        return f"{campaign_id}.{self.index}"


def period_at(cfg: CampaignConfig, now_s: float) -> Period | None:
    """The period containing ``now_s`` (Unix seconds), or None before ``start`` / from ``end`` on."""
    start = cfg.start.timestamp()
    if now_s < start or (cfg.end is not None and now_s >= cfg.end.timestamp()):
        return None
    index = int((now_s - start) // cfg.period_s)
    begin = start + index * cfg.period_s
    end = begin + cfg.period_s
    if cfg.end is not None:
        end = min(end, cfg.end.timestamp())
    return Period(index, begin, end)


def table_shape(cfg: CampaignConfig) -> tuple[int, int]:
    """(auctions, largest budget) of the RLB table for ``cfg``: the whole period when it fits the
    horizon, else the horizon with budgets up to ``budget_headroom`` x the mapped budget."""
    if not isinstance(cfg.strategy, RlbConfig):
        raise ValueError(f"campaign {cfg.campaign_id} does not bid with rlb")
    n = min(cfg.auctions_per_period, cfg.strategy.horizon)
    if n == cfg.auctions_per_period:
        return n, cfg.budget
    mapped = cfg.budget * n / cfg.auctions_per_period
    return n, max(1, min(cfg.budget, math.ceil(cfg.strategy.budget_headroom * mapped)))


def solve_table(cfg: CampaignConfig) -> ValueTable:
    """The RLB value table of ``cfg`` (seconds to a minute of numpy; done at publication)."""
    if not isinstance(cfg.strategy, RlbConfig) or cfg.market is None:
        raise ValueError(f"campaign {cfg.campaign_id}: only an rlb campaign with a market has a table")
    market = cfg.market.market()
    n, b = table_shape(cfg)
    return ValueTable(solve_value_function(market, CtrModel.point(cfg.strategy.avg_ctr), n, b), market.max_price)


def build_strategy(cfg: CampaignConfig, table: ValueTable | None = None) -> BidStrategy:
    """A ready strategy for ``cfg``; an rlb campaign needs its solved ``table``."""
    s = cfg.strategy
    if isinstance(s, ConstantConfig):
        return ConstantBid(s)
    if isinstance(s, LinearConfig):
        return LinearBid(s)
    if isinstance(s, OrtbConfig):
        return OrtbBid(s, name=f"ortb{s.variant}")
    if isinstance(s, PacedConfig):
        inner = build_strategy(cfg.model_copy(update={"strategy": s.inner}))
        return PacedBid(inner, s.pid)
    if table is None:
        raise ValueError(f"campaign {cfg.campaign_id}: the rlb strategy needs its value table")
    expected = table_shape(cfg)
    if (table.n_max, table.b_max) != expected:
        raise ValueError(f"campaign {cfg.campaign_id}: value table is {table.n_max} x {table.b_max}, "
                         f"the config needs {expected[0]} x {expected[1]}")
    return RlbBid(table, "rlb" if s.fixed_ctr is None else "ss_mdp", fixed_ctr=s.fixed_ctr)


@dataclass(frozen=True, slots=True)
class Decision:
    """A whole price to bid (``price`` > 0), or ``price`` 0 and why not."""

    price: int
    reason: str | None = None


def decide(strategy: BidStrategy, pctr: float, state: AuctionState, floor: float, max_bid: int) -> Decision:
    """The strategy's bid, capped at the budget left and ``max_bid``, cut to a whole price.

    Market prices are whole numbers and a bid wins when it is >= the price, so ``floor(bid)``
    wins exactly the auctions ``bid`` would. No bid when it is 0 (``zero_bid``), when no
    budget is left (``budget_exhausted``) or when it is under the exchange's floor
    (``below_floor``)."""
    if state.budget_left < 1:
        return Decision(0, "budget_exhausted")
    raw = strategy.bid(pctr, state)
    if not math.isfinite(raw) or raw < 1:
        return Decision(0, "zero_bid")
    price = int(min(raw, state.budget_left, max_bid))
    if price < 1:
        return Decision(0, "zero_bid")
    if price < floor:
        return Decision(0, "below_floor")
    return Decision(price)
