"""Publish a tenant's bidding campaigns (the CLI; library: ``store.campaigns.publish``).

``python -m jobs.campaign --campaigns FILE --registry URI [--tenant T] [--redis URL [--reset-spend]]
[--reason TEXT] [--json]``

``FILE`` (YAML or JSON) holds ``campaigns:``, a list of ``models.bidding.campaign.CampaignConfig``
(budget per period, period, auctions forecast, strategy, market-price histogram for RLB, ...).
RLB value tables are solved here, never on a serving replica, and stored with the configs as
one registry version of ``campaigns``, which becomes the tenant's live version. Running
replicas pick it up within the app's ``bid.campaign_poll_s`` (5 s), without a redeploy. With ``--redis``, the budget
of each campaign's current period is set now (an edited budget applies at once;
``--reset-spend`` also zeroes what the period has spent).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from models.bidding.campaign import CampaignSet
from pipelines import entrypoint
from store.campaigns import publish
from store.registry import Registry, tenant_uri

Result = dict[str, Any]  # version, uri, campaigns, reused_tables, seconds, budgets_set, previous, tenant


class Config(BaseModel, extra="forbid"):
    campaigns: str = Field(description="YAML/JSON file with a 'campaigns' list")
    registry: str = Field(description="registry URI (local dir or s3://)")
    tenant: str | None = Field(None, description="the tenant's namespace of the registry (default: shared)")
    redis: str | None = Field(None, description="also set the current period's budgets in this Redis")
    reset_spend: bool = False
    reason: str = ""
    smoke_test: bool = False


def load_campaigns(path: str) -> CampaignSet:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: campaigns file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise entrypoint.BadInput(f"{path}: not YAML or JSON: {exc}") from exc
    if not isinstance(data, dict) or "campaigns" not in data:
        raise entrypoint.BadInput(f"{path}: expected a mapping with a 'campaigns' list")
    return CampaignSet.model_validate(data)


def run(cfg: Config) -> Result:
    campaigns = load_campaigns(cfg.campaigns)
    client = None
    if cfg.redis:
        import redis

        client = redis.Redis.from_url(cfg.redis, socket_timeout=5)
    try:
        out = publish(Registry(tenant_uri(cfg.registry, cfg.tenant)), campaigns, cfg.reason,
                      cfg.tenant or "default", client, cfg.reset_spend)
    finally:
        if client is not None:
            client.close()
    return {**out, "tenant": cfg.tenant or "default"}


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--campaigns", help="YAML/JSON file with a 'campaigns' list")
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    p.add_argument("--tenant", help="publish into this tenant's namespace (default: the shared default)")
    p.add_argument("--redis", help="Redis URL: set the current period's budgets now")
    p.add_argument("--reset-spend", action="store_true", help="with --redis: also zero the current period's spend")
    p.add_argument("--reason", help="why (kept in the registry's champion history)")


SMOKE = {"campaigns": [
    {"campaign_id": "smoke-const", "budget": 1000, "start": "2026-01-01T00:00:00Z", "auctions_per_period": 100,
     "strategy": {"kind": "constant", "price": 20}},
    {"campaign_id": "smoke-rlb", "budget": 200, "start": "2026-01-01T00:00:00Z", "auctions_per_period": 50,
     "strategy": {"kind": "rlb", "avg_ctr": 0.01}, "market": {"counts": [0, 4, 9, 12, 6, 3, 1]}}]}


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    if "campaigns" not in values:
        (tmp / "campaigns.yaml").write_text(yaml.safe_dump(SMOKE))
        values["campaigns"] = str(tmp / "campaigns.yaml")
    values.setdefault("registry", str(tmp / "registry"))


def summary(r: Result) -> str:
    return (f"published {len(r['campaigns'])} campaigns for tenant {r['tenant']} as {r['version']} "
            f"({len(r['reused_tables'])} tables reused); running replicas load it after jobs.deploy --reload")


JOB = entrypoint.Job(prog="python -m jobs.campaign", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke, summary=summary, input_errors=(ValueError,))


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
