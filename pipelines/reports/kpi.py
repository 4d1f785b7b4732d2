"""The experiment KPI report: decision, lift with intervals over time, SRM, guardrail state."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from models.experiments.config import LOWER_IS_BETTER, ExperimentConfig
from models.experiments.guardrails import Decision, breach_ticks, evaluate
from models.experiments.report import KpiReport
from pipelines.reports.html import Section, badge, esc, figure, render_page, write_page

logger = logging.getLogger(__name__)

COLORS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f")


def _frame_time(ax, t: pd.DatetimeIndex) -> None:  # noqa: ANN001 - a matplotlib Axes
    """Frame the x axis on the ticks: with one tick (or a few close ones) matplotlib's automatic
    date range spans days to years; half a tick of margin on each side, at least a minute."""
    if not len(t):
        return
    step = (t[1:] - t[:-1]).min() if len(t) > 1 else pd.Timedelta(minutes=5)
    pad = max(step / 2, (t[-1] - t[0]) * 0.02, pd.Timedelta(minutes=1))
    ax.set_xlim(t[0] - pad, t[-1] + pad)


def _lift_figure(report: KpiReport, config: ExperimentConfig, metrics: list[str]):  # noqa: ANN202
    fig = figure(10.0, 3.2 * len(metrics))
    axes = fig.subplots(len(metrics), 1, squeeze=False, sharex=True)[:, 0]
    thresholds = {g.metric: (g.max_relative_drop if g.metric in LOWER_IS_BETTER else -g.max_relative_drop)
                  for g in config.guardrails}
    t = report.tick_times.tz_convert(None)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, v in enumerate(config.treatments):
            s = report.series[(metric, v)]
            ok = s.valid
            c = COLORS[i % len(COLORS)]
            if not ok.any():
                continue
            ax.fill_between(t[ok], 100 * s.lift.rel_lo[ok], 100 * s.lift.rel_hi[ok], color=c, alpha=0.18,
                            label=f"{v}: 95 % CI (fixed horizon)")
            ax.plot(t[ok], 100 * np.expm1(s.sequential.lo[ok]), color=c, ls="--", lw=1.2,
                    label=f"{v}: always-valid interval")
            ax.plot(t[ok], 100 * np.expm1(s.sequential.hi[ok]), color=c, ls="--", lw=1.2)
            ax.plot(t[ok], 100 * s.lift.rel[ok], color=c, lw=2, label=f"{v}: lift")
        ax.axhline(0, color="#444", lw=0.8)
        if metric in thresholds:
            ax.axhline(100 * thresholds[metric], color="#c62828", lw=1, ls=":", label="guardrail bound")
        lo = [100 * report.series[(metric, v)].lift.rel_lo[report.series[(metric, v)].valid] for v in config.treatments]
        hi = [100 * report.series[(metric, v)].lift.rel_hi[report.series[(metric, v)].valid] for v in config.treatments]
        span = np.concatenate(lo + hi) if any(x.size for x in lo) else np.array([-10.0, 10.0])
        pad = max(2.0, float(np.nanmax(np.abs(span[np.isfinite(span)])) if np.isfinite(span).any() else 10.0))
        ax.set_ylim(-1.6 * pad, 1.6 * pad)
        ax.set_ylabel(f"{metric}\nrelative lift (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    _frame_time(axes[-1], t)
    axes[-1].set_xlabel("time (UTC), cumulative by entry tick")
    fig.suptitle(f"Lift against control ({report.control}) with 95 % intervals")
    return fig


def _srm_figure(report: KpiReport, config: ExperimentConfig):  # noqa: ANN202
    fig = figure(10.0, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    names = list(report.variants)
    obs = np.array(report.srm.observed, dtype=float)
    total = max(obs.sum(), 1.0)
    x = np.arange(len(names))
    ax1.bar(x - 0.2, 100 * obs / total, 0.4, label="observed", color="#1565c0")
    ax1.bar(x + 0.2, [100 * config.variant(n).share for n in names], 0.4, label="configured", color="#90a4ae")
    ax1.set_xticks(x, names)
    ax1.set_ylabel("share of units (%)")
    ax1.set_title(f"Sample ratio: chi2 {report.srm.chi2:.2f}, p {report.srm.p_value:.3g}")
    ax1.legend(fontsize=8)
    t = report.tick_times.tz_convert(None)
    ax2.semilogy(t, np.maximum(report.srm_p_history, 1e-300), color="#1565c0")
    ax2.axhline(config.srm_alpha, color="#c62828", ls=":", label=f"alarm p < {config.srm_alpha:g}")
    ax2.set_ylim(min(1e-6, float(np.nanmin(np.maximum(report.srm_p_history, 1e-300)))) / 2, 1.5)
    _frame_time(ax2, t)
    ax2.set_title("SRM p-value over time")
    ax2.legend(fontsize=8)
    ax2.tick_params(axis="x", labelrotation=30, labelsize=7)
    return fig


def _guardrail_figure(report: KpiReport, config: ExperimentConfig):  # noqa: ANN202
    fig = figure(10.0, 3.0)
    ax = fig.subplots()
    t = report.tick_times.tz_convert(None)
    shown: list[np.ndarray] = []
    for i, g in enumerate(config.guardrails):
        thr = g.max_relative_drop if g.metric in LOWER_IS_BETTER else -g.max_relative_drop
        for j, v in enumerate(config.treatments):
            s = report.series[(g.metric, v)]
            breached, end = breach_ticks(s.lift.log_lift, s.lift.log_var, s.valid, g, config.sequential.tau)
            c = COLORS[(i * len(config.treatments) + j) % len(COLORS)]
            ok = s.valid & np.isfinite(end)
            side = "lower" if g.metric in LOWER_IS_BETTER else "upper"
            ax.plot(t[ok], 100 * np.expm1(end[ok]), color=c, label=f"{g.metric} / {v}: {side} end of the interval")
            shown.append(np.r_[100 * np.expm1(end[ok])[len(end[ok]) // 5:], 100 * thr])
            ax.axhline(100 * thr, color=c, ls=":", lw=1.5, label=f"{g.metric} bound {thr:+.0%}" if j == 0 else None)
            if breached.any():
                k = int(np.argmax(breached))
                ax.axvline(t[k], color="#c62828", lw=1.5, label=f"{g.metric} / {v}: breached")
    if shown:  # the first ticks' intervals are very wide: frame the later ones and the bounds
        vals = np.concatenate(shown)
        lo, hi = float(np.min(vals)), float(np.max(vals))
        pad = max(2.0, 0.15 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
    _frame_time(ax, t)
    ax.set_ylabel("relative lift (%)")
    ax.set_title("Guardrails: breached once the whole always-valid interval is past the bound")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def render_kpi_report(report: KpiReport, config: ExperimentConfig, decision: Decision | None = None) -> str:
    """The KPI report page of one experiment."""
    decision = decision or evaluate(report, config)
    kind = "bad" if decision.action == "rollback" else ("warn" if decision.alerts else "ok")
    head = Section("Decision", [badge(decision.action.upper(), kind)]
                   + [esc(r) for r in decision.reasons] + [f"alert: {esc(a)}" for a in decision.alerts])
    kpis = pd.DataFrame([{"metric": m, **{v: f"{val:.4g} [{lo:.4g}, {hi:.4g}]" for v, (val, lo, hi) in per.items()}}
                         for m, per in report.values.items()])
    lifts = report.lift_table()
    lifts = lifts[["metric", "variant", "rel", "rel_lo", "rel_hi", "seq_rel_lo", "seq_rel_hi", "p_value",
                   "seq_p_value", "variance_reduction"]].rename(columns={
                       "rel": "lift", "rel_lo": "95% lo", "rel_hi": "95% hi", "seq_rel_lo": "always-valid lo",
                       "seq_rel_hi": "always-valid hi", "seq_p_value": "always-valid p", "variance_reduction": "CUPED var. cut"})
    paragraphs = [f"Units: {esc(', '.join(f'{v} {n:,}' for v, n in report.n_units.items()))}."]
    for v, sizes in report.sample_size.items():
        have = report.n_units[report.control] + report.n_units[v]
        paragraphs.append(
            f"{esc(v)}: a {config.mde:.0%} relative change in {esc(report.primary_metric)} at "
            f"{config.power:.0%} power needs {sizes['fixed'].total:,} units (fixed horizon, one look) or "
            f"{sizes['sequential'].total:,} (always-valid, look at every tick); it has {have:,} "
            f"({have / sizes['sequential'].total:.0%} of the latter).")
    paragraphs.append('<span class="note">Intervals: delta method (ratio metrics linearised per unit); relative '
                      "lift on the log scale; always-valid intervals are a normal-mixture confidence sequence "
                      f"(mSPRT, tau {config.sequential.tau:g}), safe to read at every tick.</span>")
    summary = Section("KPIs per variant (95 % CI)", paragraphs, tables=[kpis, lifts])
    metrics = [report.primary_metric] + [g.metric for g in config.guardrails if g.metric != report.primary_metric]
    others = [m for m in report.values if m not in metrics]
    lift = Section("Lift over time", plots=[("lift", _lift_figure(report, config, metrics)),
                                            ("lift_other", _lift_figure(report, config, others))])
    srm = Section("Sample ratio mismatch", plots=[("srm", _srm_figure(report, config))])
    states = pd.DataFrame([{"metric": g.metric, "variant": g.variant, "state": g.state,
                            "bound": "" if g.bound is None else f"{g.bound:+.2%}", "threshold": f"{g.threshold:+.1%}",
                            "first breach tick": "" if g.first_breach_tick is None else g.first_breach_tick}
                           for g in decision.guardrails])
    guard = Section("Guardrails", plots=[("guardrails", _guardrail_figure(report, config))] if config.guardrails else [],
                    tables=[states] if len(states) else [],
                    paragraphs=[] if config.guardrails else ["No guardrails configured."])
    quarantine = Section("Quarantined rows", [esc(f"{k}: {n:,}") for k, n in report.quarantine.items()] or ["none"])
    return render_page(f"Experiment {report.experiment_id}", f"tenant {report.tenant} · unit {report.unit} · "
                       f"{len(report.tick_times)} ticks to {report.tick_times[-1]:%Y-%m-%d %H:%M} UTC",
                       [head, summary, lift, srm, guard, quarantine])


def write_kpi_report(report: KpiReport, config: ExperimentConfig, path: str | os.PathLike[str],
                     decision: Decision | None = None) -> Path:
    return write_page(render_kpi_report(report, config, decision), path)
