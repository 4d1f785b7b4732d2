"""Always-valid inference: the normal-mixture mSPRT and its confidence sequence.

For an asymptotically normal estimate ``theta_hat`` with variance ``V`` (here the log
relative lift, ``V ~ c / n``), mixing the likelihood ratio over ``theta ~ N(theta0, tau^2)``
gives (Robbins 1970; Johari, Pekelis & Walsh 2017, "Always valid inference")

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 (theta_hat - theta0)^2 / (2 V (V + tau^2)))

a nonnegative martingale under ``theta = theta0``. By Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha``, so rejecting when ``Lambda >= 1/alpha`` keeps the
type-I error at ``alpha`` however often one looks. Inverting it gives the confidence
sequence ``theta_hat +- h`` with

    h = sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))

valid uniformly over time (the Gaussian-mixture boundary of Howard et al. 2021). With a
plug-in variance it is the asymptotic confidence sequence of Waudby-Smith et al. 2021.
The running intersection of the intervals and the running minimum of ``1/Lambda`` (the
always-valid p-value) are also valid, and never widen or rise between ticks.

``tau`` is fixed before the experiment starts (config ``sequential.tau``, default the MDE
on the log scale); it decides where the boundary is tightest, not its validity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

Array = np.ndarray


def log_likelihood_ratio(estimate: Array | float, var: Array | float, tau: float,
                         theta0: float = 0.0) -> Array:
    """``log Lambda`` of the normal-mixture SPRT of ``theta = theta0``."""
    est, v = np.asarray(estimate, dtype=np.float64), np.asarray(var, dtype=np.float64)
    t2 = tau * tau
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * np.log(v / (v + t2)) + t2 * (est - theta0) ** 2 / (2 * v * (v + t2))


def halfwidth(var: Array | float, tau: float, alpha: float) -> Array:
    """Half-width of the ``1 - alpha`` confidence sequence at estimate variance ``var``."""
    v = np.asarray(var, dtype=np.float64)
    t2 = tau * tau
    with np.errstate(invalid="ignore", divide="ignore"):
        result: np.ndarray = np.sqrt(v * (v + t2) / t2 * (2 * np.log(1 / alpha) + np.log((v + t2) / v)))
        return result


@dataclass(frozen=True)
class ConfidenceSequence:
    """Per-tick always-valid interval and p-value of ``theta`` (running intersection / minimum)."""

    lo: Array
    hi: Array
    p_value: Array

    @property
    def excludes_zero(self) -> Array:
        return (self.lo > 0) | (self.hi < 0)


def confidence_sequence(estimate: Array, var: Array, tau: float, alpha: float,
                        valid: Array | None = None) -> ConfidenceSequence:
    """Always-valid intervals over a history of ticks (arrays in time order along the last axis).

    Ticks where ``valid`` is False (too few units, undefined estimate) report (-inf, inf)
    and p = 1 and do not enter the running intersection.
    """
    est = np.atleast_1d(np.asarray(estimate, dtype=np.float64))
    v = np.atleast_1d(np.asarray(var, dtype=np.float64))
    ok = np.isfinite(est) & np.isfinite(v) & (v > 0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    h = halfwidth(np.where(ok, v, 1.0), tau, alpha)
    lo = np.where(ok, est - h, -np.inf)
    hi = np.where(ok, est + h, np.inf)
    llr = log_likelihood_ratio(np.where(ok, est, 0.0), np.where(ok, v, 1.0), tau)
    p = np.where(ok, np.minimum(1.0, np.exp(-llr)), 1.0)
    return ConfidenceSequence(lo=np.maximum.accumulate(lo, axis=-1), hi=np.minimum.accumulate(hi, axis=-1),
                              p_value=np.minimum.accumulate(p, axis=-1))
