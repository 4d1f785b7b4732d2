"""The HTTP API of tandem: routes, their documented answers, and the layers in front of them.

One FastAPI app per process, whatever runs it: the Serve deployment (``serve.deployments``)
and the bare uvicorn benchmark peer (``bench.serve_bare``) both ``bind`` a ``Service`` to it.
Requests pass ``serve.guard`` (size, API key, media type; outermost), then ``serve.hotpath``
(the bid-time fast path), then FastAPI. The routes below are what the OpenAPI document
publishes; every status the app can answer is listed on them (``RESPONSES``).
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Header, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from serve import errors, hotpath
from serve.bid import NoticesNotStored
from serve.bid_schemas import BidRequest, BidResponse, NoticeRequest, NoticeResponse
from serve.engine import EventsNotStored
from serve.guard import TENANT, Gate, GuardMiddleware
from serve.schemas import (
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    HealthResponse,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
    ValidationErrorResponse,
)


class Service(Protocol):
    """What the routes need from whoever serves them."""

    gate: Gate

    async def handle(self, endpoint: str, req: Any, tenant: str) -> BaseModel: ...

    async def health(self, detailed: bool, tenant: str | None = None) -> HealthResponse: ...


_service: Service | None = None


def bind(service: Service | None) -> None:
    """Make ``service`` the one this process's app calls (a Serve replica binds itself)."""
    global _service
    _service = service


def bound() -> Service:
    if _service is None:   # the guard answers 503 before a route can get here
        raise RuntimeError("no service bound to serve.api")
    return _service


def _gate() -> Gate | None:
    return _service.gate if _service is not None else None


def _hot_service() -> hotpath.HotService | None:
    return _service


def _json(model: type[BaseModel], what: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "description": what}
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
TEXT_OR_JSON = {"text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": ErrorResponse.model_json_schema()}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _json(ErrorResponse, "the body is not valid JSON, or a malformed header"),
    401: _json(ErrorResponse, "missing or unknown X-API-Key",
               {"WWW-Authenticate": {"description": "ApiKey", "schema": {"type": "string"}}}),
    413: _json(ErrorResponse, "the body is over the app's max_body_bytes (256 KiB by default)"),
    415: _json(ErrorResponse, "the body is not JSON (Content-Type must be application/json)"),
    422: _json(ValidationErrorResponse, "a field does not validate; each error names its field"),
    429: {"description": "overloaded: retry after Retry-After seconds", "headers": RETRY_AFTER,
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    503: {"description": "unavailable for now (starting, or events or bid notices cannot be stored): "
                         "retry after Retry-After seconds", "headers": RETRY_AFTER, "content": TEXT_OR_JSON},
}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {k: RESPONSES[k] for k in (400, 401, 413, 429, 503)}

api = FastAPI(title="tandem", version="1", description="Real-time purchase propensity and session "
              "recommendations behind a cache, with fallbacks (model -> precomputed -> popular), and real-time "
              "bidding under a budget held in Redis. "
              "Every endpoint but /v1/health needs an X-API-Key header.")
api.add_middleware(hotpath.HotPathMiddleware,
                   routes={"/v1/score": hotpath.Route("score", ScoreRequest),
                           "/v1/recommend": hotpath.Route("recommend", RecommendRequest),
                           "/v1/bid": hotpath.Route("bid", BidRequest)},
                   service=_hot_service)
api.add_middleware(GuardMiddleware, gate=_gate)  # added last: outermost
errors.install(api)


@api.exception_handler(EventsNotStored)
async def _events_not_stored(request: Request, exc: EventsNotStored) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})


@api.exception_handler(NoticesNotStored)
async def _notices_not_stored(request: Request, exc: NoticesNotStored) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})


# Documentation of the key; the guard has checked it before the body was read.
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="the tenant's API key")
Key = Annotated[str | None, Security(API_KEY)]


def tenant_of(request: Request) -> str:
    tenant = request.scope.get(TENANT)
    if tenant is None:  # pragma: no cover - the guard answers 401 first
        raise RuntimeError("request reached a route without a tenant")
    return str(tenant)


@api.post("/v1/score", response_model=ScoreResponse, responses=RESPONSES)
async def score(req: ScoreRequest, request: Request, _: Key = None) -> Any:
    """Purchase propensity of a session: model -> precomputed -> prior."""
    return await bound().handle("score", req, tenant_of(request))


@api.post("/v1/recommend", response_model=RecommendResponse, responses=RESPONSES)
async def recommend(req: RecommendRequest, request: Request, _: Key = None) -> Any:
    """Top-k items for a session: model -> precomputed -> popular."""
    return await bound().handle("recommend", req, tenant_of(request))


@api.post("/v1/events", response_model=EventsResponse, responses=RESPONSES)
async def events(req: EventsRequest, request: Request, _: Key = None) -> Any:
    """Record live events of a session: stored, or 503 + Retry-After (never dropped silently)."""
    return await bound().handle("events", req, tenant_of(request))


@api.post("/v1/bid", response_model=BidResponse, responses=RESPONSES)
async def bid(req: BidRequest, request: Request, _: Key = None) -> Any:
    """A bid for one impression, held against the campaign's budget, or a no-bid with its reason
    (every fault, and a bid that would be late, is a no-bid within the deadline)."""
    return await bound().handle("bid", req, tenant_of(request))


@api.post("/v1/bid/notice", response_model=NoticeResponse, responses=RESPONSES)
async def bid_notice(req: NoticeRequest, request: Request, _: Key = None) -> Any:
    """Win (with the price paid) and loss notices: stored (200, idempotent per bid id) or 503 + Retry-After."""
    return await bound().handle("notice", req, tenant_of(request))


@api.get("/v1/health", response_model=HealthResponse, response_model_exclude_none=True,
         responses=HEALTH_RESPONSES)
async def health(request: Request,
                 x_api_key: Annotated[str | None, Header(description="with a key: the details")] = None) -> Any:
    """``ok`` or ``degraded`` (Redis); with an API key also the breaker, the model versions and each
    precomputed table's pointer of the caller's tenant (``degraded`` too when one is missing or expired)."""
    tenant = request.scope.get(TENANT)
    return await bound().health(detailed=tenant is not None, tenant=tenant)
