"""Experiment statistics on inputs computed by hand: delta method, SRM, mSPRT, CUPED, sample size."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from models.experiments.sequential import confidence_sequence, halfwidth, log_likelihood_ratio
from models.experiments.stats import (
    Moments,
    compare,
    cuped_theta,
    estimate,
    pooled_mean_x,
    required_sample_size,
    srm_test,
    variance_reduction,
)

Z975 = 1.959963984540054

# control: y = [1, 0, 2, 1] over d = [2, 1, 2, 1]; treatment: y = [3, 1, 2] over d = [2, 2, 1]
C_Y, C_D = [1, 0, 2, 1], [2, 1, 2, 1]
T_Y, T_D = [3, 1, 2], [2, 2, 1]


def test_delta_method_ratio_variance_by_hand() -> None:
    # R = 4/6; s_yy = 2/3, s_dd = 1/3, s_yd = 1/3, mean d = 3/2
    # Var(L) = (2/3 - 2 (2/3)(1/3) + (4/9)(1/3)) / (9/4) = (10/27)(4/9); Var(R) = Var(L) / 4 = 10/243
    e = estimate(Moments.of(C_Y, C_D))
    assert float(e.value) == pytest.approx(2 / 3)
    assert float(e.var) == pytest.approx(10 / 243)
    # R = 6/5; s_yy = 1, s_dd = 1/3, s_yd = 0, mean d = 5/3: Var(L) = (1 + 1.44/3) * 9/25 = 0.5328
    t = estimate(Moments.of(T_Y, T_D))
    assert float(t.value) == pytest.approx(1.2)
    assert float(t.var) == pytest.approx(0.5328 / 3)


def test_delta_method_reduces_to_mean_variance_when_d_is_one() -> None:
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    e = estimate(Moments.of(y))
    assert float(e.value) == pytest.approx(0.6)
    assert float(e.var) == pytest.approx(y.var(ddof=1) / 5)


def test_lift_confidence_intervals_by_hand() -> None:
    lift = compare(estimate(Moments.of(C_Y, C_D)), estimate(Moments.of(T_Y, T_D)), alpha=0.05)
    se = math.sqrt(10 / 243 + 0.1776)
    assert float(lift.abs) == pytest.approx(1.2 - 2 / 3)
    assert float(lift.abs_lo) == pytest.approx(1.2 - 2 / 3 - Z975 * se)
    assert float(lift.abs_hi) == pytest.approx(1.2 - 2 / 3 + Z975 * se)
    # relative lift on the log scale: log(1.8), Var = 0.1776/1.2^2 + (10/243)/(2/3)^2
    lse = math.sqrt(0.1776 / 1.44 + (10 / 243) / (4 / 9))
    assert float(lift.rel) == pytest.approx(0.8)
    assert float(lift.rel_lo) == pytest.approx(math.exp(math.log(1.8) - Z975 * lse) - 1)
    assert float(lift.rel_hi) == pytest.approx(math.exp(math.log(1.8) + Z975 * lse) - 1)
    assert float(lift.p_value) == pytest.approx(2 * sps.norm.sf(math.log(1.8) / lse))
    assert float(lift.rel_lo) > -1.0  # the log-scale interval never passes -100 %


def test_cumulative_moments_equal_per_tick_snapshots() -> None:
    rng = np.random.default_rng(0)
    y, d, x = rng.poisson(2, 50), rng.poisson(3, 50) + 1, rng.normal(size=50)
    tick = np.sort(rng.integers(0, 5, 50))
    hist = Moments.cumulative(y, d, x, tick, 6)
    for t in range(6):
        sel = tick <= t
        snap = Moments.of(y[sel], d[sel], x[sel])
        for name in ("n", "sy", "sd", "syy", "sdd", "syd", "sx", "sxx", "sxy", "sxd"):
            assert getattr(hist, name)[t] == pytest.approx(float(getattr(snap, name)))
    with pytest.raises(ValueError, match="tick indices"):
        Moments.cumulative(y, d, x, tick + 10, 6)


def test_srm_chi_square_by_hand() -> None:
    # 5100 vs 4900 at 50/50: chi2 = 2 * 100^2 / 5000 = 4, p = P(|Z| > 2)
    s = srm_test([5100, 4900], [0.5, 0.5], alpha=0.05)
    assert s.chi2 == pytest.approx(4.0)
    assert s.p_value == pytest.approx(2 * sps.norm.sf(2.0))
    assert s.alarm
    assert not srm_test([5100, 4900], [0.5, 0.5], alpha=0.001).alarm
    # three arms, 2 df: chi2 = (100 + 0 + 100) / 20 = 10, p = exp(-10 / 2)
    s3 = srm_test([10, 20, 30], [1, 1, 1])
    assert s3.chi2 == pytest.approx(10.0)
    assert s3.p_value == pytest.approx(math.exp(-5.0))
    assert srm_test([0, 0], [0.5, 0.5]).p_value == 1.0
    with pytest.raises(ValueError, match="one entry per variant"):
        srm_test([1, 2, 3], [0.5, 0.5])


def test_msprt_boundary_by_hand() -> None:
    # V = 1, tau = 1, alpha = 0.05: h = sqrt(2 (2 ln 20 + ln 2)), and Lambda(h) = 1/alpha exactly
    h = float(halfwidth(1.0, 1.0, 0.05))
    assert h == pytest.approx(math.sqrt(2 * (2 * math.log(20) + math.log(2))))
    assert float(log_likelihood_ratio(h, 1.0, 1.0)) == pytest.approx(math.log(20))
    assert float(log_likelihood_ratio(0.0, 1.0, 1.0)) == pytest.approx(0.5 * math.log(0.5))
    # the always-valid interval is wider than the fixed-horizon one at every variance
    v = np.logspace(-8, 0, 20)
    assert (halfwidth(v, 0.05, 0.05) > Z975 * np.sqrt(v)).all()


def test_confidence_sequence_running_intersection_and_p_value() -> None:
    est = np.array([0.0, 5.0, 0.1, -9.0])
    var = np.array([1.0, 1.0, 0.01, 1.0])
    valid = np.array([False, True, True, True])
    cs = confidence_sequence(est, var, tau=1.0, alpha=0.05, valid=valid)
    h1, h01 = float(halfwidth(1.0, 1.0, 0.05)), float(halfwidth(0.01, 1.0, 0.05))
    assert np.isinf(cs.lo[0]) and cs.p_value[0] == 1.0
    assert cs.lo[1] == pytest.approx(5.0 - h1) and cs.hi[1] == pytest.approx(5.0 + h1)
    assert cs.lo[2] == pytest.approx(max(5.0 - h1, 0.1 - h01))  # running intersection
    assert cs.hi[3] == pytest.approx(min(5.0 + h1, 0.1 + h01, -9.0 + h1))
    assert (np.diff(cs.p_value) <= 0).all()  # running minimum
    assert cs.p_value[1] == pytest.approx(math.exp(-float(log_likelihood_ratio(5.0, 1.0, 1.0))))


def test_cuped_theta_by_hand() -> None:
    # one arm: cov(x, y) = 4/3, var(x) = 5/3, theta = 0.8, rho^2 = 0.64
    a = Moments.of([1, 2, 3, 4], None, [1, 3, 2, 4])
    assert float(cuped_theta([a])) == pytest.approx(0.8)
    assert float(variance_reduction([a])) == pytest.approx(0.64)
    adj = estimate(a, 0.8, pooled_mean_x([a]))
    assert float(adj.var) == pytest.approx((5 / 3 - (4 / 3) ** 2 / (5 / 3)) / 4)
    # pooled within arms: arm 2 has cov 1.5, var(x) 1 -> (3 * 4/3 + 2 * 1.5) / (3 * 5/3 + 2 * 1) = 1
    b = Moments.of([2, 2, 5], None, [0, 1, 2])
    assert float(cuped_theta([a, b])) == pytest.approx(1.0)
    # the adjustment shifts each arm by theta * (its mean x - the pooled mean x)
    center = float(pooled_mean_x([a, b]))
    assert center == pytest.approx(13 / 7)
    assert float(estimate(b, 1.0, center).value) == pytest.approx(3.0 - (1.0 - 13 / 7))
    # no covariate variance: theta 0, nothing changes
    assert float(cuped_theta([Moments.of([1, 2, 3])])) == 0.0


def test_cuped_keeps_estimate_unbiased_and_cuts_variance() -> None:
    rng = np.random.default_rng(3)
    diffs_plain, diffs_cuped = [], []
    for _ in range(300):
        x = rng.normal(size=400)
        y = x + rng.normal(size=400)
        arm = rng.random(400) < 0.5
        c, t = Moments.of(y[~arm], None, x[~arm]), Moments.of(y[arm] + 0.1, None, x[arm])
        theta, center = cuped_theta([c, t]), pooled_mean_x([c, t])
        diffs_plain.append(float(estimate(t).value - estimate(c).value))
        diffs_cuped.append(float(estimate(t, theta, center).value - estimate(c, theta, center).value))
    assert np.mean(diffs_cuped) == pytest.approx(0.1, abs=0.02)
    assert np.var(diffs_cuped) < 0.6 * np.var(diffs_plain)  # rho^2 = 0.5


def test_required_sample_size_fixed_horizon_by_hand() -> None:
    # mean 0.1, var 0.09, mde 10 %, 50/50, same cv in both arms: c = 2 * 9 / 0.5 = 36
    s = required_sample_size(0.1, 0.09, 0.1, alpha=0.05, power=0.8)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert s.total == math.ceil(z ** 2 * 36 / math.log(1.1) ** 2)
    assert s.control == s.treatment == math.ceil(s.total / 2)
    assert not s.sequential
    uneven = required_sample_size(0.1, 0.09, 0.1, share_control=0.8, share_treatment=0.2)
    assert uneven.total == math.ceil(z ** 2 * 9 * (1 / 0.8 + 1 / 0.2) / math.log(1.1) ** 2)
    with pytest.raises(ValueError, match="mde"):
        required_sample_size(0.1, 0.09, 0.0)


def test_required_sample_size_sequential_solves_its_equation() -> None:
    s = required_sample_size(0.1, 0.09, 0.1, tau=0.1)
    fixed = required_sample_size(0.1, 0.09, 0.1)
    assert s.sequential and s.total > fixed.total
    v = 36 / s.total  # Var(log lift) at that size: half-width + z_0.8 se reaches log(1.1)
    lhs = float(halfwidth(v, 0.1, 0.05)) + sps.norm.ppf(0.8) * math.sqrt(v)
    assert lhs == pytest.approx(math.log(1.1), rel=1e-3)
