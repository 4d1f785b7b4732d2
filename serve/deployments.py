"""The Serve deployment: a FastAPI ingress that parses, authenticates and delegates.

Tenant models come through Serve model multiplexing (model id ``tenant@generation``)
and are hot-swapped by ``reconfigure``: a new ``user_config`` (see
``serve.schemas.ModelConfig``) loads the new models next to the old ones, then
flips the generation, so requests in flight never see a half-loaded model.
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the handler
# annotations of a class-based Serve ingress at decoration time.
import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from ray import serve

from serve import hotpath
from serve.engine import Engine, ModelBundle
from serve.loader import load_bundle, preload_modules
from serve.metrics import ServeMetrics
from serve.schemas import (
    AppArgs,
    EventsRequest,
    EventsResponse,
    HealthResponse,
    ModelConfig,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
    TenantConfig,
)
from store.online import OnlineStore

logger = logging.getLogger(__name__)

api = FastAPI(title="tandem", version="1", description="Real-time purchase propensity and session "
              "recommendations behind a cache, with fallbacks (model -> precomputed -> popular).")

# The bid-time endpoints skip FastAPI's router on their happy path (serve/hotpath.py); every
# other request, and every error answer, still goes through FastAPI.
api.add_middleware(hotpath.HotPathMiddleware,
                   routes={"/v1/score": hotpath.Route("score", ScoreRequest),
                           "/v1/recommend": hotpath.Route("recommend", RecommendRequest)})

MAX_MULTIPLEXED = 16
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


def tenant_for(api_key: str | None, args: AppArgs) -> str:
    """The tenant an API key belongs to; raises 401 for a missing or unknown key."""
    if api_key is None:
        if args.require_api_key:
            raise HTTPException(status_code=401, detail="missing X-API-Key header",
                                headers={"WWW-Authenticate": "ApiKey"})
        return args.default_tenant
    tenant = args.api_keys.get(api_key)
    if tenant is None:
        raise HTTPException(status_code=401, detail="unknown API key", headers={"WWW-Authenticate": "ApiKey"})
    return tenant


def effective_tenant_config(tenant: str, args: AppArgs, model_cfg: ModelConfig) -> TenantConfig:
    """Pinned versions from the tenant's config, else from ``user_config`` (shared registry only)."""
    own = args.tenants.get(tenant, TenantConfig())
    if own.registry_uri:
        return own
    return TenantConfig(propensity_version=own.propensity_version or model_cfg.propensity_version,
                        recommender_version=own.recommender_version or model_cfg.recommender_version)


@serve.deployment(name="Tandem", max_ongoing_requests=64, max_queued_requests=256)
@serve.ingress(api)
class TandemService:
    """Thin ingress: typed request -> tenant -> models -> ``Engine`` -> typed response."""

    def __init__(self, args: dict[str, Any]):
        route_app_logs()
        self.args = AppArgs.model_validate(args)
        preload_modules()
        self.store = OnlineStore(self.args.redis_url, self.args.cache)
        self.metrics = ServeMetrics()
        self.engine = Engine(self.args, self.store, self.metrics)
        self.model_cfg = ModelConfig()
        self.generation = 0
        self._active: set[str] = {self.args.default_tenant}
        self._warmed = False
        hotpath.bind(self)

    # -- models ---------------------------------------------------------------
    @serve.multiplexed(max_num_models_per_replica=MAX_MULTIPLEXED)  # type: ignore[untyped-decorator]  # Ray's is untyped
    async def tenant_models(self, model_id: str) -> ModelBundle:
        tenant = model_id.rpartition("@")[0]
        cfg = effective_tenant_config(tenant, self.args, self.model_cfg)
        return await asyncio.to_thread(load_bundle, tenant, self.args.registry_uri, cfg,
                                       self.args.model_cache_dir, self.args.popular_k)

    async def models_for(self, tenant: str) -> ModelBundle:
        if not self._warmed:
            self._warmed = True
            await self.store.warm()
        self._active.add(tenant)
        try:
            result: ModelBundle = await self.tenant_models(f"{tenant}@{self.generation}")
            return result
        except Exception:  # noqa: BLE001 - no models means cold start (fallbacks), never a 5xx
            logger.exception("loading models for tenant %s failed; serving fallbacks", tenant)
            self.metrics.fallback("models", "load_error")
            return ModelBundle(tenant=tenant)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Hot swap: load every active tenant's models for the new config, then flip the generation."""
        cfg = ModelConfig.model_validate(user_config or {})
        if cfg == self.model_cfg and self.generation > 0:
            return
        old = self.model_cfg
        self.model_cfg = cfg
        generation = self.generation + 1
        if not self._warmed:
            self._warmed = True
            await self.store.warm()
        try:
            for tenant in sorted(self._active)[: MAX_MULTIPLEXED // 2]:
                await self.tenant_models(f"{tenant}@{generation}")
        except Exception:
            self.model_cfg = old
            logger.exception("hot swap to %s failed; keeping generation %d", cfg, self.generation)
            raise
        self.generation = generation
        logger.info("models swapped to generation %d (%s)", generation, cfg.model_dump())

    def check_health(self) -> None:
        """Healthy while the replica can answer; Redis being down is not a replica failure."""
        if self.engine is None:  # pragma: no cover - defensive
            raise RuntimeError("engine not initialised")
        self.metrics.flush()  # counters summed in process reach Prometheus even when idle

    # -- endpoints --------------------------------------------------------------
    def _observe(self, endpoint: str, start: float) -> None:
        self.metrics.latency(endpoint, (time.perf_counter() - start) * 1000.0, 200)
        self.metrics.breaker(self.store.breaker_code)

    def tenant_of_key(self, api_key: str) -> str | None:
        """The tenant of a known API key, else None (the fast path's auth check)."""
        return self.args.api_keys.get(api_key)

    async def handle(self, endpoint: str, req: Any, tenant: str) -> Any:
        """Score or recommend for an authenticated tenant: the one handler body of both paths."""
        start = time.perf_counter()
        bundle = await self.models_for(tenant)
        out: ScoreResponse | RecommendResponse
        if endpoint == "score":
            out = await self.engine.score(req, tenant, bundle)
        else:
            out = await self.engine.recommend(req, tenant, bundle)
        self._observe(endpoint, start)
        return out

    @api.post("/v1/score", response_model=ScoreResponse)
    async def score(self, req: ScoreRequest, x_api_key: Annotated[str | None, Header()] = None) -> ScoreResponse:
        result: ScoreResponse = await self.handle("score", req, tenant_for(x_api_key, self.args))
        return result

    @api.post("/v1/recommend", response_model=RecommendResponse)
    async def recommend(self, req: RecommendRequest,
                        x_api_key: Annotated[str | None, Header()] = None) -> RecommendResponse:
        result: RecommendResponse = await self.handle("recommend", req, tenant_for(x_api_key, self.args))
        return result

    @api.post("/v1/events", response_model=EventsResponse)
    async def events(self, req: EventsRequest,
                     x_api_key: Annotated[str | None, Header()] = None) -> EventsResponse:
        start = time.perf_counter()
        tenant = tenant_for(x_api_key, self.args)
        out = await self.engine.add_events(req, tenant)
        self._observe("events", start)
        return out

    @api.get("/v1/health", response_model=HealthResponse)
    async def health(self) -> HealthResponse:
        redis_state = await self.engine.redis_state()
        bundle = await self.models_for(self.args.default_tenant)
        models = {**bundle.versions, "generation": str(self.generation)}
        return HealthResponse(status="ok" if redis_state == "up" else "degraded", redis=redis_state,
                              breaker=self.store.breaker_state, models=models)
