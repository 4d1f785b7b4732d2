"""The bid engine behind ``POST /v1/bid`` and ``POST /v1/bid/notice``: plain async Python, no Serve.

Per request (``BidEngine.bid``):

1. the campaign from the tenant's published ``CampaignBook`` (unknown: no-bid), its current
   pacing period (none: no-bid), the pCTR (given, or the tenant's ``pctr`` model on the features:
   the campaign's pinned version, else the tenant's champion, else the shared default's; when no
   model answers in time the campaign's ``pctr_prior`` if it has one, else a no-bid);
2. the period's budget state from this replica's cache, refreshed from Redis every
   ``refresh_ms`` in the background (one ``observe`` round trip per live campaign, which also
   adds the requests this replica saw to the period's counter); a stale value is fine because
   the cap is enforced by the hold in step 4;
3. the strategy's price (``models.bidding.campaign.decide``): no-bid under the floor;
4. one Lua round trip, ``reserve(bid_id, price, partial=True)`` (``store.budget``): the amount is
   held against the budget atomically across replicas, or cut to what is left, or refused;
5. the answer, only while the deadline holds: a bid ready after it becomes a no-bid and its
   hold is released. Every fault (Redis down, slow or refusing, an open breaker, a model
   error) is a no-bid with its reason, never an error and never a late bid.

Redis calls run as tasks that are never cancelled: a call that outlives the request's deadline
still finishes, tells the breaker whether Redis works (a request's own deadline never counts
as a Redis failure) and releases a hold nobody will use.

Notices (``BidEngine.notice``): win/loss per bid id through ``store.budget`` in one pipeline;
they are idempotent, so a batch that cannot be stored raises ``NoticesNotStored`` (503: retry).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.bidding.book import Campaign
from models.bidding.campaign import CampaignConfig, Period, decide, period_at
from models.bidding.strategies import AuctionState
from serve.bid_models import BidModels
from serve.bid_schemas import (
    BidRequest,
    BidResponse,
    BidSettings,
    NoticeRequest,
    NoticeResponse,
    NoticeResult,
)
from serve.fallback import Deadline, LatencyEstimate
from serve.metrics import NullMetrics
from store.breaker import CLOSED, CircuitBreaker

logger = logging.getLogger(__name__)


class BudgetClient(Protocol):
    """``store.budget.AsyncBudgetStore`` for one tenant and hold time (a fake in unit tests)."""

    async def reserve(self, campaign: str, bid_id: str, amount: int, partial: bool = False) -> Any: ...

    async def win(self, campaign: str, bid_id: str, price: int) -> str: ...

    async def lose(self, campaign: str, bid_id: str) -> str: ...

    async def observe(self, campaign: str, seen: int, budget: int, expire_at_ms: int) -> Any: ...

    async def notices(self, items: list[tuple[str, str, int | None]]) -> list[Any]: ...


class CtrScorer(Protocol):
    @property
    def version(self) -> str: ...

    def predict_one(self, features: dict[str, str | float | None]) -> float: ...


NOTICE_HOLD_MS = 1000  # the hold time of the client notices go through (win/lose ignore it)
StoreFactory = Callable[[str, int], BudgetClient]  # (tenant, hold_ms) -> client


class Unavailable(Exception):
    """A budget call did not answer in time or failed; ``reason`` is the no-bid reason's detail."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NoticesNotStored(RuntimeError):
    """Notices could not be stored for certain: answer 503 with Retry-After (they are idempotent)."""

    retry_after_s = 1


@dataclass(slots=True)
class _Live:
    """This replica's view of one campaign period's budget."""

    tenant: str
    key: str
    cfg: CampaignConfig
    expire_at_ms: int
    state: Any = None  # store.budget.BudgetState once fetched
    pending_seen: int = 0
    last_used: float = 0.0
    task: asyncio.Future[Any] | None = None  # the observe call in flight


@dataclass
class BidEngine:
    """Bids and notices for authenticated tenants; ``clock`` is wall time (periods), ``perf`` for deadlines."""

    settings: BidSettings
    stores: StoreFactory
    default_deadline_ms: float = 10.0
    metrics: Any = field(default_factory=NullMetrics)
    clock: Callable[[], float] = time.time
    perf: Callable[[], float] = time.perf_counter
    background: bool = True  # refresh in a background task (tests call ``refresh`` themselves)
    breaker: CircuitBreaker = field(init=False)
    _live: dict[tuple[str, str], _Live] = field(init=False, default_factory=dict)
    _clients: dict[tuple[str, int], BudgetClient] = field(init=False, default_factory=dict)
    _model_latency: dict[str, LatencyEstimate] = field(init=False, default_factory=dict)
    _refresher: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_reset_s)

    # -- Redis calls ------------------------------------------------------------------
    def _client(self, tenant: str, hold_ms: int) -> BudgetClient:
        client = self._clients.get((tenant, hold_ms))
        if client is None:
            client = self._clients[(tenant, hold_ms)] = self.stores(tenant, hold_ms)
        return client

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run a budget call as a task the breaker hears the outcome of, whoever waits for it."""
        probe = self.breaker.state != CLOSED
        if not self.breaker.allow():
            if asyncio.iscoroutine(coro):
                coro.close()
            raise Unavailable("breaker_open")
        task = asyncio.ensure_future(coro)
        task.add_done_callback(lambda t: self._account(t, probe))
        return task

    def _account(self, task: asyncio.Future[Any], probe: bool) -> None:
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or (exc is not None and _pool_exhausted(exc)):
            if probe:
                self.breaker.release()
        elif exc is None:
            self.breaker.record_success()
        else:
            self.breaker.record_failure()
            logger.debug("budget call failed: %s: %s", type(exc).__name__, exc)

    async def _wait(self, task: asyncio.Future[Any], timeout_s: float) -> Any:
        """The task's result within ``timeout_s``; it keeps running after a timeout (never cancelled)."""
        if timeout_s <= 0:
            raise Unavailable("deadline")
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            raise Unavailable("deadline")
        exc = task.exception()
        if exc is not None:
            raise Unavailable("timeout" if isinstance(exc, TimeoutError) else "error") from exc
        return task.result()

    # -- budget state -------------------------------------------------------------------
    def _entry(self, tenant: str, cfg: CampaignConfig, period: Period) -> _Live:
        key = period.budget_key(cfg.campaign_id)
        live = self._live.get((tenant, key))
        if live is None or live.cfg is not cfg:
            expire = int((period.end_s + self.settings.retention_s) * 1000)
            old = live
            live = self._live[(tenant, key)] = _Live(tenant, key, cfg, expire)
            if old is not None:  # a new campaign book: keep what this replica knew
                live.state, live.pending_seen = old.state, old.pending_seen
        return live

    def _observe(self, live: _Live) -> asyncio.Future[Any]:
        """One ``observe`` of ``live`` (the one in flight, if any): flushes the requests seen."""
        if live.task is not None and not live.task.done():
            return live.task
        flushed = live.pending_seen
        client = self._client(live.tenant, live.cfg.hold_ms)
        task = live.task = self._spawn(client.observe(live.key, flushed, live.cfg.budget, live.expire_at_ms))

        def settle(t: asyncio.Future[Any]) -> None:
            if not t.cancelled() and t.exception() is None:
                live.state = t.result()
                live.pending_seen -= flushed

        task.add_done_callback(settle)
        return task

    async def refresh(self) -> None:
        """One refresh round: every campaign period bid on lately, one ``observe`` each."""
        now = self.perf()
        tasks = []
        for k, live in list(self._live.items()):
            if now - live.last_used > self.settings.idle_s and live.pending_seen == 0:
                del self._live[k]
                continue
            if live.task is not None and not live.task.done():
                continue
            try:
                tasks.append(self._observe(live))
            except Unavailable:
                break
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.call_timeout_s * 2)

    def start(self) -> None:
        """Start the background refresh in the running loop (idempotent)."""
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        interval = self.settings.refresh_ms / 1000.0
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                logger.exception("budget refresh failed")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    # -- /v1/bid -----------------------------------------------------------------------
    def deadline(self, req: BidRequest) -> Deadline:
        return Deadline(req.deadline_ms or self.default_deadline_ms, clock=self.perf)

    async def bid(self, req: BidRequest, tenant: str, campaign: Campaign | None, campaign_version: str | None,
                  pctr_model: CtrScorer | None, dl: Deadline | None = None) -> BidResponse:
        """The answer to one bid request (``dl``: the request's deadline, if it started earlier)."""
        dl = dl or self.deadline(req)
        out = BidResponse(bid_id=req.bid_id, campaign_id=req.campaign_id, bid=False, price=0,
                          campaign_version=campaign_version, tenant=tenant)
        if dl.expired():
            return self._no_bid(out, "deadline")
        if campaign is None:
            return self._no_bid(out, "unknown_campaign")
        cfg = campaign.config
        out.strategy = campaign.strategy.name
        period = period_at(cfg, self.clock())
        if period is None:
            return self._no_bid(out, "campaign_inactive")
        out.period = period.index
        if req.pctr is not None:
            out.pctr, out.pctr_source = req.pctr, "request"
        else:
            pctr, why = (None, "no_pctr_model") if pctr_model is None else \
                self._predict(pctr_model, req.features or {}, dl)
            if pctr is not None:
                assert pctr_model is not None
                out.pctr, out.pctr_source, out.model_version = pctr, "model", pctr_model.version
            else:
                if cfg.pctr_prior is None or dl.expired():
                    return self._no_bid(out, why)
                out.pctr, out.pctr_source, out.fallback_reason = cfg.pctr_prior, "prior", why
                self.metrics.fallback("pctr", why)
        if self.background:
            self.start()
        live = self._entry(tenant, cfg, period)
        live.last_used = self.perf()
        live.pending_seen += 1
        if live.state is None:  # this replica's first request in this period: fetch it now
            try:
                await self._wait(self._observe(live), dl.remaining_s())
            except Unavailable as exc:
                return self._no_bid(out, "deadline" if exc.reason == "deadline" else "budget_unavailable")
        state = live.state
        n_left = max(1, cfg.auctions_per_period - state.seen - live.pending_seen + 1)
        auction = AuctionState(n_left, float(max(state.budget - state.spent - state.reserved, 0)),
                               cfg.auctions_per_period, float(state.budget))
        decision = decide(campaign.strategy, out.pctr, auction, req.floor, cfg.max_bid)
        if decision.reason is not None:
            return self._no_bid(out, decision.reason)
        client = self._client(tenant, cfg.hold_ms)
        try:
            task = self._spawn(client.reserve(live.key, req.bid_id, decision.price, partial=True))
        except Unavailable:
            return self._no_bid(out, "budget_unavailable")
        try:
            held = await self._wait(task, dl.remaining_s())
        except Unavailable as exc:
            task.add_done_callback(lambda t: self._release_if_held(t, client, live.key, req.bid_id))
            return self._no_bid(out, "deadline" if exc.reason == "deadline" else "budget_unavailable")
        if held.status == "duplicate":
            if held.previous_state != "held":
                return self._no_bid(out, "duplicate_bid")
        elif held.status != "held":
            return self._no_bid(out, "budget_exhausted")
        if held.amount < max(req.floor, 1):
            self._release(client, live.key, req.bid_id)
            return self._no_bid(out, "below_floor")
        if dl.expired():
            self._release(client, live.key, req.bid_id)
            return self._no_bid(out, "deadline")
        out.bid, out.price = True, int(held.amount)
        return out

    def _predict(self, model: CtrScorer, features: dict[str, str | float | None], dl: Deadline
                 ) -> tuple[float | None, str]:
        """``(pCTR, "")``, or ``(None, why)``: ``deadline`` (it would not fit, or did not) or ``pctr_error``."""
        est = self._model_latency.setdefault(model.version, LatencyEstimate())
        if not est.fits(dl.remaining_s()):
            return None, "deadline"
        start = self.perf()
        try:
            p = float(model.predict_one(features))
        except Exception:  # noqa: BLE001 - a model failure is a fallback or a no-bid, never a 5xx
            logger.exception("pctr model %s failed", model.version)
            return None, "pctr_error"
        finally:
            est.observe((self.perf() - start) * 1000.0)
        if dl.expired():
            return None, "deadline"
        return (p, "") if math.isfinite(p) and 0.0 <= p <= 1.0 else (None, "pctr_error")

    def error_no_bid(self, req: BidRequest, tenant: str) -> BidResponse:
        """The answer when the bid path itself failed: no-bid, reason ``error`` (a hold it may have
        left is released by the store after the campaign's ``hold_ms``)."""
        out = BidResponse(bid_id=req.bid_id, campaign_id=req.campaign_id, bid=False, price=0, tenant=tenant)
        return self._no_bid(out, "error")

    def _no_bid(self, out: BidResponse, reason: str) -> BidResponse:
        out.bid, out.price, out.reason = False, 0, reason  # type: ignore[assignment]
        self.metrics.fallback("bid", reason)
        return out

    def _release(self, client: BudgetClient, key: str, bid_id: str) -> None:
        try:
            self._spawn(client.lose(key, bid_id))
        except Unavailable:
            logger.debug("breaker open: hold of %s expires by itself", bid_id)

    def _release_if_held(self, task: asyncio.Future[Any], client: BudgetClient, key: str, bid_id: str) -> None:
        if not task.cancelled() and task.exception() is None and task.result().status == "held":
            self._release(client, key, bid_id)

    # -- /v1/bid/notice -------------------------------------------------------------------
    async def notice(self, req: NoticeRequest, tenant: str, campaigns: Callable[[str], Campaign | None]
                     ) -> NoticeResponse:
        now = self.clock()
        items: list[tuple[str, str, int | None]] = []
        results: list[NoticeResult] = []
        for n in req.notices:
            campaign = campaigns(n.campaign_id)
            if campaign is None:
                results.append(NoticeResult(bid_id=n.bid_id, status="unknown_campaign"))
                continue
            cfg = campaign.config
            index = n.period if n.period is not None else _period_index(cfg, now)
            items.append((f"{cfg.campaign_id}.{index}", n.bid_id, n.price if n.outcome == "win" else None))
            results.append(NoticeResult(bid_id=n.bid_id, status="won"))
        if items:
            try:  # win/lose do not depend on the hold time: any client of the tenant will do
                task = self._spawn(self._client(tenant, NOTICE_HOLD_MS).notices(items))
            except Unavailable as exc:
                raise NoticesNotStored("the budget store is unavailable (breaker open); retry") from exc
            try:
                statuses = iter(await self._wait(task, self.settings.notice_timeout_s))
            except Unavailable as exc:
                raise NoticesNotStored(f"the budget store did not answer ({exc.reason}); retry") from exc
            for r in results:
                if r.status != "unknown_campaign":
                    r.status = next(statuses)
        return NoticeResponse(results=results, tenant=tenant)


def _period_index(cfg: CampaignConfig, now_s: float) -> int:
    """The period of a notice that does not say: the current one (the last one once the campaign ended)."""
    if cfg.end is not None:
        now_s = min(now_s, cfg.end.timestamp() - 1e-3)
    return max(0, int((now_s - cfg.start.timestamp()) // cfg.period_s))


def _pool_exhausted(exc: BaseException) -> bool:
    """redis-py's BlockingConnectionPool had no free connection in time: this replica is busy, not Redis."""
    return type(exc).__name__ == "ConnectionError" and "No connection available" in str(exc)


def redis_stores(url: str, settings: BidSettings) -> StoreFactory:
    """A factory of ``AsyncBudgetStore`` clients sharing one bounded, blocking pool (created lazily)."""
    from store.budget import AsyncBudgetStore

    holder: dict[str, Any] = {}

    def make(tenant: str, hold_ms: int) -> BudgetClient:
        if "client" not in holder:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=settings.max_connections, timeout=settings.pool_timeout_s,
                socket_timeout=settings.call_timeout_s, socket_connect_timeout=settings.connect_timeout_s,
                retry=Retry(NoBackoff(), 0), health_check_interval=0)
            holder["client"] = aioredis.Redis(connection_pool=pool)
        return AsyncBudgetStore(holder["client"], tenant=tenant, hold_ms=hold_ms,
                                record_ttl_s=settings.record_ttl_s)

    return make


async def answer(engine: BidEngine, models: BidModels, endpoint: str, req: BidRequest | NoticeRequest,
                 tenant: str) -> BidResponse | NoticeResponse:
    """``/v1/bid`` or ``/v1/bid/notice`` for an authenticated tenant (the deployment's one call)."""
    if endpoint == "notice":
        assert isinstance(req, NoticeRequest)
        bidding = await models.get(tenant)
        return await engine.notice(req, tenant, bidding.campaign)
    assert isinstance(req, BidRequest)
    dl = engine.deadline(req)  # loading a tenant's campaigns (its first request) counts against it
    try:
        bidding = await models.get(tenant)
        campaign = bidding.campaign(req.campaign_id)
        pctr = bidding.pctr_for(campaign) if campaign is not None and req.features is not None else None
        version = bidding.book.version if bidding.book is not None else None
        return await engine.bid(req, tenant, campaign, version, pctr, dl)
    except Exception:  # noqa: BLE001 - a bug or fault the engine did not foresee is a no-bid, never a 5xx
        logger.exception("bid %s of tenant %s failed", req.bid_id, tenant)
        return engine.error_no_bid(req, tenant)
