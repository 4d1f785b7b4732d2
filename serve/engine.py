"""The request logic behind the deployment: cache reads, the fallback chain, live events.

``Engine`` is plain async Python (no Serve imports), so it is exercised directly
in tests; the deployment only parses requests, resolves the tenant and its
models, and shapes responses. Every Redis failure turns into a fallback reason,
never an exception out of ``score`` / ``recommend`` / ``add_events``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from serve import fallback as fb
from serve.cache import CacheUnavailable, RedisCache
from serve.metrics import NullMetrics
from serve.schemas import (
    AppArgs,
    Event,
    EventsRequest,
    EventsResponse,
    RecItem,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
)
from store import codec, keys

logger = logging.getLogger(__name__)

_MISS = b"\x00miss"  # LRU marker for "this immutable versioned key does not exist"


@dataclass
class ModelBundle:
    """The models one tenant is served with; either may be None (cold start)."""

    tenant: str
    propensity: Any = None  # PropensityPredictor or None (cold start)
    recommender: Any = None  # SessionRecPredictor or None (cold start)
    popular: list[tuple[str, float]] = field(default_factory=list)
    prior: float = 0.0

    @property
    def versions(self) -> dict[str, str | None]:
        return {"propensity": getattr(self.propensity, "version", None),
                "recommender": getattr(self.recommender, "version", None)}


def events_frame(events: list[dict[str, Any]], session_id: str, tenant: str) -> pd.DataFrame:
    """Canonical events (``models.schema``) for one session from JSON-like dicts."""
    frame = pd.DataFrame(events, columns=["event_time", "item_id", "event_type", "price", "category", "user_id"])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["price"] = pd.to_numeric(frame["price"], errors="coerce")
    frame["session_id"] = session_id
    frame["tenant"] = tenant
    return frame


def event_json(event: Event) -> str:
    return codec.encode_event({"event_time": event.event_time.isoformat(), "item_id": event.item_id,
                               "event_type": event.event_type, "price": event.price, "category": event.category,
                               "user_id": event.user_id})


class Engine:
    """Score, recommend and record events for a tenant under a deadline."""

    def __init__(self, args: AppArgs, cache: RedisCache, metrics: Any | None = None):
        self.args = args
        self.cache = cache
        self.metrics = metrics or NullMetrics()
        self._popular_seen: dict[str, list[tuple[str, float]]] = {}
        self._latency: dict[str, fb.LatencyEstimate] = {}

    # -- cache reads --------------------------------------------------------
    async def _read(self, table: str, entity: str, tenant: str, dl: fb.Deadline,
                    session_id: str | None) -> tuple[Any | None, str | None, list[dict[str, Any]], str | None]:
        """(decoded value, namespace version, live session events, failure reason)."""
        ptr_key = keys.pointer_key(table, tenant)
        sess_key = keys.session_key(session_id, tenant) if session_id is not None else None
        value: Any | None = None
        live_raw: list[bytes] = []
        try:
            ns = self.cache.pointer_cached(ptr_key)
            cached = self.cache.lru_get(keys.entity_key(table, ns, entity, tenant)) if ns else None
            if ns is not None and cached is not None:
                if sess_key is not None:
                    _, live_raw = await self.cache.get_and_list([], sess_key, dl.remaining_s())
                value = cached
            else:
                lookup = [keys.entity_key(table, ns, entity, tenant)] if ns else [ptr_key]
                vals, live_raw = await self.cache.get_and_list(lookup, sess_key, dl.remaining_s())
                if ns is None:
                    ns = vals[0].decode() if vals[0] else None
                    self.cache.remember_pointer(ptr_key, ns)
                    vals = (await self.cache.get_many([keys.entity_key(table, ns, entity, tenant)],
                                                      dl.remaining_s())) if ns else [None]
                if ns is not None:
                    value = vals[0] if vals[0] is not None else _MISS
                    self.cache.lru_put(keys.entity_key(table, ns, entity, tenant), value)
        except CacheUnavailable as exc:
            self.metrics.cache_lookup(table, "error")
            return None, None, [], f"redis_{exc.reason}"
        live = [e for e in (codec.decode(r) for r in live_raw) if isinstance(e, dict)]
        if value is None or value == _MISS:
            self.metrics.cache_lookup(table, "miss")
            return None, ns, live, None
        self.metrics.cache_lookup(table, "hit")
        return codec.decode(value), ns, live, None

    async def _popular(self, tenant: str, bundle: ModelBundle, dl: fb.Deadline) -> list[tuple[str, float]]:
        value, _, _, _ = await self._read("popular", keys.POPULAR_ENTITY, tenant, dl, None)
        pairs = codec.as_top_k(value)
        if pairs:
            self._popular_seen[tenant] = pairs
            return pairs
        return self._popular_seen.get(tenant) or bundle.popular

    def _timed(self, name: str, dl: fb.Deadline, func: Any, *args: Any) -> Any:
        """Run a model inline if the deadline can fit it; raises TimeoutError when it cannot."""
        est = self._latency.setdefault(name, fb.LatencyEstimate())
        if not est.fits(dl.remaining_s()):
            raise TimeoutError("deadline")
        start = time.perf_counter()
        try:
            return func(*args)
        finally:
            est.observe((time.perf_counter() - start) * 1000.0)

    # -- endpoints ----------------------------------------------------------
    async def score(self, req: ScoreRequest, tenant: str, bundle: ModelBundle) -> ScoreResponse:
        dl = fb.Deadline(req.deadline_ms or self.args.deadline_ms)
        value, ns, live, redis_reason = await self._read("score", req.session_id, tenant, dl, req.session_id)
        events = live + [json.loads(event_json(e)) for e in req.events]
        has_model = bundle.propensity is not None
        reasons: list[str] = []
        for step in fb.score_steps(bool(events), has_model):
            if step == fb.MODEL:
                try:
                    frame = events_frame(events, req.session_id, tenant)
                    scores = self._timed(f"{tenant}/propensity", dl, bundle.propensity.score_events, frame)
                    score = scores.get(req.session_id)
                    if score is None:
                        reasons.append("no_features")
                        continue
                    return self._score_resp(req, tenant, float(score), fb.MODEL, bundle.versions["propensity"],
                                            reasons)
                except TimeoutError:
                    reasons.append("deadline")
                except Exception:  # noqa: BLE001 - a model failure is a fallback, not a 5xx
                    logger.exception("propensity model failed for tenant %s", tenant)
                    reasons.append("model_error")
            elif step == fb.PRECOMPUTED:
                precomputed = codec.as_score(value)
                if precomputed is not None and ns is not None:
                    return self._score_resp(req, tenant, precomputed, fb.PRECOMPUTED,
                                            keys.model_version_of(ns), reasons)
                reasons.append(redis_reason or "no_precomputed")
            else:
                if not has_model and events:
                    reasons.insert(0, "no_model")
                return self._score_resp(req, tenant, bundle.prior, fb.POPULAR, None, reasons)
        raise AssertionError("the fallback chain always ends with popular")  # pragma: no cover

    def _score_resp(self, req: ScoreRequest, tenant: str, score: float, source: str, version: str | None,
                    reasons: list[str]) -> ScoreResponse:
        reason = reasons[0] if reasons else None
        if reason:
            self.metrics.fallback("score", reason)
        return ScoreResponse(session_id=req.session_id, score=score, source=source,  # type: ignore[arg-type]
                             model_version=version, fallback_reason=reason, tenant=tenant)

    async def recommend(self, req: RecommendRequest, tenant: str, bundle: ModelBundle) -> RecommendResponse:
        dl = fb.Deadline(req.deadline_ms or self.args.deadline_ms)
        value, ns, live, redis_reason = await self._read("recs", req.session_id, tenant, dl, req.session_id)
        prefix = [str(e["item_id"]) for e in live if e.get("item_id")] + list(req.items)
        has_model = bundle.recommender is not None
        reasons: list[str] = []
        for step in fb.recommend_steps(bool(prefix), has_model):
            if step == fb.MODEL:
                try:
                    recs = self._timed(f"{tenant}/recommender", dl, bundle.recommender.recommend, prefix, req.k,
                                       req.exclude_seen)
                    return self._rec_resp(req, tenant, recs, fb.MODEL, bundle.versions["recommender"], reasons)
                except TimeoutError:
                    reasons.append("deadline")
                except Exception:  # noqa: BLE001
                    logger.exception("recommender failed for tenant %s", tenant)
                    reasons.append("model_error")
            elif step == fb.PRECOMPUTED:
                pairs = codec.as_top_k(value)
                if pairs is not None and ns is not None:
                    recs = fb.filter_recs(pairs, prefix, req.k, req.exclude_seen)
                    if recs:
                        return self._rec_resp(req, tenant, recs, fb.PRECOMPUTED, keys.model_version_of(ns),
                                              reasons)
                reasons.append(redis_reason or "no_precomputed")
            else:
                if not has_model and prefix:
                    reasons.insert(0, "no_model")
                popular = await self._popular(tenant, bundle, dl)
                recs = fb.top_popular(popular, prefix, req.k, req.exclude_seen)
                return self._rec_resp(req, tenant, recs, fb.POPULAR, None, reasons)
        raise AssertionError("the fallback chain always ends with popular")  # pragma: no cover

    def _rec_resp(self, req: RecommendRequest, tenant: str, recs: list[tuple[str, float]], source: str,
                  version: str | None, reasons: list[str]) -> RecommendResponse:
        reason = reasons[0] if reasons else None
        if reason:
            self.metrics.fallback("recommend", reason)
        return RecommendResponse(session_id=req.session_id, items=[RecItem(item_id=i, score=s) for i, s in recs],
                                 source=source, model_version=version,  # type: ignore[arg-type]
                                 fallback_reason=reason, tenant=tenant)

    async def add_events(self, req: EventsRequest, tenant: str) -> EventsResponse:
        key = keys.session_key(req.session_id, tenant)
        try:
            length = await self.cache.append_list(key, [event_json(e) for e in req.events],
                                                  self.args.session_ttl_s, self.args.session_max_events)
        except CacheUnavailable as exc:
            self.metrics.fallback("events", f"redis_{exc.reason}")
            return EventsResponse(session_id=req.session_id, accepted=len(req.events), session_length=None,
                                  stored=False, tenant=tenant)
        return EventsResponse(session_id=req.session_id, accepted=len(req.events), session_length=length,
                              stored=True, tenant=tenant)

    async def redis_state(self) -> str:
        """``up``, ``down`` or ``skipped`` (breaker open); never raises."""
        try:
            await self.cache.ping(timeout_s=0.25)
            return "up"
        except CacheUnavailable as exc:
            return "skipped" if exc.reason == "breaker_open" else "down"
