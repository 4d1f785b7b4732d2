"""The Serve deployment: binds a replica's models and engine to the HTTP API (``serve.api``).

Tenant models come through Serve model multiplexing (model id ``tenant@generation``)
and are hot-swapped by ``reconfigure``: a new ``user_config`` (see
``serve.schemas.ModelConfig``) loads the new models next to the old ones, then
flips the generation, so requests in flight never see a half-loaded model.
"""

# No ``from __future__ import annotations`` here: Serve inspects the class at decoration time.
import asyncio
import json
import logging
import time
from typing import Any, Literal

from ray import serve

from serve import api as http
from serve.bid import BidEngine, redis_stores
from serve.bid import answer as bid_answer
from serve.bid_models import BidModels
from serve.bid_schemas import BidResponse, NoticeResponse
from serve.engine import Engine, ModelBundle
from serve.experiments import Experiments
from serve.exposures import ExposureLog
from serve.guard import Gate
from serve.loader import clean_model_cache, load_bundle, load_pinned, pinned_registries, preload_modules
from serve.metrics import ServeMetrics
from serve.schemas import (
    AppArgs,
    EventsResponse,
    HealthResponse,
    ModelConfig,
    RecommendResponse,
    ScoreResponse,
    TenantConfig,
)
from store import keys
from store.online import OnlineStore, StoreUnavailable

logger = logging.getLogger(__name__)

MAX_MULTIPLEXED = 16
HOT_RECHECK_S = 1.0
APP_LOGGERS = ("serve", "models")


def route_app_logs(names: tuple[str, ...] = APP_LOGGERS) -> None:
    """Send tandem's module loggers through this replica's Serve log handlers.

    Serve's ``logging_config`` (JSON encoding, level, replica log file) configures only
    the ``ray.serve`` logger; without this, ``serve.*`` and ``models.*`` records would go
    to the worker's stderr in plain text and miss the replica's JSON log.
    """
    serve_logger = logging.getLogger("ray.serve")
    if not serve_logger.handlers:
        return
    for name in names:
        app_logger = logging.getLogger(name)
        app_logger.handlers = list(serve_logger.handlers)
        app_logger.setLevel(serve_logger.level or logging.INFO)
        app_logger.propagate = False


def gate_of(args: AppArgs) -> Gate:
    return Gate(api_keys=dict(args.api_keys), require_api_key=args.require_api_key,
                default_tenant=args.default_tenant, max_body_bytes=args.max_body_bytes, docs=args.docs)


def _replica_identity() -> tuple[str | None, str]:
    """(replica id, app name) inside a Serve replica; (None, "tandem") elsewhere (tests)."""
    try:
        ctx = serve.get_replica_context()
        return ctx.replica_id.unique_id, ctx.app_name
    except Exception:  # noqa: BLE001 - outside a replica
        return None, "tandem"


def effective_tenant_config(tenant: str, args: AppArgs, model_cfg: ModelConfig) -> TenantConfig:
    """Pinned versions from the tenant's config, else from ``user_config`` (shared registry only)."""
    own = args.tenants.get(tenant, TenantConfig())
    if own.registry_uri:
        return own
    return TenantConfig(propensity_version=own.propensity_version or model_cfg.propensity_version,
                        recommender_version=own.recommender_version or model_cfg.recommender_version)


@serve.deployment(name="Tandem", max_ongoing_requests=16, max_queued_requests=32)
@serve.ingress(http.api)
class TandemService:
    """Thin: tenant -> models -> ``Engine`` -> typed response (routes: ``serve.api``)."""

    def __init__(self, args: dict[str, Any]):
        route_app_logs()
        self.args = AppArgs.model_validate(args)
        self.gate = gate_of(self.args)
        preload_modules()
        clean_model_cache(self.args.model_cache_dir)
        self.store = OnlineStore(self.args.redis_url, self.args.cache)
        self.metrics = ServeMetrics()
        self.engine = Engine(self.args, self.store, self.metrics)
        self.bids = BidEngine(self.args.bid, redis_stores(self.args.redis_url, self.args.bid),
                              default_deadline_ms=self.args.deadline_ms, metrics=self.metrics)
        self.bid_models = BidModels(self.args.registry_uri, {t: c.registry_uri for t, c in self.args.tenants.items()
                                                             if c.registry_uri}, self.args.bid.campaign_poll_s,
                                    self.args.model_cache_dir)
        self.model_cfg = ModelConfig()
        self.generation = 0
        self._configs: dict[int, ModelConfig] = {0: self.model_cfg}   # generation -> the config it loads
        self._strict: set[str] = set()   # model ids a swap loads: their failures fail the swap
        self.swap_error: str | None = None
        self._active: set[str] = {self.args.default_tenant}
        self._hot: dict[str, tuple[str, ModelBundle, float]] = {}  # tenant -> (model id, bundle, recheck at)
        self._warmed = False
        self.experiments = Experiments(self.args.registry_uri, self._load_pinned, self.args.experiments_poll_s,
                                       registry_for=self._registries)
        self.exposures = ExposureLog(self.args.redis_url, self.args.exposures)
        self.replica_id, self.app_name = _replica_identity()
        self._serving: dict[str, Any] = {}  # what this replica serves, reported to Redis for the refresh loop
        http.bind(self)

    def _registries(self, tenant: str) -> list[str]:
        own = self.args.tenants.get(tenant)
        return pinned_registries(tenant, self.args.registry_uri, own.registry_uri if own else None)

    def _load_pinned(self, tenant: str, name: str, version: str) -> Any:
        return load_pinned(tenant, self._registries(tenant), name, version, self.args.model_cache_dir)

    async def _start_experiments(self) -> None:
        """Read the experiments once before the first request, then keep re-reading them in the background."""
        if self.experiments.last_poll == 0.0:
            try:
                await self.experiments.refresh()
            except Exception:  # noqa: BLE001 - the poller retries; serving never waits on the store
                logger.exception("first read of the experiment store failed")
        self.experiments.start()

    # -- models ---------------------------------------------------------------
    @serve.multiplexed(max_num_models_per_replica=MAX_MULTIPLEXED)  # type: ignore[untyped-decorator]  # Ray's is untyped
    async def tenant_models(self, model_id: str) -> ModelBundle:
        tenant, _, generation = model_id.rpartition("@")
        cfg = effective_tenant_config(tenant, self.args, self._configs.get(int(generation), self.model_cfg))
        return await asyncio.to_thread(load_bundle, tenant, self.args.registry_uri, cfg,
                                       self.args.model_cache_dir, self.args.popular_k,
                                       model_id in self._strict)

    async def models_for(self, tenant: str) -> ModelBundle:
        """The tenant's models for the current generation. Serve's multiplexed lookup (a metric and
        an LRU touch, ~20 µs) is asked at most every ``HOT_RECHECK_S`` per tenant; in between the
        bundle it returned is reused, so a model the LRU unloads is dropped here within that time."""
        model_id = f"{tenant}@{self.generation}"
        now = time.monotonic()
        hot = self._hot.get(tenant)
        if hot is not None and hot[0] == model_id and now < hot[2]:
            return hot[1]
        if not self._warmed:
            self._warmed = True
            await self.store.warm()
        self._active.add(tenant)
        try:
            result: ModelBundle = await self.tenant_models(model_id)
            if len(self._hot) >= MAX_MULTIPLEXED and tenant not in self._hot:
                self._hot.clear()
            self._hot[tenant] = (model_id, result, now + HOT_RECHECK_S)
            return result
        except Exception:  # noqa: BLE001 - no models means cold start (fallbacks), never a 5xx
            logger.exception("loading models for tenant %s failed; serving fallbacks", tenant)
            self.metrics.fallback("models", "load_error")
            return ModelBundle(tenant=tenant)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Hot swap: load every active tenant's models for the new config, then flip the generation.

        A model the new config names that does not load (a bad pinned version, a broken
        artifact) fails the whole swap: the replica keeps serving the generation it had, and
        says so in ``/v1/health`` (``swap_error``) and in ``tandem_model_swap_failed``. Serve
        is not told (the replica stays up and keeps its models). With no generation yet (a
        replica's first config) there is nothing to keep: it starts cold, with the error shown."""
        cfg = ModelConfig.model_validate(user_config or {})
        await self._start_experiments()
        if cfg == self.model_cfg and self.generation > 0:
            return
        generation = self.generation + 1
        if not self._warmed:
            self._warmed = True
            await self.store.warm()
        self._configs[generation] = cfg
        ids = [f"{tenant}@{generation}" for tenant in sorted(self._active)[: MAX_MULTIPLEXED // 2]]
        self._strict.update(ids)
        try:
            for model_id in ids:
                await self.tenant_models(model_id)
        except Exception as exc:  # noqa: BLE001 - reported in health and a metric, old models kept
            self._configs.pop(generation, None)
            self.swap_error = f"swap to {cfg.model_dump()} failed: {type(exc).__name__}: {exc}"[:500]
            self.metrics.model_swap(ok=False)
            if self.generation > 0:
                logger.exception("hot swap failed; keeping generation %d", self.generation)
                return
            logger.exception("the first models failed to load; serving fallbacks")
            self.model_cfg, self.generation = cfg, generation
            self._configs[generation] = cfg
            return
        finally:
            self._strict.difference_update(ids)
        self.model_cfg, self.generation, self.swap_error = cfg, generation, None
        for old in [g for g in self._configs if g < generation - 1]:
            self._configs.pop(old, None)
        self.metrics.model_swap(ok=True)
        logger.info("models swapped to generation %d (%s)", generation, cfg.model_dump())
        bundle = await self.tenant_models(f"{self.args.default_tenant}@{generation}")
        self._serving = {"generation": cfg.generation, "versions": bundle.versions, "replica": self.replica_id}
        await self._report()

    async def _report(self) -> None:
        """Tell the refresh loop what this replica serves (``store.keys.replica_key``, 30 s TTL)."""
        if not self._serving or not self.replica_id:
            return
        try:
            await self.store.set_many({keys.replica_key(self.app_name, self.replica_id):
                                       json.dumps({**self._serving, "at": time.time()})}, ttl_s=30, timeout_s=0.25)
        except StoreUnavailable:
            pass  # Redis down: the loop's verification waits, serving goes on

    async def check_health(self) -> None:
        """Healthy while the replica can answer; Redis being down is not a replica failure.

        Each check also refreshes this replica's report to the refresh loop and the
        ``tandem_pointer_missing`` gauge of its active tenants."""
        if self.engine is None:  # pragma: no cover - defensive
            raise RuntimeError("engine not initialised")
        self.metrics.flush()  # counters summed in process reach Prometheus even when idle
        ex = self.exposures
        self.metrics.exposures(ex.written, ex.dropped, ex.buffered, ex.write_errors)
        for tenant, live in self.experiments.live.items():
            self.metrics.experiment(tenant, live.experiment, not live.running)
        await self._report()
        for tenant in sorted(self._active)[: MAX_MULTIPLEXED // 2]:
            for table, state in (await self.engine.pointer_states(tenant)).items():
                if state != "unknown":
                    self.metrics.pointer_missing(table, tenant, state != "ok")

    # -- what serve.api calls ----------------------------------------------------
    async def handle(self, endpoint: str, req: Any, tenant: str) -> Any:
        """Score, recommend or record events for an authenticated tenant (both paths)."""
        start = time.perf_counter()
        out: ScoreResponse | RecommendResponse | EventsResponse | BidResponse | NoticeResponse
        if endpoint in ("bid", "notice"):
            out = await bid_answer(self.bids, self.bid_models, endpoint, req, tenant)
        elif endpoint == "events":
            out = await self.engine.add_events(req, tenant)
        else:
            bundle = await self.models_for(tenant)
            exp = self.experiments.assign(tenant, req.session_id, req.visitor_id)
            if exp is not None and exp.arm.pins:
                bundle = self.experiments.variant_bundle(bundle, tenant, exp)
            if endpoint == "score":
                out = await self.engine.score(req, tenant, bundle, exp)
            else:
                out = await self.engine.recommend(req, tenant, bundle, exp)
                if exp is not None and exp.log and out.items:
                    self.exposures.record(tenant, exp.experiment, exp.variant, req.session_id, req.visitor_id,
                                          tuple(i.item_id for i in out.items), out.model_version, out.source,
                                          endpoint)
        self.metrics.latency(endpoint, (time.perf_counter() - start) * 1000.0, 200)
        self.metrics.breaker(self.store.breaker_code)
        return out

    async def __del__(self) -> None:
        """Serve calls this when it stops the replica: write the buffered exposures first."""
        await self.exposures.close()

    async def health(self, detailed: bool, tenant: str | None = None) -> HealthResponse:
        redis_state = await self.engine.redis_state()
        status: Literal["ok", "degraded"] = "ok" if redis_state == "up" else "degraded"
        if not detailed:
            return HealthResponse(status=status)
        tenant = tenant or self.args.default_tenant
        bundle = await self.models_for(tenant)
        models = {**bundle.versions, "generation": str(self.generation)}
        pointers = await self.engine.pointer_states(tenant)
        if any(state in ("missing", "expired") for state in pointers.values()):
            status = "degraded"  # served by fallbacks until the refresh loop republishes it
        return HealthResponse(status=status, redis=redis_state, breaker=self.store.breaker_state, models=models,
                              swap_error=self.swap_error, experiment=self.experiments.health(tenant),
                              exposures=self.exposures.state(), pointers=pointers, replica=self.replica_id)
