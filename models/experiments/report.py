"""The KPI report: per-variant KPIs, lifts with fixed-horizon and always-valid intervals, SRM,
CUPED and the sample size the experiment needs. Pure: logs in, a :class:`KpiReport` out.

``kpi_report(exposures, outcomes, config, pre_period=None)`` is what ``jobs.kpi_report`` and
the refresh loop call; ``guardrails.evaluate(report, config)`` turns it into a decision.

The history is cumulative by entry cohort: the value at tick ``t`` uses the units whose first
exposure fell at or before ``t``, each with its outcomes as known when the report runs. The
last tick is therefore exactly the snapshot over all units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from models.experiments.config import METRICS, ExperimentConfig
from models.experiments.sequential import ConfidenceSequence, confidence_sequence
from models.experiments.stats import (
    Lift,
    Moments,
    SampleSize,
    Srm,
    compare,
    cuped_theta,
    estimate,
    pooled_mean_x,
    required_sample_size,
    srm_test,
)
from models.experiments.units import METRIC_COLUMNS, unit_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Series:
    """One metric of one treatment against control, over the ticks of the history."""

    metric: str
    variant: str
    lift: Lift
    sequential: ConfidenceSequence
    valid: np.ndarray
    n_control: np.ndarray
    n_treatment: np.ndarray
    cuped: bool
    variance_reduction: np.ndarray


def compare_history(control: Moments, treatment: Moments, *, alpha: float, tau: float, min_units: int,
                    cuped: bool = False, metric: str = "", variant: str = "") -> Series:
    """Lift of ``treatment`` over ``control`` at every tick of two cumulative histories."""
    arms = (control, treatment)
    if cuped:
        theta, center = cuped_theta(arms), pooled_mean_x(arms)
    else:
        theta, center = np.zeros_like(control.n), None
    ec = estimate(control, theta, center)
    et = estimate(treatment, theta, center)
    lift = compare(ec, et, alpha)
    valid = (control.n >= min_units) & (treatment.n >= min_units) & (lift.control > 0) & (lift.treatment > 0)
    seq = confidence_sequence(lift.log_lift, lift.log_var, tau, alpha, valid)
    if cuped:
        plain = estimate(control).var + estimate(treatment).var
        with np.errstate(invalid="ignore", divide="ignore"):
            vr = 1.0 - (ec.var + et.var) / plain
    else:
        vr = np.zeros_like(control.n)
    return Series(metric=metric, variant=variant, lift=lift, sequential=seq, valid=valid,
                  n_control=control.n, n_treatment=treatment.n, cuped=cuped, variance_reduction=vr)


@dataclass
class KpiReport:
    """Everything the HTML report and the guardrails need; ``to_dict`` is its JSON form."""

    experiment_id: str
    tenant: str
    unit: str
    control: str
    variants: tuple[str, ...]
    tick_times: pd.DatetimeIndex
    n_units: dict[str, int]
    srm: Srm
    srm_p_history: np.ndarray
    values: dict[str, dict[str, tuple[float, float, float]]]
    series: dict[tuple[str, str], Series]
    sample_size: dict[str, dict[str, SampleSize]]
    primary_metric: str
    quarantine: dict[str, int] = field(default_factory=dict)

    def lift_table(self) -> pd.DataFrame:
        """One row per (metric, treatment) at the last tick."""
        rows = []
        for (metric, variant), s in self.series.items():
            lf, sq = s.lift, s.sequential
            rows.append({
                "metric": metric, "variant": variant, "control": float(lf.control[-1]),
                "treatment": float(lf.treatment[-1]), "abs": float(lf.abs[-1]),
                "abs_lo": float(lf.abs_lo[-1]), "abs_hi": float(lf.abs_hi[-1]), "rel": float(lf.rel[-1]),
                "rel_lo": float(lf.rel_lo[-1]), "rel_hi": float(lf.rel_hi[-1]), "p_value": float(lf.p_value[-1]),
                "seq_rel_lo": float(np.expm1(sq.lo[-1])), "seq_rel_hi": float(np.expm1(sq.hi[-1])),
                "seq_p_value": float(sq.p_value[-1]), "cuped": s.cuped,
                "variance_reduction": float(s.variance_reduction[-1]),
            })
        return pd.DataFrame(rows)

    def history_frame(self, metric: str | None = None) -> pd.DataFrame:
        """Relative lift with both intervals at every tick (long format)."""
        frames = []
        for (m, variant), s in self.series.items():
            if metric is not None and m != metric:
                continue
            frames.append(pd.DataFrame({
                "time": self.tick_times, "metric": m, "variant": variant, "rel": s.lift.rel,
                "rel_lo": s.lift.rel_lo, "rel_hi": s.lift.rel_hi, "seq_rel_lo": np.expm1(s.sequential.lo),
                "seq_rel_hi": np.expm1(s.sequential.hi), "valid": s.valid,
                "n_control": s.n_control, "n_treatment": s.n_treatment}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def to_dict(self) -> dict[str, Any]:
        table = self.lift_table().replace([np.inf, -np.inf], np.nan)
        return {
            "experiment": self.experiment_id, "tenant": self.tenant, "unit": self.unit, "control": self.control,
            "n_units": self.n_units, "ticks": len(self.tick_times),
            "srm": {"chi2": self.srm.chi2, "p_value": self.srm.p_value, "alarm": self.srm.alarm,
                    "observed": list(self.srm.observed), "expected": list(self.srm.expected)},
            "kpis": self.values,
            "lifts": [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                      for r in table.to_dict("records")],
            "sample_size": {v: {k: s.__dict__ for k, s in d.items()} for v, d in self.sample_size.items()},
            "quarantine": dict(self.quarantine),
        }


def _tick_index(times: pd.Series, start: pd.Timestamp | None, tick: timedelta,
                max_ticks: int) -> tuple[np.ndarray, pd.DatetimeIndex]:
    t0 = times.min() if start is None else pd.Timestamp(start)
    if t0.tzinfo is None:
        t0 = t0.tz_localize("UTC")
    span = (times.max() - t0) / tick if len(times) else 0.0
    step = tick * max(1, int(np.ceil((float(span) + 1) / max_ticks)))
    idx = np.floor((times - t0) / step).to_numpy(dtype=np.float64).astype(np.int64)
    idx = np.clip(idx, 0, None)
    n = int(idx.max()) + 1 if idx.size else 1
    return idx, pd.DatetimeIndex([t0 + step * (i + 1) for i in range(n)])


def report_from_units(units: pd.DataFrame, config: ExperimentConfig, *, tick: timedelta = timedelta(minutes=5),
                      start: pd.Timestamp | None = None, max_ticks: int = 500,
                      quarantine: dict[str, int] | None = None) -> KpiReport:
    """The report over a unit table (``units.unit_table`` or a simulation's rows)."""
    names = tuple(v.name for v in config.variants)
    control = config.control_name
    tick_idx, tick_times = _tick_index(units["first_time"], start, tick, max_ticks)
    n_ticks = len(tick_times)
    var_idx = units["variant"].to_numpy()
    moments: dict[str, dict[str, Moments]] = {}
    for metric in METRICS:
        num, den, cov = METRIC_COLUMNS[metric]
        has_x = cov is not None and cov in units.columns
        moments[metric] = {}
        for v in names:
            sel = var_idx == v
            sub = units.loc[sel]
            moments[metric][v] = Moments.cumulative(
                sub[num].to_numpy(), sub[den].to_numpy(), sub[cov].to_numpy() if has_x else None,
                tick_idx[sel], n_ticks)
    counts = np.stack([moments["conversion"][v].n for v in names])  # (variants, ticks)
    shares = np.array([config.variant(v).share for v in names])
    srm = srm_test(counts[:, -1].astype(int), shares, config.srm_alpha)
    srm_hist = np.array([srm_test(counts[:, t].astype(int), shares, config.srm_alpha).p_value
                         for t in range(n_ticks)])
    values: dict[str, dict[str, tuple[float, float, float]]] = {}
    series: dict[tuple[str, str], Series] = {}
    seq = config.sequential
    for metric in METRICS:
        cov = METRIC_COLUMNS[metric][2]
        cuped = cov is not None and cov in units.columns
        values[metric] = {}
        for v in names:
            e = estimate(moments[metric][v])
            half = 1.959963984540054 * float(np.sqrt(e.var[-1]))
            values[metric][v] = (float(e.value[-1]), float(e.value[-1]) - half, float(e.value[-1]) + half)
        for v in config.treatments:
            series[(metric, v)] = compare_history(
                moments[metric][control], moments[metric][v], alpha=config.alpha, tau=seq.tau,
                min_units=seq.min_units, cuped=cuped, metric=metric, variant=v)
    sizes: dict[str, dict[str, SampleSize]] = {}
    pm = moments[config.primary_metric][control]
    base_mean, base_var = float(pm.ratio[-1]), float(pm.linearized_var()[-1])
    if base_mean > 0 and base_var > 0:
        for v in config.treatments:
            s = series[(config.primary_metric, v)]
            factor = 1.0 - float(np.nan_to_num(s.variance_reduction[-1])) if s.cuped else 1.0
            kw = dict(alpha=config.alpha, power=config.power, share_control=config.variant(control).share,
                      share_treatment=config.variant(v).share)
            var = base_var * max(factor, 1e-3)
            sizes[v] = {"fixed": required_sample_size(base_mean, var, config.mde, **kw),
                        "sequential": required_sample_size(base_mean, var, config.mde, tau=seq.tau, **kw)}
    return KpiReport(
        experiment_id=config.experiment_id, tenant=config.tenant, unit=config.unit, control=control,
        variants=names, tick_times=tick_times, n_units={v: int(c) for v, c in zip(names, counts[:, -1], strict=True)},
        srm=srm, srm_p_history=srm_hist, values=values, series=series, sample_size=sizes,
        primary_metric=config.primary_metric, quarantine=dict(quarantine or {}))


def kpi_report(exposures: pd.DataFrame, outcomes: pd.DataFrame, config: ExperimentConfig, *,
               pre_period: pd.DataFrame | None = None, tick: timedelta = timedelta(minutes=5),
               start: pd.Timestamp | None = None, max_ticks: int = 500) -> KpiReport:
    """Join the logs by unit within the attribution windows and report every KPI."""
    table = unit_table(exposures, outcomes, config, pre_period)
    if table.units.empty:
        raise ValueError(f"experiment {config.experiment_id}: no valid exposures to report on "
                         f"(quarantined: {dict(table.quarantine)})")
    return report_from_units(table.units, config, tick=tick, start=start, max_ticks=max_ticks,
                             quarantine=dict(table.quarantine))
