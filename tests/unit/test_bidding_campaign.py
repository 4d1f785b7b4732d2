"""Campaign configs, periods, the bid decision and the campaign book (configs + memory-mapped RLB tables)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from models.bidding.book import CampaignBook, read_campaigns, reusable_tables, write_book
from models.bidding.campaign import (
    CampaignConfig,
    CampaignSet,
    build_strategy,
    decide,
    period_at,
    solve_table,
    table_shape,
)
from models.bidding.market import MarketPrice
from models.bidding.rlb import CtrModel, ValueTable, solve_value_function
from models.bidding.strategies import AuctionState, ConstantBid, ConstantConfig, RlbBid

pytestmark = pytest.mark.unit

COUNTS = [0, 5, 10, 5, 2]  # prices 0..4


def cfg(**kw: Any) -> CampaignConfig:
    base: dict[str, Any] = {"campaign_id": "c1", "budget": 20, "period_s": 100, "start": "2026-01-01T00:00:00",
                            "auctions_per_period": 10, "strategy": {"kind": "rlb", "avg_ctr": 0.3, "horizon": 10},
                            "market": {"counts": COUNTS}}
    base.update(kw)
    return CampaignConfig.model_validate(base)


def test_periods_start_and_end() -> None:
    c = cfg(end="2026-01-01T00:04:10Z")
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert c.start.tzinfo is not None  # a zone-less start is UTC
    assert period_at(c, t0 - 0.001) is None
    p = period_at(c, t0 + 249)
    assert p is not None and (p.index, p.start_s - t0, p.end_s - t0) == (2, 200, 250)  # cut at the end
    assert p.budget_key("c1") == "c1.2"
    assert period_at(c, t0 + 250) is None  # no bids from the end on
    q = period_at(cfg(), t0 + 99.9)
    assert q is not None and q.index == 0


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="market price histogram"):
        cfg(market=None)
    with pytest.raises(ValidationError, match="end must be after start"):
        cfg(end="2025-12-31T00:00:00Z")
    with pytest.raises(ValidationError, match="campaign_id"):
        cfg(campaign_id="c.1")  # '.' separates the period in budget keys
    with pytest.raises(ValidationError, match="appears twice"):
        CampaignSet(campaigns=[cfg(), cfg()])
    with pytest.raises(ValidationError, match="budget"):
        cfg(budget=0)


def test_table_shape_whole_period_or_mapped_horizon() -> None:
    assert table_shape(cfg()) == (10, 20)  # the whole period fits the horizon: exact
    big = cfg(auctions_per_period=1000, budget=2000)
    # 10 auctions of a 1,000-auction period: budget per auction 2, x2 headroom -> 40
    assert table_shape(big) == (10, 40)
    with pytest.raises(ValueError, match="does not bid with rlb"):
        table_shape(cfg(strategy={"kind": "constant", "price": 3}))


def test_rlb_maps_long_periods_onto_its_horizon() -> None:
    market = MarketPrice.from_counts(COUNTS)
    table = ValueTable(solve_value_function(market, CtrModel.point(0.3), 10, 40), market.max_price)
    s = RlbBid(table)
    # 100 auctions left with 80 budget -> the table's 10 auctions with 8
    assert s.bid(0.5, AuctionState(100, 80.0, 1000, 2000.0)) == table.bid(0.5, 10, 8.0)
    assert s.bid(0.5, AuctionState(7, 13.0, 1000, 2000.0)) == table.bid(0.5, 7, 13.0)  # inside: unchanged


def test_decide_caps_rounds_and_names_no_bids() -> None:
    s = ConstantBid(ConstantConfig(price=7.9))
    st = AuctionState(5, 100.0, 10, 100.0)
    assert decide(s, 0.1, st, floor=0, max_bid=300).price == 7  # a whole price wins the same auctions
    assert decide(s, 0.1, st, floor=0, max_bid=5).price == 5
    assert decide(s, 0.1, AuctionState(5, 3.5, 10, 100.0), floor=0, max_bid=300).price == 3
    assert decide(s, 0.1, st, floor=7.5, max_bid=300).reason == "below_floor"
    assert decide(s, 0.1, AuctionState(5, 0.5, 10, 100.0), floor=0, max_bid=300).reason == "budget_exhausted"
    assert decide(ConstantBid(ConstantConfig(price=0.9)), 0.1, st, 0, 300).reason == "zero_bid"


def test_strategies_from_configs() -> None:
    c = cfg(strategy={"kind": "paced", "inner": {"kind": "linear", "base": 10, "avg_ctr": 0.01}})
    assert build_strategy(c).name == "paced(linear)"
    assert build_strategy(cfg(strategy={"kind": "ortb", "variant": 2, "c": 5, "lam": 1e-4})).name == "ortb2"
    with pytest.raises(ValueError, match="needs its value table"):
        build_strategy(cfg())
    wrong = ValueTable(np.zeros((3, 4), dtype=np.float32), 4)
    with pytest.raises(ValueError, match="value table is 3 x 3"):
        build_strategy(cfg(), wrong)


def test_book_round_trip_memory_maps_tables_and_reuses_unchanged_ones(tmp_path: Path) -> None:
    campaigns = CampaignSet(campaigns=[cfg(), cfg(campaign_id="k2", strategy={"kind": "constant", "price": 3})])
    folder = write_book(tmp_path / "v1", campaigns)
    book = CampaignBook(str(folder), version="vcamp-1")
    assert book.version == "vcamp-1" and set(book.campaigns) == {"c1", "k2"}
    rlb = book.get("c1")
    assert rlb is not None and isinstance(rlb.strategy, RlbBid)
    assert isinstance(rlb.strategy.table.table, np.memmap)
    np.testing.assert_array_equal(rlb.strategy.table.table, solve_table(cfg()).table)
    assert book.get("nope") is None
    assert read_campaigns(folder) == campaigns
    # a new version that changes only k2 reuses c1's table; one that changes c1's budget does not
    assert set(reusable_tables(folder, CampaignSet(campaigns=[cfg(), cfg(campaign_id="k2", strategy={
        "kind": "constant", "price": 4})]))) == {"c1"}
    assert reusable_tables(folder, CampaignSet(campaigns=[cfg(budget=21)])) == {}
    spec = json.loads((folder / "campaigns.json").read_text())
    assert spec["campaigns"][0]["strategy"]["kind"] == "rlb"
    with pytest.raises(FileNotFoundError, match="not a campaign book"):
        CampaignBook(str(tmp_path))
