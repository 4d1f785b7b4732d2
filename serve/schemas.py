"""Typed requests, responses and application arguments of the tandem Serve app.

The published OpenAPI document is the contract, and the code enforces exactly it:

- requests are strict (a bool is not a number, a number is not a string) and forbid unknown
  fields, so a typo is a 422 that names the field rather than a silently ignored option;
- every rule is in the schema: enums (``event_type``), patterns (ids, ``event_time``), bounds;
- ids start with a letter or digit and hold printable ASCII without ``:`` (the Redis key
  delimiter), so no id can address a reserved entity (``__meta__``, ``__all__``) or another
  key space;
- ``event_time`` is an RFC 3339 time between 1970 and 2099 (a zone-less time is UTC), written
  as one regular expression that also checks month lengths and leap days, so the schema's
  pattern and the server agree on every string;
- numbers are finite (NaN and infinities are refused).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from serve.exposures import ExposureConfig
from store.online import OnlineStoreConfig

# Printable ASCII without ':'; the first character a letter or digit (no reserved "__x__" ids).
ID_PATTERN = r"^[A-Za-z0-9][!-9;-~]{0,127}$"
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # free text without control characters
_YEAR = r"(19[7-9][0-9]|20[0-9][0-9])"
_LEAP_YEAR = r"(19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26]))"
_MONTH_DAY = r"((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
EVENT_TIME_PATTERN = (rf"^({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
                      r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$")
_EVENT_TIME_RE = re.compile(EVENT_TIME_PATTERN)


def _event_time(value: Any) -> Any:
    """An RFC 3339 string matching ``EVENT_TIME_PATTERN`` -> an aware datetime (zone-less: UTC)."""
    if isinstance(value, datetime):   # from Python callers; JSON only ever carries strings
        parsed = value
    elif isinstance(value, str) and _EVENT_TIME_RE.fullmatch(value):
        parsed = datetime.fromisoformat(value)
    else:
        raise ValueError("must be an RFC 3339 date-time between 1970 and 2099, e.g. 2026-11-24T12:00:00Z")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _integral(value: Any) -> Any:
    """JSON Schema's integer includes 20.0: take an integral float as an int (a bool stays a bool)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Id = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
Int = Annotated[int, BeforeValidator(_integral)]
EventTime = Annotated[datetime, BeforeValidator(_event_time),
                      WithJsonSchema({"type": "string", "pattern": EVENT_TIME_PATTERN,
                                      "description": "RFC 3339 date-time, 1970-2099; without an offset: UTC",
                                      "examples": ["2026-11-24T12:00:00Z"]})]
EventType = Literal["view", "cart", "remove_from_cart", "purchase"]  # == models.schema.EVENT_TYPES (tested)
Source = Literal["model", "precomputed", "popular"]
Deadline = Annotated[float | None, Field(None, gt=0, le=10_000, allow_inf_nan=False,
                                         description="time budget in ms (default: the app's)")]
STRICT = ConfigDict(extra="forbid", strict=True)


class Event(BaseModel):
    """One shopper action in the canonical schema (session and tenant come from the request)."""

    model_config = STRICT

    item_id: Id
    event_type: EventType = "view"
    event_time: EventTime = Field(default_factory=lambda: datetime.now(UTC))
    price: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False)
    category: str | None = Field(None, max_length=128, pattern=NAME_PATTERN)
    user_id: Id | None = None


class ScoreRequest(BaseModel):
    model_config = STRICT

    session_id: Id
    events: list[Event] = Field(default_factory=list, max_length=500)
    deadline_ms: Deadline = None
    visitor_id: Id | None = Field(default=None, description="the shopper across sessions: the unit of a visitor-level "
                                  "A/B experiment (without it, the session is)")


class RecommendRequest(BaseModel):
    model_config = STRICT

    session_id: Id
    items: list[Id] = Field(default_factory=list, max_length=500)
    k: Int = Field(20, ge=1, le=200)
    exclude_seen: bool = True
    deadline_ms: Deadline = None
    visitor_id: Id | None = Field(default=None, description="the shopper across sessions: the unit of a visitor-level "
                                  "A/B experiment (without it, the session is)")


class EventsRequest(BaseModel):
    model_config = STRICT

    session_id: Id
    events: list[Event] = Field(..., min_length=1, max_length=500)
    batch_id: Id | None = Field(None, description="a client-chosen id of this batch: sent again (a retry "
                                "after a 503 or a lost answer), it is stored once")


class ScoreResponse(BaseModel):
    session_id: str
    score: float
    source: Source
    model_version: str | None
    fallback_reason: str | None = None
    tenant: str
    experiment: str | None = Field(default=None, description="the tenant's A/B experiment, if one runs")
    variant: str | None = Field(default=None, description="the experiment's variant this session (or visitor) is in")


class RecItem(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    session_id: str
    items: list[RecItem]
    source: Source
    model_version: str | None
    fallback_reason: str | None = None
    tenant: str
    experiment: str | None = Field(default=None, description="the tenant's A/B experiment, if one runs")
    variant: str | None = Field(default=None, description="the experiment's variant this session (or visitor) is in")


class EventsResponse(BaseModel):
    """200 means stored: in the session and the tenant's event stream (otherwise the answer is 503)."""

    session_id: str
    accepted: int
    session_length: int
    stored: bool = True
    duplicate: bool = Field(False, description="this batch_id was stored before; not stored twice")
    tenant: str


class HealthResponse(BaseModel):
    """Without an API key only ``status``; with one, the details."""

    status: Literal["ok", "degraded"]
    redis: str | None = None
    breaker: str | None = None
    models: dict[str, str | None] | None = None
    swap_error: str | None = Field(default=None, description="the last model swap failed: the models above were kept")
    experiment: dict[str, Any] | None = Field(default=None, description="the tenant's A/B experiment on this replica: "
                                              "running or rolled_back (and why)")
    exposures: dict[str, int | str | None] | None = Field(default=None, description="exposure log writer: buffered, "
                                                          "dropped (records lost: Redis was down too long), written")
    pointers: dict[str, str] | None = Field(default=None, description="per precomputed table of the caller's tenant: "
                                            "ok | missing (no pointer) | expired (its namespace is gone) | unknown "
                                            "(Redis not reachable); the refresh loop republishes missing ones")
    replica: str | None = Field(default=None, description="the Serve replica that answered")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx the app itself answers, except field validation (``ValidationErrorResponse``)."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    input: str | None = Field(None, description="a short excerpt of the offending input")


class ValidationErrorResponse(BaseModel):
    """422: the first errors, each naming its field; ``errors`` counts them all."""

    detail: list[FieldError]
    errors: int


class TenantConfig(BaseModel):
    """A tenant's models: its own registry (default: the app's) and optional pinned versions."""

    model_config = ConfigDict(extra="forbid")

    registry_uri: str | None = None
    propensity_version: str | None = None
    recommender_version: str | None = None


class BidSettings(BaseModel):
    """The bid engine's Redis client and cache settings (``AppArgs.bid``); times in ms or s as named."""

    model_config = ConfigDict(extra="forbid")

    refresh_ms: float = Field(25.0, ge=1, le=10_000, description="budget-state refresh interval per campaign")
    idle_s: float = Field(30.0, gt=0, description="a campaign not bid on for this long leaves the refresh")
    max_connections: int = Field(32, ge=1, le=1024)
    pool_timeout_s: float = Field(0.005, gt=0, le=5)
    call_timeout_s: float = Field(0.05, gt=0, le=5, description="socket timeout of one budget call")
    notice_timeout_s: float = Field(0.5, gt=0, le=10, description="budget of one notice batch")
    connect_timeout_s: float = Field(0.25, gt=0, le=5)
    breaker_failures: int = Field(3, ge=1)
    breaker_reset_s: float = Field(1.0, gt=0)
    retention_s: int = Field(7 * 86_400, ge=60, description="a period's budget keys live this long after it ends")
    record_ttl_s: int = Field(86_400, ge=60, description="how long a bid's record answers notices")
    campaign_poll_s: float = Field(5.0, gt=0, le=3600, description="how often a replica looks for new "
                                   "campaign and pctr versions in the registry")


class AppArgs(BaseModel):
    """Arguments of ``build_app``; secrets and URLs arrive here once, from the entrypoint."""

    model_config = ConfigDict(extra="forbid")

    registry_uri: str
    redis_url: str
    api_keys: dict[str, str] = Field(default_factory=dict, description="API key -> tenant")
    require_api_key: bool = True
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    default_tenant: str = "default"
    deadline_ms: float = Field(10.0, gt=0, le=10_000)
    session_ttl_s: int = Field(1800, ge=1)
    session_max_events: int = Field(200, ge=1, le=10_000)
    events_stream_max_len: int = Field(1_000_000, ge=1000, description="approximate cap of a tenant's event stream")
    events_batch_ttl_s: int = Field(86_400, ge=60, description="how long a stored batch_id is remembered")
    popular_k: int = Field(100, ge=1, le=10_000)
    cache: OnlineStoreConfig = Field(default_factory=lambda: OnlineStoreConfig.model_validate({}))
    model_cache_dir: str | None = None
    max_tenant_models: int = Field(4, ge=1, le=64)
    max_body_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024,
                                description="request bodies over this get 413 before they are read")
    docs: bool = Field(True, description="serve /docs, /redoc and /openapi.json")
    experiments_poll_s: float = Field(2.0, gt=0, le=600, description="how often replicas re-read the experiments")
    exposures: ExposureConfig = Field(default_factory=lambda: ExposureConfig.model_validate({}))
    bid: BidSettings = Field(default_factory=lambda: BidSettings.model_validate({}),
                             description="the bid engine's budget client and caches (/v1/bid)")

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tenant in value.items():
            if len(key) < 4:
                raise ValueError("each API key must be at least 4 characters")
            if not tenant:
                raise ValueError(f"API key ...{key[-2:]} maps to an empty tenant")
        return value


class ModelConfig(BaseModel):
    """``user_config`` of the deployment: changing it hot-swaps models via ``reconfigure``."""

    model_config = ConfigDict(extra="forbid")

    generation: int = 0
    propensity_version: str | None = None
    recommender_version: str | None = None
