"""The request logic behind the deployment: store reads, the fallback chain, live events.

``Engine`` is plain async Python (no Serve imports), so it is exercised directly
in tests; the deployment only parses requests, resolves the tenant and its
models, and shapes responses. Every Redis failure turns into a fallback reason,
never an exception out of ``score`` / ``recommend``.

Live events are never lost silently (``add_events``). A batch is either stored, in one
atomic Redis script, in both the session's list (what the next score/recommend reads)
and the tenant's event stream (``tandem:{tenant}:events``, capped at ``events_stream_max_len``
entries, what batch features read), or not at all, and then the request fails with
``EventsNotStored``, which the API answers 503 + ``Retry-After``: the client keeps the batch
and sends it again. There is no buffer in the replica: a replica that dies holds nothing
that was acknowledged. A retry of a batch whose first attempt did land (the answer was
lost) would store it twice; a ``batch_id`` makes it idempotent (remembered for
``events_batch_ttl_s``). Writes have their own connections, breaker and ``write_timeout_s`` (250 ms),
not the read path's 20 ms: a slow write is better than a retry. Durability across a Redis
restart is Redis's (AOF); an acknowledged batch is in Redis.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from models.contracts import PropensityScorer, Recommender
from serve import fallback as fb
from serve.experiments import Assignment
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
from store.online import OnlineStore, Row, StoreUnavailable

logger = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """The models one tenant is served with; either may be None (cold start)."""

    tenant: str
    propensity: PropensityScorer | None = None  # None: cold start
    recommender: Recommender | None = None  # None: cold start (popularity)
    popular: list[tuple[str, float]] = field(default_factory=list)
    prior: float = 0.0

    @property
    def versions(self) -> dict[str, str | None]:
        return {"propensity": self.propensity.version if self.propensity is not None else None,
                "recommender": self.recommender.version if self.recommender is not None else None}


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


class EventsNotStored(Exception):
    """A batch of events could not be stored: the client must send it again after ``retry_after_s``."""

    def __init__(self, reason: str, retry_after_s: int = 1):
        super().__init__(f"events not stored ({reason}); retry after {retry_after_s} s")
        self.reason = reason
        self.retry_after_s = retry_after_s


class Engine:
    """Score, recommend and record events for a tenant under a deadline."""

    def __init__(self, args: AppArgs, store: OnlineStore, metrics: Any | None = None):
        self.args = args
        self.store = store
        self.metrics = metrics or NullMetrics()
        self._popular_seen: dict[str, list[tuple[str, float]]] = {}
        self._latency: dict[str, fb.LatencyEstimate] = {}

    # -- store reads --------------------------------------------------------
    async def _read(self, table: str, entity: str, tenant: str, dl: fb.Deadline, session_id: str | None) -> Row:
        row = await self.store.get_row(table, tenant, entity, session_id, dl.remaining_s())
        self.metrics.cache_lookup(table, row.lookup)
        return row

    async def _popular(self, tenant: str, bundle: ModelBundle, dl: fb.Deadline) -> list[tuple[str, float]]:
        row = await self._read("popular", keys.POPULAR_ENTITY, tenant, dl, None)
        pairs = codec.as_top_k(row.value)
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
    async def score(self, req: ScoreRequest, tenant: str, bundle: ModelBundle,
                    exp: Assignment | None = None) -> ScoreResponse:
        dl = fb.Deadline(req.deadline_ms or self.args.deadline_ms)
        row = await self._read("score", req.session_id, tenant, dl, req.session_id)
        events = row.events + [json.loads(event_json(e)) for e in req.events]
        scorer = bundle.propensity
        has_model = scorer is not None
        reasons: list[str] = []
        steps = fb.score_steps(bool(events), has_model)
        if exp is not None:
            steps = fb.policy_steps(steps, exp.arm.policy, exp.arm.skips_precomputed("propensity"))
        for step in steps:
            if step == fb.MODEL and scorer is not None:  # the chain offers MODEL only with a model
                try:
                    frame = events_frame(events, req.session_id, tenant)
                    scores = self._timed(f"{tenant}/propensity", dl, scorer.score_events, frame)
                    score = scores.get(req.session_id)
                    if score is None:
                        reasons.append("no_features")
                        continue
                    return self._score_resp(req, tenant, float(score), fb.MODEL, bundle.versions["propensity"],
                                            reasons, exp)
                except TimeoutError:
                    reasons.append("deadline")
                except Exception:  # noqa: BLE001 - a model failure is a fallback, not a 5xx
                    logger.exception("propensity model failed for tenant %s", tenant)
                    reasons.append("model_error")
            elif step == fb.PRECOMPUTED:
                precomputed = codec.as_score(row.value)
                if precomputed is not None and row.version is not None:
                    return self._score_resp(req, tenant, precomputed, fb.PRECOMPUTED,
                                            keys.model_version_of(row.version), reasons, exp)
                reasons.append(row.error or "no_precomputed")
            else:
                if not has_model and events and steps != [fb.POPULAR]:
                    reasons.insert(0, "no_model")
                return self._score_resp(req, tenant, bundle.prior, fb.POPULAR, None, reasons, exp)
        raise AssertionError("the fallback chain always ends with popular")  # pragma: no cover

    def _score_resp(self, req: ScoreRequest, tenant: str, score: float, source: str, version: str | None,
                    reasons: list[str], exp: Assignment | None) -> ScoreResponse:
        reason = reasons[0] if reasons else None
        if reason:
            self.metrics.fallback("score", reason)
        return ScoreResponse(session_id=req.session_id, score=score, source=source,
                             model_version=version, fallback_reason=reason, tenant=tenant,
                             experiment=exp.experiment if exp else None, variant=exp.variant if exp else None)

    async def recommend(self, req: RecommendRequest, tenant: str, bundle: ModelBundle,
                        exp: Assignment | None = None) -> RecommendResponse:
        dl = fb.Deadline(req.deadline_ms or self.args.deadline_ms)
        row = await self._read("recs", req.session_id, tenant, dl, req.session_id)
        prefix = [str(e["item_id"]) for e in row.events if e.get("item_id")] + list(req.items)
        recommender = bundle.recommender
        has_model = recommender is not None
        reasons: list[str] = []
        steps = fb.recommend_steps(bool(prefix), has_model)
        if exp is not None:
            steps = fb.policy_steps(steps, exp.arm.policy, exp.arm.skips_precomputed("recommender"))
        for step in steps:
            if step == fb.MODEL and recommender is not None:  # the chain offers MODEL only with a model
                try:
                    recs = self._timed(f"{tenant}/recommender", dl, recommender.recommend, prefix, req.k,
                                       req.exclude_seen)
                    return self._rec_resp(req, tenant, recs, fb.MODEL, bundle.versions["recommender"], reasons, exp)
                except TimeoutError:
                    reasons.append("deadline")
                except Exception:  # noqa: BLE001
                    logger.exception("recommender failed for tenant %s", tenant)
                    reasons.append("model_error")
            elif step == fb.PRECOMPUTED:
                pairs = codec.as_top_k(row.value)
                if pairs is not None and row.version is not None:
                    recs = fb.filter_recs(pairs, prefix, req.k, req.exclude_seen)
                    if recs:
                        return self._rec_resp(req, tenant, recs, fb.PRECOMPUTED,
                                              keys.model_version_of(row.version), reasons, exp)
                reasons.append(row.error or "no_precomputed")
            else:
                if not has_model and prefix and steps != [fb.POPULAR]:
                    reasons.insert(0, "no_model")
                popular = await self._popular(tenant, bundle, dl)
                recs = fb.top_popular(popular, prefix, req.k, req.exclude_seen)
                return self._rec_resp(req, tenant, recs, fb.POPULAR, None, reasons, exp)
        raise AssertionError("the fallback chain always ends with popular")  # pragma: no cover

    def _rec_resp(self, req: RecommendRequest, tenant: str, recs: list[tuple[str, float]], source: str,
                  version: str | None, reasons: list[str], exp: Assignment | None) -> RecommendResponse:
        reason = reasons[0] if reasons else None
        if reason:
            self.metrics.fallback("recommend", reason)
        return RecommendResponse(session_id=req.session_id, items=[RecItem(item_id=i, score=s) for i, s in recs],
                                 source=source, model_version=version,
                                 fallback_reason=reason, tenant=tenant,
                                 experiment=exp.experiment if exp else None, variant=exp.variant if exp else None)

    async def add_events(self, req: EventsRequest, tenant: str) -> EventsResponse:
        """Store the batch (session list + event stream, atomically) or raise ``EventsNotStored``."""
        try:
            length, duplicate = await self.store.append_events(
                tenant, req.session_id, [event_json(e) for e in req.events], req.batch_id, self.args.session_ttl_s,
                self.args.session_max_events, self.args.events_stream_max_len, self.args.events_batch_ttl_s)
        except StoreUnavailable as exc:
            self.metrics.fallback("events", f"redis_{exc.reason}")
            raise EventsNotStored(exc.reason, max(1, math.ceil(self.store.config.breaker_reset_s))) from exc
        return EventsResponse(session_id=req.session_id, accepted=len(req.events), session_length=length,
                              stored=True, duplicate=duplicate, tenant=tenant)

    async def pointer_states(self, tenant: str, tables: tuple[str, ...] = keys.TABLES) -> dict[str, str]:
        """Per table: ``ok``, ``missing`` (no pointer: never published, or lost with a flush) or
        ``expired`` (the pointer's namespace is gone: its TTL ran out or it was flushed);
        ``unknown`` when Redis cannot be asked. The refresh loop republishes missing ones."""
        try:
            ptrs = await self.store.get_many([keys.pointer_key(t, tenant) for t in tables], 0.05)
            live = {t: p.decode() for t, p in zip(tables, ptrs, strict=True) if p is not None}
            metas = await self.store.get_many([keys.meta_key(t, v, tenant) for t, v in live.items()], 0.05) \
                if live else []
        except StoreUnavailable:
            return {t: "unknown" for t in tables}
        found = dict(zip(live, metas, strict=True))
        return {t: ("missing" if t not in live else "ok" if found[t] is not None else "expired") for t in tables}

    async def redis_state(self) -> str:
        """``up``, ``down`` or ``skipped`` (breaker open); never raises."""
        try:
            await self.store.ping(timeout_s=0.25)
            return "up"
        except StoreUnavailable as exc:
            return "skipped" if exc.reason == "breaker_open" else "down"
