"""What a replica bids with, per tenant: the published campaigns and the pCTR models, kept current.

Campaigns change more often than models and must not wait for a redeploy: every ``poll_s``
the replica reads the champion pointers of ``campaigns`` and ``pctr`` for each tenant it has
served (two small reads), and when one moved, loads the new version in a worker thread and
swaps it in whole; requests keep the old one until then. A version that fails to load is
logged and the old one kept.

Where they come from: a tenant's campaigns only from its own registry namespace
(``store.registry.tenant_uri``; the default tenant owns the root), never another tenant's, since
a campaign spends the tenant's money; the pCTR model like every model (``store.registry.
resolve``: the tenant's own champion, else the shared default). A tenant with its own
``registry_uri`` in ``AppArgs.tenants`` reads both from there.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.bidding.book import REGISTRY_NAME as CAMPAIGNS
from models.bidding.book import Campaign, CampaignBook
from store.registry import Registry, RegistryError, load_predictor, resolve, tenant_uri

logger = logging.getLogger(__name__)

PCTR = "pctr"


@dataclass
class TenantBidding:
    """One tenant's campaign book (None: it has none) and pCTR models by version (``None`` key: champion)."""

    tenant: str
    book: CampaignBook | None = None
    pctr: dict[str | None, Any] = field(default_factory=dict)
    pointers: tuple[str | None, str | None, str | None] = (None, None, None)  # campaigns, pctr uri, pctr version

    def campaign(self, campaign_id: str) -> Campaign | None:
        return self.book.get(campaign_id) if self.book is not None else None

    def pctr_for(self, campaign: Campaign) -> Any:
        return self.pctr.get(campaign.config.pctr_version)


Loader = Callable[[str, TenantBidding | None], TenantBidding]


class BidModels:
    """Per-tenant ``TenantBidding``, loaded on first use and refreshed by polling the registry."""

    def __init__(self, registry_uri: str, own_registries: dict[str, str] | None = None, poll_s: float = 5.0,
                 cache_dir: str | None = None, loader: Loader | None = None):
        self.registry_uri = registry_uri
        self.own = dict(own_registries or {})
        self.poll_s = poll_s
        self.cache_dir = cache_dir or tempfile.mkdtemp(prefix="tdm-bid-")
        self.loader = loader or self.load
        self._tenants: dict[str, TenantBidding] = {}
        self._loading: dict[str, asyncio.Future[TenantBidding]] = {}
        self._next_poll = 0.0

    # -- where things are --------------------------------------------------------------
    def _campaigns_uri(self, tenant: str) -> str:
        return self.own.get(tenant) or tenant_uri(self.registry_uri, tenant)

    def _pctr_where(self, tenant: str) -> tuple[str, str | None]:
        if tenant in self.own:
            return self.own[tenant], None
        return resolve(self.registry_uri, PCTR, tenant)

    def pointers(self, tenant: str) -> tuple[str | None, str | None, str | None]:
        uri = self._campaigns_uri(tenant)
        campaigns = Registry(uri).champion(CAMPAIGNS) if _exists(uri) else None
        pctr_uri, _ = self._pctr_where(tenant)
        pctr = Registry(pctr_uri).champion(PCTR) if _exists(pctr_uri) else None
        return campaigns, pctr_uri, pctr

    # -- loading (worker thread) ----------------------------------------------------------
    def load(self, tenant: str, old: TenantBidding | None) -> TenantBidding:
        """The tenant's current book and pCTR models; parts whose pointer did not move are kept from ``old``."""
        from models.bidding.pctr import PctrPredictor

        pointers = self.pointers(tenant)
        out = TenantBidding(tenant, pointers=pointers)
        if old is not None and old.pointers[0] == pointers[0]:
            out.book = old.book
        elif pointers[0] is not None:
            out.book = load_predictor(CampaignBook, self._campaigns_uri(tenant), pointers[0], self.cache_dir)
        versions: set[str | None] = {None}
        if out.book is not None:
            versions |= {c.config.pctr_version for c in out.book.campaigns.values()}
        same_pctr = old is not None and old.pointers[1:] == pointers[1:]
        pctr_uri = pointers[1]
        for version in sorted(versions, key=lambda v: v or ""):
            if same_pctr and old is not None and version in old.pctr:
                out.pctr[version] = old.pctr[version]
                continue
            if pctr_uri is None or (version is None and pointers[2] is None):
                continue
            try:
                out.pctr[version] = load_predictor(PctrPredictor, pctr_uri, version or pointers[2], self.cache_dir)
            except (RegistryError, OSError, ValueError, KeyError) as exc:
                logger.error("tenant %s: pctr model %s does not load: %s", tenant, version or "champion", exc)
        logger.info("tenant %s bidding: campaigns %s, pctr %s", tenant, pointers[0], sorted(
            (v or "champion") + "=" + m.version for v, m in out.pctr.items()))
        return out

    # -- the request path ------------------------------------------------------------------
    async def get(self, tenant: str) -> TenantBidding:
        """The tenant's bidding state (loaded on its first request; never raises: empty on failure)."""
        known = self._tenants.get(tenant)
        if known is not None:
            if time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self.poll_s
                asyncio.ensure_future(self._poll())
            return known
        return await self._reload(tenant, None)

    async def _reload(self, tenant: str, old: TenantBidding | None) -> TenantBidding:
        running = self._loading.get(tenant)
        if running is None:
            running = self._loading[tenant] = asyncio.ensure_future(asyncio.to_thread(self.loader, tenant, old))
        try:
            fresh = await running
        except Exception:  # noqa: BLE001 - keep serving what we had (or nothing: no-bids)
            logger.exception("loading the bidding state of tenant %s failed", tenant)
            fresh = old or TenantBidding(tenant)
            if old is None:
                self._tenants[tenant] = fresh
        else:
            self._tenants[tenant] = fresh
        finally:
            self._loading.pop(tenant, None)
        return fresh

    async def _poll(self) -> None:
        for tenant, current in list(self._tenants.items()):
            try:
                pointers = await asyncio.to_thread(self.pointers, tenant)
            except Exception:  # noqa: BLE001 - a registry hiccup: try again next poll
                logger.exception("polling the registry for tenant %s failed", tenant)
                continue
            if pointers != current.pointers:
                await self._reload(tenant, current)


def _exists(uri: str) -> bool:
    """Whether a registry root may hold anything (a lookup never creates local directories)."""
    from pathlib import Path

    return "://" in uri or Path(uri).expanduser().is_dir()
