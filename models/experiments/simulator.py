"""A traffic simulator that knows the truth.

Two parts, kept apart so the live driver (``jobs.simulate``) can reuse the first with lists
that the real app returned:

- :class:`VisitorModel` is the shopper. Each visitor has a latent affinity ``a`` (Gamma, mean
  1, capped); a session's behaviour depends on ``a`` and on the *quality* ``q`` of what was
  shown to it (1.0 = the popular baseline). Per session: exposures ``1 + Poisson(pages - 1)``;
  each exposure is clicked with ``ctr * sqrt(a) * q``; the session converts with
  ``conversion * a * q``; a converting session places ``1 + Poisson(extra_orders)`` orders of
  log-normal value. A session with one exposure and no click or order bounced. Before the
  experiment each visitor had ``pre_sessions`` sessions at ``q = 1``: its counts there are the
  CUPED covariates. Because probabilities are linear in ``q`` and ``a`` is capped so they
  never clip, a variant whose lists have mean quality ``q_v`` has a TRUE relative conversion
  lift of exactly ``q_v / q_control - 1``.
- :func:`list_quality` turns what was shown (item ids, positions) into ``q``: the
  position-weighted appeal of the items over the popular list's. The bench passes ``q``
  directly (``Arm.quality``); the live driver computes it from the app's responses.

Everything is vectorised numpy: one experiment of half a million sessions takes well under
a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisitorModel:
    """Population parameters at baseline quality 1.0 (see the module docstring)."""

    conversion: float = 0.04
    ctr: float = 0.08
    pages: float = 3.0
    affinity_shape: float = 0.5
    max_quality: float = 2.0
    extra_orders: float = 0.15
    order_value_mean: float = 60.0
    order_value_sigma: float = 0.8
    pre_sessions: int = 20

    def __post_init__(self) -> None:
        if not (0 < self.conversion < 1 and 0 < self.ctr < 1):
            raise ValueError("VisitorModel: conversion and ctr must lie in (0, 1)")
        if self.pages < 1 or self.affinity_shape <= 0 or self.max_quality < 1 or self.pre_sessions < 0:
            raise ValueError("VisitorModel: need pages >= 1, affinity_shape > 0, max_quality >= 1, pre_sessions >= 0")

    @property
    def max_affinity(self) -> float:
        """Affinity cap so that neither probability can pass 1 at ``max_quality``."""
        return min(1.0 / (self.conversion * self.max_quality), (1.0 / (self.ctr * self.max_quality)) ** 2)

    def affinity(self, n: int, rng: np.random.Generator) -> np.ndarray:
        a = rng.gamma(self.affinity_shape, 1.0 / self.affinity_shape, size=n)
        return np.minimum(a, self.max_affinity)

    def respond(self, affinity: np.ndarray, quality: np.ndarray, rng: np.random.Generator,
                conversion_only: bool = False) -> dict[str, np.ndarray]:
        """One session per row: the per-session KPI components given what was shown.

        ``conversion_only`` draws just the conversion (the same draw as the full model makes),
        for fast bulk simulation of the primary metric.
        """
        q = np.asarray(quality, dtype=np.float64)
        if q.shape != affinity.shape:
            raise ValueError("respond: one quality per session")
        if (q < 0).any() or (q > self.max_quality).any():
            raise ValueError(f"respond: quality must lie in [0, {self.max_quality}]")
        n = affinity.size
        if conversion_only:
            return {"sessions": np.ones(n),
                    "converted": (rng.random(n) < self.conversion * affinity * q).astype(np.float64)}
        exposures = 1 + rng.poisson(self.pages - 1, size=n)
        clicks = rng.binomial(exposures, self.ctr * np.sqrt(affinity) * q)
        converted = rng.random(n) < self.conversion * affinity * q
        orders = np.where(converted, 1 + rng.poisson(self.extra_orders, size=n), 0)
        revenue: np.ndarray = np.zeros(n)
        k = int(orders.sum())
        if k:
            mu = np.log(self.order_value_mean) - self.order_value_sigma ** 2 / 2
            values = rng.lognormal(mu, self.order_value_sigma, size=k)
            revenue = np.bincount(np.repeat(np.arange(n), orders), weights=values, minlength=n)
        bounced = (exposures == 1) & (clicks == 0) & ~converted
        return {"sessions": np.ones(n), "exposures": exposures.astype(np.float64), "clicks": clicks.astype(np.float64),
                "converted": converted.astype(np.float64), "orders": orders.astype(np.float64),
                "revenue": revenue, "bounced": bounced.astype(np.float64)}

    def pre_period(self, affinity: np.ndarray, rng: np.random.Generator,
                   conversion_only: bool = False) -> dict[str, np.ndarray]:
        """Each visitor's counts over ``pre_sessions`` sessions at baseline quality (CUPED covariates)."""
        m = self.pre_sessions
        conv = rng.binomial(m, self.conversion * affinity).astype(np.float64)
        if conversion_only:
            return {"pre_converted": conv}
        clicks = rng.binomial(int(round(m * self.pages)), np.minimum(1.0, self.ctr * np.sqrt(affinity))).astype(np.float64)
        mu = np.log(self.order_value_mean) - self.order_value_sigma ** 2 / 2
        k = conv.astype(np.int64)
        values = rng.lognormal(mu, self.order_value_sigma, size=int(k.sum()))
        revenue = np.bincount(np.repeat(np.arange(affinity.size), k), weights=values, minlength=affinity.size)
        return {"pre_converted": conv, "pre_clicks": clicks, "pre_revenue": revenue,
                "pre_sessions": np.full(affinity.size, float(m)), "pre_exposures": np.full(affinity.size, m * self.pages)}


def list_quality(appeal: np.ndarray, shown: np.ndarray, reference: float, position_decay: float = 0.85) -> np.ndarray:
    """Quality of shown lists: position-weighted mean appeal over ``reference`` (the popular list's).

    ``appeal``: appeal per item index; ``shown``: int array (sessions, k) of item indices, -1 = empty slot.
    """
    shown = np.asarray(shown)
    if shown.ndim != 2:
        raise ValueError("list_quality: shown must be (sessions, k)")
    w = position_decay ** np.arange(shown.shape[1])
    mask = shown >= 0
    vals = np.where(mask, np.asarray(appeal)[np.where(mask, shown, 0)], 0.0)
    wsum = (mask * w).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = (vals * w).sum(axis=1) / wsum / reference
    return np.where(wsum > 0, q, 1.0)


@dataclass(frozen=True)
class Arm:
    """A simulated variant: its name, traffic share and the mean quality of its lists."""

    name: str
    share: float
    quality: float = 1.0

    @property
    def true_lift(self) -> float:
        return self.quality - 1.0


@dataclass(frozen=True)
class SimulatedExperiment:
    """Per-session rows of one simulated experiment, in arrival order."""

    arm: np.ndarray           # arm index per session
    tick: np.ndarray          # tick of arrival
    columns: dict[str, np.ndarray]
    arms: tuple[Arm, ...]
    n_ticks: int

    def true_relative_lift(self, arm: int, control: int = 0) -> float:
        return self.arms[arm].quality / self.arms[control].quality - 1.0


def simulate_experiment(model: VisitorModel, arms: tuple[Arm, ...], n_units: int, n_ticks: int,
                        rng: np.random.Generator, *, log_loss: dict[int, float] | None = None,
                        stop_tick: dict[int, int] | None = None, conversion_only: bool = False) -> SimulatedExperiment:
    """``n_units`` sessions (one per new visitor) arriving evenly over ``n_ticks`` ticks.

    Units go to arms at random with the arms' shares (what the hash assignment does, see
    ``assignment``). ``log_loss`` drops a fraction of an arm's sessions from the log (a
    sample-ratio mismatch); ``stop_tick`` sends an arm's arrivals from that tick on to arm 0
    (a rollback to control). ``conversion_only`` simulates just conversion and its covariate.
    """
    shares = np.array([a.share for a in arms], dtype=np.float64)
    if n_units < 1 or n_ticks < 1 or abs(shares.sum() - 1) > 1e-9:
        raise ValueError("simulate_experiment: need n_units >= 1, n_ticks >= 1 and shares summing to 1")
    arm = rng.choice(len(arms), size=n_units, p=shares)
    tick = (np.arange(n_units) * n_ticks) // n_units
    for idx, t in (stop_tick or {}).items():
        arm[(arm == idx) & (tick >= t)] = 0
    aff = model.affinity(n_units, rng)
    quality = np.array([a.quality for a in arms])[arm]
    cols = model.respond(aff, quality, rng, conversion_only)
    cols.update(model.pre_period(aff, rng, conversion_only))
    keep = np.ones(n_units, dtype=bool)
    for idx, frac in (log_loss or {}).items():
        keep &= ~((arm == idx) & (rng.random(n_units) < frac))
    if not keep.all():
        arm, tick = arm[keep], tick[keep]
        cols = {k: v[keep] for k, v in cols.items()}
    return SimulatedExperiment(arm=arm, tick=tick, columns=cols, arms=arms, n_ticks=n_ticks)


def to_logs(sim: SimulatedExperiment, *, tenant: str, experiment_id: str, start: pd.Timestamp,
            tick_seconds: float, rng: np.random.Generator, n_items: int = 500,
            list_size: int = 10) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Exposure, outcome and pre-period logs (as the serving app will write them) of a simulation.

    Exposures: one row per shown list with its items and positions. Outcomes: clicks on a shown
    item, and purchases with revenue. Pre-period: one row per unit with its ``pre_*`` counts.
    """
    n = sim.arm.size
    sessions = np.char.add("s", np.arange(n).astype(str))
    t0 = start + pd.to_timedelta(sim.tick * tick_seconds + rng.random(n) * tick_seconds * 0.5, unit="s")
    cols = sim.columns
    n_exp = cols["exposures"].astype(np.int64)
    row_sess = np.repeat(np.arange(n), n_exp)
    seq = np.arange(row_sess.size) - np.repeat(np.cumsum(n_exp) - n_exp, n_exp)
    items = rng.integers(0, n_items, size=(row_sess.size, list_size))
    exposures = pd.DataFrame({
        "tenant": tenant, "experiment": experiment_id,
        "variant": np.array([a.name for a in sim.arms])[sim.arm[row_sess]],
        "session_id": sessions[row_sess],
        "items": [[f"i{j}" for j in r] for r in items],
        "model_version": "sim",
        "time": t0[row_sess] + pd.to_timedelta(seq * 20.0, unit="s"),
    })
    exposures["positions"] = [list(range(list_size))] * len(exposures)
    # clicks: on a shown item of one of the session's lists, a little after it
    n_clk = cols["clicks"].astype(np.int64)
    c_sess = np.repeat(np.arange(n), n_clk)
    first_row = np.cumsum(n_exp) - n_exp
    c_row = first_row[c_sess] + (rng.random(c_sess.size) * n_exp[c_sess]).astype(np.int64)
    c_item = items[c_row, rng.integers(0, list_size, size=c_sess.size)]
    clicks = pd.DataFrame({"session_id": sessions[c_sess], "event_type": "click",
                           "item_id": np.char.add("i", c_item.astype(str)), "revenue": 0.0,
                           "time": exposures["time"].to_numpy()[c_row] + pd.to_timedelta(5.0, unit="s")})
    buyers = np.flatnonzero(cols["orders"] > 0)
    n_ord = cols["orders"][buyers].astype(np.int64)
    o_sess = np.repeat(buyers, n_ord)
    o_rev = np.repeat(cols["revenue"][buyers] / n_ord, n_ord)
    purchases = pd.DataFrame({"session_id": sessions[o_sess], "event_type": "purchase", "item_id": "i0",
                              "revenue": o_rev,
                              "time": t0[o_sess] + pd.to_timedelta(600.0, unit="s")})
    outcomes = pd.concat([clicks, purchases], ignore_index=True)
    outcomes.insert(0, "tenant", tenant)
    pre = pd.DataFrame({"unit_id": sessions, **{k: v for k, v in cols.items() if k.startswith("pre_")}})
    return exposures, outcomes, pre
