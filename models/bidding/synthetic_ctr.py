"""A synthetic multi-field CTR impression table with a known true CTR function.

Shaped like an iPinYou impression log: categorical fields of low to high cardinality with
Zipf-distributed values, missing values (``None``), one numeric field with missing values,
one pairwise interaction, a click label and a market price. The truth is::

    logit p = intercept + sum_f effect_f[value_f] + effect_{a x b}[value_a, value_b]

with per-field effects drawn N(0, effect_sd) (a missing value has an effect of its own, so
missingness can carry signal) and the intercept set so the table's mean CTR is ``base_ctr``.
Clicks are Bernoulli(p). The market price is lognormal around ``price_median`` with a
log-mean that rises with the slot size and, by ``price_ctr_slope``, with logit p (better
impressions cost more), capped at ``max_price``. ``SyntheticCtr.true_ctr`` recomputes p for
any frame with these columns, so a model's pCTR can be checked against the truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

MISSING_KEY = "__missing__"


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    cardinality: int = Field(ge=1)
    missing_rate: float = Field(default=0.0, ge=0, lt=1)
    effect_sd: float = Field(default=0.3, ge=0)
    zipf: float = Field(default=1.1, ge=0, description="value frequency ~ rank^-zipf (0 = uniform)")


DEFAULT_FIELDS = (
    FieldSpec(name="adexchange", cardinality=4, missing_rate=0.01, effect_sd=0.2, zipf=0.5),
    FieldSpec(name="region", cardinality=35, missing_rate=0.02, effect_sd=0.2),
    FieldSpec(name="city", cardinality=370, missing_rate=0.05, effect_sd=0.2),
    FieldSpec(name="domain", cardinality=20_000, missing_rate=0.08, effect_sd=0.5, zipf=1.05),
    FieldSpec(name="slotid", cardinality=5_000, missing_rate=0.03, effect_sd=0.4, zipf=1.05),
    FieldSpec(name="slotsize", cardinality=12, missing_rate=0.0, effect_sd=0.3, zipf=0.8),
    FieldSpec(name="slotvisibility", cardinality=4, missing_rate=0.1, effect_sd=0.3, zipf=0.5),
    FieldSpec(name="os_browser", cardinality=20, missing_rate=0.02, effect_sd=0.2),
    FieldSpec(name="creative", cardinality=30, missing_rate=0.0, effect_sd=0.3, zipf=0.7),
    FieldSpec(name="usertag", cardinality=600, missing_rate=0.25, effect_sd=0.4),
    FieldSpec(name="hour", cardinality=24, missing_rate=0.0, effect_sd=0.15, zipf=0.0),
)


class SyntheticCtrConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(default=100_000, ge=1)
    seed: int = 0
    base_ctr: float = Field(default=0.01, gt=0, lt=0.5)
    fields: tuple[FieldSpec, ...] = DEFAULT_FIELDS
    interaction: tuple[str, str] = ("hour", "adexchange")
    interaction_sd: float = Field(default=0.3, ge=0)
    floor_price_missing_rate: float = Field(default=0.3, ge=0, lt=1)
    floor_price_effect: float = Field(default=-0.004, description="logit change per unit of floor price")
    price_median: float = Field(default=50.0, gt=0)
    price_sigma: float = Field(default=0.7, gt=0)
    price_ctr_slope: float = Field(default=0.3, description="log-price change per unit of logit p")
    max_price: int = Field(default=300, ge=1)


@dataclass(frozen=True)
class SyntheticCtr:
    """The generated table and the truth that produced it."""

    frame: pd.DataFrame
    config: SyntheticCtrConfig
    effects: dict[str, dict[str, float]]
    interaction_effects: dict[tuple[str, str], float]
    intercept: float

    def logit(self, frame: pd.DataFrame) -> np.ndarray:
        z = np.full(len(frame), self.intercept)
        for spec in self.config.fields:
            table = self.effects[spec.name]
            z += np.array([table.get(_key(v), 0.0) for v in frame[spec.name]])
        a, b = self.config.interaction
        z += np.array([self.interaction_effects.get((_key(x), _key(y)), 0.0)
                       for x, y in zip(frame[a], frame[b], strict=True)])
        fp = pd.to_numeric(frame["floor_price"], errors="coerce").to_numpy(dtype=np.float64)
        z += np.where(np.isnan(fp), 0.0, self.config.floor_price_effect * np.nan_to_num(fp))
        return z

    def true_ctr(self, frame: pd.DataFrame) -> np.ndarray:
        result: np.ndarray = 1.0 / (1.0 + np.exp(-self.logit(frame)))
        return result


def _key(v: object) -> str:
    return MISSING_KEY if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _draw_values(rng: np.random.Generator, spec: FieldSpec, rows: int) -> np.ndarray:
    ranks = np.arange(1, spec.cardinality + 1, dtype=np.float64)
    p = ranks ** -spec.zipf
    idx = rng.choice(spec.cardinality, size=rows, p=p / p.sum())
    values = np.array([f"{spec.name}_{i}" for i in range(spec.cardinality)], dtype=object)[idx]
    values[rng.random(rows) < spec.missing_rate] = None
    return values


def _solve_intercept(z: np.ndarray, target: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(z + mid)))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def make_ctr_table(cfg: SyntheticCtrConfig | None = None) -> SyntheticCtr:
    """Generate the table: one row per impression, ``click`` the label, ``true_ctr`` the truth."""
    cfg = cfg or SyntheticCtrConfig()
    names = [f.name for f in cfg.fields]
    if len(set(names)) != len(names):
        raise ValueError(f"field names must be unique: {names}")
    for name in cfg.interaction:
        if name not in names:
            raise ValueError(f"interaction field {name!r} is not one of the fields {names}")
    rng = np.random.default_rng(cfg.seed)
    data: dict[str, Any] = {}
    effects: dict[str, dict[str, float]] = {}
    for spec in cfg.fields:
        data[spec.name] = _draw_values(rng, spec, cfg.rows)
        keys = [f"{spec.name}_{i}" for i in range(spec.cardinality)] + [MISSING_KEY]
        effects[spec.name] = dict(zip(keys, rng.normal(0.0, spec.effect_sd, len(keys)).tolist(), strict=True))
    a, b = cfg.interaction
    a_keys = [*(f"{a}_{i}" for i in range(_spec(cfg, a).cardinality)), MISSING_KEY]
    b_keys = [*(f"{b}_{i}" for i in range(_spec(cfg, b).cardinality)), MISSING_KEY]
    inter = {(x, y): float(rng.normal(0.0, cfg.interaction_sd)) for x in a_keys for y in b_keys}
    floor = rng.choice(np.array([0, 5, 10, 50, 100, 200], dtype=np.float64), size=cfg.rows)
    floor[rng.random(cfg.rows) < cfg.floor_price_missing_rate] = np.nan
    data["floor_price"] = floor
    frame = pd.DataFrame(data)
    truth = SyntheticCtr(frame, cfg, effects, inter, 0.0)
    z0 = truth.logit(frame)
    intercept = _solve_intercept(z0, cfg.base_ctr)
    z = z0 + intercept
    p = 1.0 / (1.0 + np.exp(-z))
    frame["click"] = (rng.random(cfg.rows) < p).astype(np.int8)
    size_rank = np.array([0 if v is None else int(str(v).rsplit("_", 1)[1]) for v in data["slotsize"]]) \
        if "slotsize" in names else np.zeros(cfg.rows)
    log_price = (np.log(cfg.price_median) + cfg.price_sigma * rng.standard_normal(cfg.rows)
                 - 0.05 * size_rank + cfg.price_ctr_slope * (z - z.mean()))
    frame["market_price"] = np.minimum(np.round(np.exp(log_price)), cfg.max_price).astype(np.int64)
    frame["true_ctr"] = p
    logger.info("synthetic CTR table: %d rows, CTR %.4f, %d fields", cfg.rows, frame["click"].mean(), len(names))
    return SyntheticCtr(frame, cfg, effects, inter, intercept)


def _spec(cfg: SyntheticCtrConfig, name: str) -> FieldSpec:
    return next(f for f in cfg.fields if f.name == name)
