"""Typed A/B experiment config, one per tenant experiment.

The config is the single source of truth that assignment, the KPI report and the
guardrails read. Every model is ``extra="forbid"`` so a misspelt key fails with the
field's name, and the cross-field checks (shares summing to 1, exactly one control,
pinned versions only on ``version`` variants, guardrail metrics that exist) name the
offending field too.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger(__name__)

METRICS = ("ctr", "conversion", "bounce", "aov", "revenue_per_session")
"""KPIs the report computes; guardrails may name any of them."""

LOWER_IS_BETTER = frozenset({"bounce"})
"""Metrics where a rise, not a drop, is harm."""

Metric = Literal["ctr", "conversion", "bounce", "aov", "revenue_per_session"]
_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"
SHARE_TOLERANCE = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    """One arm: what it serves and the share of units it gets.

    ``policy``: ``popular`` (the non-personalised control), ``model`` (whatever the
    registry's champion is), or ``version`` (a pinned model version, e.g. a challenger,
    named in ``model_version``).
    """

    name: str = Field(..., pattern=_NAME)
    policy: Literal["popular", "model", "version"]
    model_version: str | None = Field(None, min_length=1, max_length=128)
    share: float = Field(..., gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _pinned(self) -> Variant:
        if self.policy == "version" and not self.model_version:
            raise ValueError(f"variant {self.name!r}: model_version is required when policy is 'version'")
        if self.policy != "version" and self.model_version is not None:
            raise ValueError(f"variant {self.name!r}: model_version is only allowed when policy is 'version'")
        return self


class Attribution(_Strict):
    """How long after a unit's exposure an outcome still counts for it."""

    click: timedelta = timedelta(minutes=30)
    purchase: timedelta = timedelta(hours=24)
    clicks_on_shown_items_only: bool = Field(
        True, description="count a click only when its item was in a list shown to the unit")

    @field_validator("click", "purchase")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("attribution window must be positive")
        return value


class Guardrail(_Strict):
    """``metric`` must not get worse by more than ``max_relative_drop`` with ``confidence``.

    Breached when the always-valid interval of the relative lift lies entirely beyond
    ``-max_relative_drop`` (``+max_relative_drop`` for lower-is-better metrics such as bounce).
    """

    metric: Metric
    max_relative_drop: float = Field(0.02, ge=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)


class Sequential(_Strict):
    """Always-valid inference settings (normal-mixture mSPRT on the log relative lift)."""

    tau: float = Field(0.05, gt=0.0, le=2.0, description="sd of the mixing prior on the log lift")
    min_units: int = Field(200, ge=2, description="units per arm before any interval is reported")


class KillSwitch(_Strict):
    engaged: bool = False
    reason: str = Field("", max_length=500)


class ExperimentConfig(_Strict):
    """A tenant's experiment: who is split, into what, how outcomes count, what stops it."""

    tenant: str = Field("default", pattern=_NAME)
    experiment_id: str = Field(..., pattern=_NAME)
    salt: str = Field(..., min_length=1, max_length=128)
    unit: Literal["session", "visitor"] = "session"
    variants: tuple[Variant, ...] = Field(..., min_length=2, max_length=16)
    control: str | None = Field(None, description="control variant name; default: the 'popular' one")
    primary_metric: Metric = "conversion"
    mde: float = Field(0.05, gt=0.0, lt=1.0, description="relative minimum detectable effect")
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1.0)
    attribution: Attribution = Field(default_factory=lambda: Attribution.model_validate({}))
    guardrails: tuple[Guardrail, ...] = ()
    sequential: Sequential = Field(default_factory=lambda: Sequential.model_validate({}))
    srm_alpha: float = Field(0.001, gt=0.0, lt=0.5, description="SRM alarm level (chi-square p-value)")
    kill_switch: KillSwitch = Field(default_factory=lambda: KillSwitch.model_validate({}))

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variants: duplicate variant name(s) {dup}")
        total = math.fsum(v.share for v in self.variants)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"variants: traffic shares must sum to 1, got {total:.6g}")
        if self.control is None:
            popular = [v.name for v in self.variants if v.policy == "popular"]
            if len(popular) != 1:
                raise ValueError("control: name the control variant (needed unless exactly one variant "
                                 f"has policy 'popular'; found {len(popular)})")
            object.__setattr__(self, "control", popular[0])
        elif self.control not in names:
            raise ValueError(f"control: {self.control!r} is not one of the variants {names}")
        metrics = [g.metric for g in self.guardrails]
        if len(set(metrics)) != len(metrics):
            raise ValueError("guardrails: at most one guardrail per metric")
        return self

    @property
    def control_name(self) -> str:
        assert self.control is not None  # set by the validator
        return self.control

    @property
    def treatments(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants if v.name != self.control)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"experiment {self.experiment_id}: no variant {name!r}")

    def shares(self) -> dict[str, float]:
        return {v.name: v.share for v in self.variants}

    def rolled_back(self, reason: str) -> ExperimentConfig:
        """The same experiment with every unit sent to control and the kill switch engaged."""
        data: dict[str, Any] = self.model_dump()
        data["kill_switch"] = {"engaged": True, "reason": reason[:500]}
        return ExperimentConfig.model_validate(data)


def load_config(data: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Validate a mapping (parsed YAML/JSON) into a config; errors name the source and field."""
    from pydantic import ValidationError

    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "<root>"
            parts.append(f"{loc}: {err['msg']}")
        raise ValueError(f"{source}: invalid experiment config: " + "; ".join(parts)) from None
