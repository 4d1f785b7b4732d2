"""Publishing a tenant's campaigns: one registry version of ``campaigns`` per change, champion = live.

Why the registry (and not Redis) holds campaign configs: a campaign is versioned, audited and
rolled back like a model (``Registry.rollback``), it carries an artifact (RLB tables, tens of
MB, memory-mapped by every replica on a machine) that has no place in Redis, it lives on the
same local or ``s3://`` storage as the models, and serving replicas load it the way they load
models (``deploy --reload`` hot-swaps it). What changes per request, the budget held and
spent, lives in Redis (``store.budget``), where the replicas share it atomically.

``publish`` writes a new ``CampaignBook`` version for the tenant (reusing the tables of the
current champion whose inputs did not change, so a budget-only edit of one campaign does not
re-solve the others), registers it and makes it the champion. With a Redis client it also
sets the current period's budget of each campaign that is running now, so an edited budget
applies to the period under way (``observe`` never overwrites a budget it finds).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from models.bidding.book import REGISTRY_NAME, reusable_tables, write_book
from models.bidding.campaign import CampaignSet, period_at
from store.budget import BudgetStore
from store.keys import DEFAULT_TENANT
from store.registry import Registry, RegistryError

logger = logging.getLogger(__name__)


def publish(registry: Registry, campaigns: CampaignSet, reason: str = "", tenant: str = DEFAULT_TENANT,
            redis_client: Any | None = None, reset_spend: bool = False, now_s: float | None = None
            ) -> dict[str, Any]:
    """Register ``campaigns`` as the tenant's new live campaign version; the summary as a dict."""
    tables = {}
    current = registry.champion(REGISTRY_NAME)
    with tempfile.TemporaryDirectory(prefix="tdm-campaigns-") as tmp:
        if current is not None:
            try:
                previous = registry.fetch(REGISTRY_NAME, current, Path(tmp) / "previous")
                tables = reusable_tables(previous, campaigns)
            except (RegistryError, OSError, ValueError) as exc:
                logger.warning("cannot reuse the tables of %s (%s): solving them again", current, exc)
        t0 = time.perf_counter()
        folder = write_book(Path(tmp) / "book", campaigns, tables)
        solve_s = time.perf_counter() - t0
        mv = registry.register(REGISTRY_NAME, folder, {
            "kind": "campaigns", "tenant": tenant, "reason": reason,
            "campaigns": [c.campaign_id for c in campaigns.campaigns], "reused_tables": sorted(tables)})
    registry.set_champion(REGISTRY_NAME, mv.version, reason or "published")
    budgets = {}
    if redis_client is not None:
        store = BudgetStore(redis_client, tenant=tenant)
        now = time.time() if now_s is None else now_s
        for c in campaigns.campaigns:
            period = period_at(c, now)
            if period is not None:
                key = period.budget_key(c.campaign_id)
                store.set_budget(key, c.budget, reset_spend=reset_spend)
                budgets[c.campaign_id] = {"period": period.index, "budget": c.budget}
    logger.info("published %d campaigns for tenant %s as %s (tables: %d reused, %.1f s)",
                len(campaigns.campaigns), tenant, mv.version, len(tables), solve_s)
    return {"version": mv.version, "uri": mv.uri, "campaigns": [c.campaign_id for c in campaigns.campaigns],
            "reused_tables": sorted(tables), "seconds": round(solve_s, 1), "budgets_set": budgets,
            "previous": current}
