"""A tenant's campaigns as one artifact: configs plus solved RLB tables, loaded memory-mapped.

Layout of the artifact directory (registered in the model registry as ``campaigns``)::

    campaigns.json                       # CampaignSet: every campaign's typed config
    tables/<campaign_id>/value_table.npy # RLB campaigns only: float32 V(n, b), memory-mapped on load
    tables/<campaign_id>/value_table.json

``write_book`` solves what is missing (or reuses tables passed in, e.g. from the previous
version when a campaign's table inputs did not change) and writes the directory;
``CampaignBook(artifact_dir)`` loads it, checks every table against its config and builds
each campaign's strategy. The class has the registry's predictor shape (``registry_name``,
``__init__(artifact_dir, version)``), so a serving replica loads it like a model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from models.bidding.campaign import CampaignConfig, CampaignSet, RlbConfig, build_strategy, solve_table
from models.bidding.rlb import ValueTable
from models.bidding.strategies import BidStrategy

logger = logging.getLogger(__name__)

REGISTRY_NAME = "campaigns"
SPEC_FILE = "campaigns.json"
TABLES_DIR = "tables"


@dataclass(frozen=True)
class Campaign:
    """One loaded campaign: its config and its ready strategy."""

    config: CampaignConfig
    strategy: BidStrategy


def table_inputs(cfg: CampaignConfig) -> str:
    """What an RLB table depends on, as a string: equal strings mean the same table."""
    if not isinstance(cfg.strategy, RlbConfig) or cfg.market is None:
        return ""
    s = cfg.strategy
    return json.dumps({"avg_ctr": s.avg_ctr, "horizon": s.horizon, "headroom": s.budget_headroom,
                       "budget": cfg.budget, "auctions": cfg.auctions_per_period,
                       "market": cfg.market.model_dump()}, sort_keys=True)


def write_book(folder: str | Path, campaigns: CampaignSet,
               tables: dict[str, ValueTable] | None = None) -> Path:
    """Write the artifact for ``campaigns`` to ``folder``, solving each RLB table not in ``tables``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tables = tables or {}
    solved: dict[str, ValueTable] = {}  # by table inputs: campaigns that differ only in name share one solve
    for cfg in campaigns.campaigns:
        if not isinstance(cfg.strategy, RlbConfig):
            continue
        table = tables.get(cfg.campaign_id) or solved.get(table_inputs(cfg))
        if table is None:
            logger.info("solving the RLB table of campaign %s", cfg.campaign_id)
            table = solve_table(cfg)
        solved[table_inputs(cfg)] = table
        build_strategy(cfg, table)  # the shape check, before anything is written
        table.save(out / TABLES_DIR / cfg.campaign_id)
        (out / TABLES_DIR / cfg.campaign_id / "inputs.json").write_text(table_inputs(cfg))
    (out / SPEC_FILE).write_text(campaigns.model_dump_json(indent=2))
    return out


def reusable_tables(folder: str | Path, campaigns: CampaignSet) -> dict[str, ValueTable]:
    """Tables of a previous book in ``folder`` whose inputs equal those of ``campaigns`` (no re-solve)."""
    out: dict[str, ValueTable] = {}
    for cfg in campaigns.campaigns:
        where = Path(folder) / TABLES_DIR / cfg.campaign_id
        inputs = where / "inputs.json"
        if isinstance(cfg.strategy, RlbConfig) and inputs.is_file() and inputs.read_text() == table_inputs(cfg):
            out[cfg.campaign_id] = ValueTable.load(where, mmap=False)
    return out


def read_campaigns(folder: str | Path) -> CampaignSet:
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a campaign book")
    return CampaignSet.model_validate_json(path.read_text())


class CampaignBook:
    """The loaded campaigns of one tenant, by id."""

    registry_name: ClassVar[str] = REGISTRY_NAME

    def __init__(self, artifact_dir: str, version: str | None = None):
        folder = Path(artifact_dir)
        self.version: str = version or folder.name
        self.campaigns: dict[str, Campaign] = {}
        for cfg in read_campaigns(folder).campaigns:
            table = None
            if isinstance(cfg.strategy, RlbConfig):
                table = ValueTable.load(folder / TABLES_DIR / cfg.campaign_id, mmap=True)
            self.campaigns[cfg.campaign_id] = Campaign(cfg, build_strategy(cfg, table))
        logger.info("campaign book %s: %d campaigns", self.version, len(self.campaigns))

    def get(self, campaign_id: str) -> Campaign | None:
        return self.campaigns.get(campaign_id)
