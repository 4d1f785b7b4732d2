"""Experiment statistics: KPI estimates, lift with 95 % CIs, SRM, CUPED and sample size.

Every KPI is a ratio of per-unit sums, ``R = sum(y) / sum(d)`` over the units (sessions or
visitors) of an arm: conversion is converted sessions over sessions, CTR clicks over
exposures, AOV revenue over orders, revenue per session revenue over sessions, bounce
bounced sessions over sessions. With a session unit ``d`` is 1 for the per-session
means and the ratio is a plain mean.

**Intervals: the delta method, not the bootstrap.** The unit of randomisation is the
unit, not the exposure or the order, so CTR and AOV are ratios of two correlated
per-unit sums and their variance must come from the unit level. The delta method
linearises ``R`` around the means, ``L_i = (y_i - R d_i) / mean(d)``, so
``Var(R) ~= Var(L) / n`` (Deng et al. 2018, "Applying the delta method in metric
analytics"). It is exact for means (d = 1), needs only the five sums
``n, sum y, sum d, sum y^2, sum d^2, sum y d`` per arm (so each 5-minute tick of every
experiment is a handful of vector operations, where a bootstrap would be thousands of
resamples per tick and per metric), and it is accurate at the tens of thousands of units
an experiment needs. The relative lift's CI is taken on ``log(R_t / R_c)`` with
``Var = Var(R_t)/R_t^2 + Var(R_c)/R_c^2`` and mapped back with ``exp(.) - 1``, which keeps it
asymmetric like the ratio itself and never below -100 %.

**CUPED** (Deng et al. 2013) subtracts ``theta * (x_i - mean x)`` from the linearised metric,
with ``x`` a pre-period covariate of the unit and ``theta = Cov(L, x) / Var(x)`` pooled
within arms (so the treatment effect does not leak into ``theta``). The variance falls by
``rho^2(L, x)``; the estimate moves by ``theta * (mean x_arm - mean x_all)``, which cancels
in expectation under randomisation.

All functions take arrays, so one call evaluates every tick of a history at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy import stats as sps

logger = logging.getLogger(__name__)

Array = np.ndarray


def _f(a: object) -> Array:
    return np.asarray(a, dtype=np.float64)


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one arm's ratio metric ``sum y / sum d`` with covariate ``x``.

    Each field is a float array of one shape (a scalar for one snapshot, one entry per tick
    for a history). ``x`` sums are zero when there is no pre-period covariate.
    """

    n: Array
    sy: Array
    sd: Array
    syy: Array
    sdd: Array
    syd: Array
    sx: Array
    sxx: Array
    sxy: Array
    sxd: Array

    @classmethod
    def of(cls, y: Array, d: Array | None = None, x: Array | None = None) -> Moments:
        """Moments of one group of units."""
        y = _f(y)
        d = np.ones_like(y) if d is None else _f(d)
        x = np.zeros_like(y) if x is None else _f(x)
        if not (y.shape == d.shape == x.shape) or y.ndim != 1:
            raise ValueError(f"y, d and x must be 1-d and of one length (got {y.shape}, {d.shape}, {x.shape})")
        return cls(*(_f(v) for v in (y.size, y.sum(), d.sum(), y @ y, d @ d, y @ d,
                                     x.sum(), x @ x, x @ y, x @ d)))

    @classmethod
    def cumulative(cls, y: Array, d: Array | None, x: Array | None, tick: Array, n_ticks: int) -> Moments:
        """Moments of the units with ``tick <= t`` for each t in ``0..n_ticks-1`` (a history)."""
        y = _f(y)
        d = np.ones_like(y) if d is None else _f(d)
        x = np.zeros_like(y) if x is None else _f(x)
        tick = np.asarray(tick, dtype=np.int64)
        if tick.size and (tick.min() < 0 or tick.max() >= n_ticks):
            raise ValueError(f"tick indices must lie in [0, {n_ticks})")

        def cs(w: Array | None) -> Array:
            return np.cumsum(np.bincount(tick, weights=w, minlength=n_ticks)).astype(np.float64)

        return cls(cs(None), cs(y), cs(d), cs(y * y), cs(d * d), cs(y * d),
                   cs(x), cs(x * x), cs(x * y), cs(x * d))

    def __add__(self, other: Moments) -> Moments:
        return Moments(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def _cov(self, a: str, b: str, ab: str) -> Array:
        n = self.n
        with np.errstate(invalid="ignore", divide="ignore"):
            result: np.ndarray = (getattr(self, ab) - getattr(self, a) * getattr(self, b) / n) / (n - 1)
            return result

    @property
    def ratio(self) -> Array:
        with np.errstate(invalid="ignore", divide="ignore"):
            result: np.ndarray = self.sy / self.sd
            return result

    @property
    def mean_x(self) -> Array:
        with np.errstate(invalid="ignore", divide="ignore"):
            result: np.ndarray = self.sx / self.n
            return result

    def linearized_var(self) -> Array:
        """Per-unit variance of ``L = (y - R d) / mean(d)`` (the delta method's influence)."""
        r = self.ratio
        dbar = self.sd / self.n
        with np.errstate(invalid="ignore", divide="ignore"):
            v = (self._cov("sy", "sy", "syy") - 2 * r * self._cov("sy", "sd", "syd")
                 + r * r * self._cov("sd", "sd", "sdd")) / (dbar * dbar)
        result: np.ndarray = np.maximum(v, 0.0)
        return result

    def linearized_cov_x(self) -> Array:
        """Per-unit covariance of ``L`` with the covariate ``x``."""
        dbar = self.sd / self.n
        with np.errstate(invalid="ignore", divide="ignore"):
            result: np.ndarray = (self._cov("sx", "sy", "sxy") - self.ratio * self._cov("sx", "sd", "sxd")) / dbar
            return result

    def var_x(self) -> Array:
        return self._cov("sx", "sx", "sxx")


@dataclass(frozen=True)
class Estimate:
    """A KPI estimate of one arm and the variance of that estimate (not of a unit)."""

    value: Array
    var: Array
    n: Array


def estimate(m: Moments, theta: Array | float = 0.0, x_center: Array | float | None = None) -> Estimate:
    """Delta-method estimate of ``sum y / sum d``; CUPED-adjusted when ``theta`` is non-zero.

    ``x_center`` is the pooled covariate mean over all arms (defaults to the arm's own).
    """
    theta = _f(theta)
    center = m.mean_x if x_center is None else _f(x_center)
    value = m.ratio - theta * (m.mean_x - center)
    var_l = m.linearized_var() - 2 * theta * m.linearized_cov_x() + theta * theta * m.var_x()
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(var_l, 0.0) / m.n
    return Estimate(value=value, var=var, n=m.n)


def cuped_theta(arms: Sequence[Moments]) -> Array:
    """CUPED coefficient ``Cov(L, x) / Var(x)`` pooled within arms (0 where x has no variance)."""
    num = sum((m.n - 1) * np.nan_to_num(m.linearized_cov_x()) for m in arms)
    den = sum((m.n - 1) * np.nan_to_num(m.var_x()) for m in arms)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.where(_f(den) > 0, _f(num) / np.where(_f(den) > 0, den, 1.0), 0.0)
    return _f(theta)


def pooled_mean_x(arms: Sequence[Moments]) -> Array:
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = _f(sum(m.sx for m in arms)) / _f(sum(m.n for m in arms))
        return result


def variance_reduction(arms: Sequence[Moments]) -> Array:
    """``1 - Var(adjusted) / Var(plain)`` summed over arms (CUPED's gain, in [0, 1))."""
    theta, center = cuped_theta(arms), pooled_mean_x(arms)
    plain = sum(estimate(m).var for m in arms)
    adj = sum(estimate(m, theta, center).var for m in arms)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = 1.0 - _f(adj) / _f(plain)
        return result


@dataclass(frozen=True)
class Lift:
    """Treatment against control: absolute and relative lift with fixed-horizon CIs."""

    control: Array
    treatment: Array
    abs: Array
    abs_lo: Array
    abs_hi: Array
    rel: Array
    rel_lo: Array
    rel_hi: Array
    log_lift: Array
    log_var: Array
    p_value: Array


def compare(control: Estimate, treatment: Estimate, alpha: float = 0.05) -> Lift:
    """Absolute and relative lift with ``1 - alpha`` delta-method CIs.

    The p-value is the two-sided z test of ``log(R_t / R_c) = 0``, the same statistic as the
    relative CI, so "significant" and "the relative CI excludes 0" always agree.
    """
    z = sps.norm.ppf(1 - alpha / 2)
    c, t = _f(control.value), _f(treatment.value)
    diff = t - c
    se = np.sqrt(control.var + treatment.var)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_lift = np.log(t / c)
        log_var = treatment.var / (t * t) + control.var / (c * c)
        zstat = log_lift / np.sqrt(log_var)
    lse = np.sqrt(log_var)
    p = 2 * sps.norm.sf(np.abs(zstat))
    return Lift(control=c, treatment=t, abs=diff, abs_lo=diff - z * se, abs_hi=diff + z * se,
                rel=np.expm1(log_lift), rel_lo=np.expm1(log_lift - z * lse), rel_hi=np.expm1(log_lift + z * lse),
                log_lift=log_lift, log_var=log_var, p_value=_f(p))


@dataclass(frozen=True)
class Srm:
    """Sample-ratio-mismatch chi-square test of observed unit counts against configured shares."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    alarm: bool


def srm_test(counts: Sequence[int] | np.ndarray, shares: Sequence[float] | np.ndarray, alpha: float = 0.001) -> Srm:
    """Pearson chi-square goodness of fit with ``k - 1`` degrees of freedom; alarm when ``p < alpha``."""
    obs = np.asarray(counts, dtype=np.float64)
    w = np.asarray(shares, dtype=np.float64)
    if obs.shape != w.shape or obs.size < 2:
        raise ValueError("srm_test: counts and shares must have one entry per variant (at least 2)")
    if (w <= 0).any():
        raise ValueError("srm_test: shares must be positive")
    total = obs.sum()
    if total == 0:
        return Srm(tuple(int(o) for o in obs), tuple(0.0 for _ in obs), 0.0, 1.0, False)
    exp = total * w / w.sum()
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p = float(sps.chi2.sf(chi2, obs.size - 1))
    return Srm(tuple(int(o) for o in obs), tuple(float(e) for e in exp), chi2, p, p < alpha)


@dataclass(frozen=True)
class SampleSize:
    """Units needed for ``power`` at a relative MDE: total and per arm."""

    total: int
    control: int
    treatment: int
    sequential: bool


def log_lift_var_per_unit(mean: float, var: float, mde: float, share_control: float,
                          share_treatment: float, var_treatment: float | None = None) -> float:
    """``N * Var(log R_t/R_c)`` for N units split by the shares (per-unit variances of the metric)."""
    mean_t = mean * (1 + mde)
    var_t = var * (1 + mde) ** 2 if var_treatment is None else var_treatment
    return var / (mean * mean) / share_control + var_t / (mean_t * mean_t) / share_treatment


def required_sample_size(mean: float, var: float, mde: float, *, alpha: float = 0.05, power: float = 0.8,
                         share_control: float = 0.5, share_treatment: float = 0.5,
                         var_treatment: float | None = None, tau: float | None = None) -> SampleSize:
    """Units for a two-sided test of the log lift at level ``alpha`` to detect ``mde`` with ``power``.

    Fixed horizon (``tau`` None): ``N = (z_{1-a/2} + z_power)^2 * c / log(1+mde)^2`` with
    ``c = N * Var(log lift)``. Sequential (``tau`` given, the mSPRT mixing sd): the N at which
    the always-valid half-width plus ``z_power`` standard errors equals ``log(1+mde)``; peeking
    can only stop earlier, so the power at that N is at least ``power``.
    ``var`` is the per-unit variance of the metric (its linearised variance for a ratio).
    """
    if mean <= 0 or var <= 0 or not (0 < mde < 1):
        raise ValueError(f"required_sample_size: need mean > 0, var > 0, 0 < mde < 1 (got {mean}, {var}, {mde})")
    c = log_lift_var_per_unit(mean, var, mde, share_control, share_treatment, var_treatment)
    total = math.ceil(units_for_distance(c, abs(math.log1p(mde)), alpha=alpha, power=power, tau=tau))
    return SampleSize(total=total, control=math.ceil(total * share_control),
                      treatment=math.ceil(total * share_treatment), sequential=tau is not None)


def units_for_distance(c: float, distance: float, *, alpha: float, power: float, tau: float | None) -> float:
    """Units N at which an effect ``distance`` away (log scale) is found with ``power``.

    ``c = N * Var(estimate)``. Fixed horizon: ``sqrt(c/N) (z_{1-a/2} + z_power) = distance``.
    Sequential: ``halfwidth(c/N) + z_power sqrt(c/N) = distance``, solved by bisection.
    """
    zb = float(sps.norm.ppf(power))
    if tau is None:
        za = float(sps.norm.ppf(1 - alpha / 2))
        return c / (distance / (za + zb)) ** 2
    from models.experiments.sequential import halfwidth

    lo, hi = 1e-16, distance * distance
    for _ in range(200):  # halfwidth(V) + zb * sqrt(V) increases with V
        mid = math.sqrt(lo * hi)
        if float(halfwidth(mid, tau, alpha)) + zb * math.sqrt(mid) > distance:
            hi = mid
        else:
            lo = mid
    return c / lo
