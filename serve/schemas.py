"""Typed requests, responses and application arguments of the tandem Serve app.

Requests forbid unknown fields, so a typo is a 422 that names the field rather
than a silently ignored option.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.schema import EVENT_TYPES
from store.online import OnlineStoreConfig

SessionId = Field(..., min_length=1, max_length=128, pattern=r"^[^\s:]+$")
Source = Literal["model", "precomputed", "popular"]


class Event(BaseModel):
    """One shopper action in the canonical schema (session and tenant come from the request)."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(..., min_length=1, max_length=128)
    event_type: str = Field("view")
    event_time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    price: float | None = Field(None, ge=0)
    category: str | None = Field(None, max_length=128)
    user_id: str | None = Field(None, max_length=128)

    @field_validator("event_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(f"must be one of {list(EVENT_TYPES)}")
        return value

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = SessionId
    events: list[Event] = Field(default_factory=list, max_length=500)
    deadline_ms: float | None = Field(None, gt=0, le=10_000)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = SessionId
    items: list[str] = Field(default_factory=list, max_length=500)
    k: int = Field(20, ge=1, le=200)
    exclude_seen: bool = True
    deadline_ms: float | None = Field(None, gt=0, le=10_000)


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = SessionId
    events: list[Event] = Field(..., min_length=1, max_length=500)


class ScoreResponse(BaseModel):
    session_id: str
    score: float
    source: Source
    model_version: str | None
    fallback_reason: str | None = None
    tenant: str


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


class EventsResponse(BaseModel):
    session_id: str
    accepted: int
    session_length: int | None
    stored: bool
    tenant: str


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    redis: str
    breaker: str
    models: dict[str, str | None]


class TenantConfig(BaseModel):
    """A tenant's models: its own registry (default: the app's) and optional pinned versions."""

    model_config = ConfigDict(extra="forbid")

    registry_uri: str | None = None
    propensity_version: str | None = None
    recommender_version: str | None = None


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
    popular_k: int = Field(100, ge=1, le=10_000)
    cache: OnlineStoreConfig = Field(default_factory=lambda: OnlineStoreConfig.model_validate({}))
    model_cache_dir: str | None = None
    max_tenant_models: int = Field(4, ge=1, le=64)

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
