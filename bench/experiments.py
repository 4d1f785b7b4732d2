"""Experiment statistics against the truth: A/A false positives, power, coverage, CUPED, SRM, guardrail.

``python -m bench.experiments [--aa 1000] [--power 1000] [--quick] [--report PATH]``

Every figure comes from the simulator in ``models.experiments.simulator``, whose true lift is
known, analysed by the same functions the KPI report uses (``report.compare_history``:
delta-method CIs, CUPED on the pre-period conversions, the normal-mixture confidence
sequence, ``guardrails.breach_ticks``). Steps:

1. A pilot A/A experiment goes through the whole log path (``simulator.to_logs`` ->
   ``report.kpi_report``); the sample size its report says the experiment needs (fixed
   horizon and sequential, 5 % relative MDE on conversion, 80 % power) sets the horizon.
2. A/A runs: the fixed-horizon CI at the fixed sample size (false-positive rate), the
   always-valid interval looked at every tick up to the sequential size, and the PEER:
   the same fixed-horizon test peeked at every tick (the naive practice). Ratio peer/ours.
3. Runs with a true +5 % conversion lift: power at the report's sample sizes, and CI coverage
   of the true lift.
4. SRM: the chi-square check on a split that loses 2 % of the treatment's sessions from the
   log (a redirect or bot filter eating one arm), and its false-alarm rate on the balanced A/A runs.
5. Guardrail: a variant with a true -10 % conversion, evaluated at every tick with the
   "conversion must not drop more than 2 % at 95 %" guardrail; the tick it is rolled back
   against the tick at which the harm is detectable (80 % power of the guardrail's own
   always-valid interval).
6. Live guardrail (``--live-runs``, 2 by default; ``bench.experiments_live``): the real HTTP app
   on a private Ray/Serve/Redis stack with 2 replicas, simulated visitors, a harmful variant, the
   refresh loop's per-tick check every 3 s: rollback tick vs detectable tick, seconds until every
   replica served control, and the 5xx answered during the switch.

Rates are printed with their binomial standard error. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.experiments.assignment import Assigner
from models.experiments.config import ExperimentConfig
from models.experiments.guardrails import breach_ticks, detectable_units
from models.experiments.report import KpiReport, Series, compare_history, kpi_report
from models.experiments.simulator import Arm, VisitorModel, simulate_experiment, to_logs
from models.experiments.stats import Moments

MDE = 0.05
HARM = -0.10
LOG_LOSS = 0.02  # share of the treatment's sessions missing from the log in the SRM runs
TICK_SECONDS = 300.0


def _config() -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "experiment_id": "bench", "salt": "b1", "mde": MDE,
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "model", "policy": "model", "share": 0.5}],
        "guardrails": [{"metric": "conversion", "max_relative_drop": 0.02, "confidence": 0.95}],
    })


def _rate(hits: np.ndarray) -> tuple[float, float]:
    p = float(np.mean(hits))
    return p, math.sqrt(max(p * (1 - p), 1e-12) / len(hits))


def _series(sim_arm: np.ndarray, tick: np.ndarray, cols: dict[str, np.ndarray], n_ticks: int,
            cfg: ExperimentConfig) -> tuple[Series, Series]:
    """Conversion lift over the ticks, with CUPED (what the report uses) and without."""
    m = [Moments.cumulative(cols["converted"][sim_arm == a], None, cols["pre_converted"][sim_arm == a],
                            tick[sim_arm == a], n_ticks) for a in (0, 1)]
    kw = dict(alpha=cfg.alpha, tau=cfg.sequential.tau, min_units=cfg.sequential.min_units)
    return compare_history(m[0], m[1], cuped=True, **kw), compare_history(m[0], m[1], cuped=False, **kw)  # type: ignore[arg-type]


@dataclass
class Batch:
    fixed_sig: np.ndarray        # fixed-horizon CI excludes 0 at the fixed sample size
    fixed_covers: np.ndarray     # ... and covers the true lift
    naive_any: np.ndarray        # fixed-horizon CI excludes 0 at some tick (peeking)
    seq_any: np.ndarray          # always-valid interval excludes 0 at some tick
    seq_positive: np.ndarray     # ... and on the positive side
    seq_covers: np.ndarray       # always-valid interval covers the truth at every tick
    srm_alarm: np.ndarray
    guard_breach: np.ndarray     # first tick the guardrail is breached (-1: never)
    vr: np.ndarray               # CUPED variance reduction at the horizon
    lift_cuped: np.ndarray
    lift_plain: np.ndarray


def run_batch(model: VisitorModel, cfg: ExperimentConfig, lift: float, reps: int, n_units: int, n_ticks: int,
              fixed_tick: int, rng: np.random.Generator, log_loss: dict[int, float] | None = None) -> Batch:
    arms = (Arm("control", 0.5, 1.0), Arm("model", 0.5, 1.0 + lift))
    truth = math.log1p(lift)
    guard = cfg.guardrails[0]
    out: dict[str, list[object]] = {k: [] for k in Batch.__dataclass_fields__}
    from models.experiments.stats import srm_test
    for _ in range(reps):
        sim = simulate_experiment(model, arms, n_units, n_ticks, rng, log_loss=log_loss, conversion_only=True)
        s, plain = _series(sim.arm, sim.tick, sim.columns, n_ticks, cfg)
        lf, sq, ok = s.lift, s.sequential, s.valid
        excl = ok & ((lf.rel_lo > 0) | (lf.rel_hi < 0))
        out["fixed_sig"].append(bool(excl[fixed_tick]))
        out["fixed_covers"].append(bool(lf.rel_lo[fixed_tick] <= lift <= lf.rel_hi[fixed_tick]))
        out["naive_any"].append(bool(excl.any()))
        out["seq_any"].append(bool(sq.excludes_zero.any()))
        out["seq_positive"].append(bool((sq.lo > 0).any()))
        out["seq_covers"].append(bool(((sq.lo <= truth) & (truth <= sq.hi)).all()))
        counts = np.bincount(sim.arm, minlength=2)
        out["srm_alarm"].append(srm_test(counts, [0.5, 0.5], cfg.srm_alpha).alarm)
        breached, _ = breach_ticks(lf.log_lift, lf.log_var, ok, guard, cfg.sequential.tau)
        out["guard_breach"].append(int(np.argmax(breached)) if breached.any() else -1)
        out["vr"].append(float(s.variance_reduction[-1]))
        out["lift_cuped"].append(float(lf.log_lift[fixed_tick]))
        out["lift_plain"].append(float(plain.lift.log_lift[fixed_tick]))
    return Batch(**{k: np.asarray(v) for k, v in out.items()})  # type: ignore[arg-type]


def pilot(model: VisitorModel, cfg: ExperimentConfig, n: int, rng: np.random.Generator) -> KpiReport:
    sim = simulate_experiment(model, (Arm("control", 0.5), Arm("model", 0.5)), n, 48, rng)
    exp, outc, pre = to_logs(sim, tenant="default", experiment_id=cfg.experiment_id,
                             start=pd.Timestamp("2026-12-01", tz="UTC"), tick_seconds=TICK_SECONDS, rng=rng)
    return kpi_report(exp, outc, cfg, pre_period=pre)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aa", type=int, default=1000, help="A/A experiments")
    ap.add_argument("--power", type=int, default=1000, help="experiments with a true +5 %% lift")
    ap.add_argument("--srm", type=int, default=200, help="experiments with a skewed split")
    ap.add_argument("--guardrail", type=int, default=200, help="experiments with a harmful variant")
    ap.add_argument("--ticks", type=int, default=96, help="5-minute ticks up to the sequential sample size")
    ap.add_argument("--pilot", type=int, default=100_000, help="sessions in the pilot A/A (full log path)")
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--quick", action="store_true", help="100/100/50/50 experiments (a smoke run)")
    ap.add_argument("--report", type=Path, default=None, help="write the pilot's HTML KPI report here")
    ap.add_argument("--live-runs", type=int, default=2, help="guardrail runs against the live HTTP app "
                    "(bench.experiments_live: private Ray, Serve, Redis); 0 skips them")
    args = ap.parse_args()
    if args.quick:
        args.aa, args.power, args.srm, args.guardrail = 100, 100, 50, 50
    t_start = time.time()
    load0 = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    model, cfg = VisitorModel(), _config()

    # assignment speed (one id at a time, as the hot path calls it)
    a = Assigner(cfg)
    assign_us = min(timeit.repeat(lambda: a.assign("session-0123456789"), number=20_000, repeat=5)) / 20_000 * 1e6
    print(f"assignment: {assign_us:.2f} us per call (blake2b-64, keyed by experiment and salt)")

    rep = pilot(model, cfg, args.pilot, rng)
    size = rep.sample_size["model"]
    n_fixed, n_seq = size["fixed"].total, size["sequential"].total
    vr_pilot = {m: float(rep.series[(m, "model")].variance_reduction[-1]) for m in ("conversion", "revenue_per_session", "ctr")}
    p_pilot = rep.values["conversion"]["control"][0]
    print(f"pilot A/A through the log path: {sum(rep.n_units.values()):,} sessions, conversion {p_pilot:.4f}; "
          f"CUPED variance reduction conversion {vr_pilot['conversion']:.1%}, revenue/session "
          f"{vr_pilot['revenue_per_session']:.1%}, CTR {vr_pilot['ctr']:.1%}")
    print(f"the report says a {MDE:.0%} relative conversion MDE at 80 % power needs {n_fixed:,} sessions "
          f"(fixed horizon) or {n_seq:,} (always-valid, peeking allowed)")
    if args.report is not None:
        from pipelines.reports.kpi import write_kpi_report

        path = write_kpi_report(rep, cfg, args.report)
        print(f"example KPI report: {path}")

    n_units, n_ticks = n_seq, args.ticks
    per_tick = n_units / n_ticks
    fixed_tick = min(n_ticks - 1, math.ceil(n_fixed / per_tick) - 1)
    print(f"horizon {n_units:,} sessions over {n_ticks} ticks ({per_tick:,.0f} a tick); fixed-horizon look at tick {fixed_tick}")

    t0 = time.time()
    aa = run_batch(model, cfg, 0.0, args.aa, n_units, n_ticks, fixed_tick, rng)
    t_aa = time.time() - t0
    pw = run_batch(model, cfg, MDE, args.power, n_units, n_ticks, fixed_tick, rng)
    skew = run_batch(model, cfg, 0.0, args.srm, n_units, n_ticks, fixed_tick, rng, log_loss={1: LOG_LOSS})
    harm = run_batch(model, cfg, HARM, args.guardrail, n_units, n_ticks, fixed_tick, rng)

    fpr_fixed, fpr_fixed_se = _rate(aa.fixed_sig)
    fpr_seq, fpr_seq_se = _rate(aa.seq_any)
    fpr_naive, fpr_naive_se = _rate(aa.naive_any)
    pow_seq, pow_seq_se = _rate(pw.seq_positive)
    pow_fixed, pow_fixed_se = _rate(pw.fixed_sig & (pw.lift_cuped > 0))
    cov_fixed, cov_fixed_se = _rate(pw.fixed_covers)
    cov_aa, cov_aa_se = _rate(aa.fixed_covers)
    cov_seq, cov_seq_se = _rate(pw.seq_covers)
    srm_det, srm_det_se = _rate(skew.srm_alarm)
    srm_fa, srm_fa_se = _rate(aa.srm_alarm)
    false_rb, false_rb_se = _rate(aa.guard_breach >= 0)
    vr_model = float(np.mean(aa.vr))
    vr_empirical = 1.0 - float(np.var(aa.lift_cuped) / np.var(aa.lift_plain))
    ratio = fpr_naive / max(fpr_seq, 1.0 / args.aa)

    guard = cfg.guardrails[0]
    n_detect = detectable_units(model.conversion, HARM, guard, cfg.sequential.tau, vr=vr_model)
    detect_tick = math.ceil(n_detect / per_tick) - 1
    rb = harm.guard_breach
    rolled = rb >= 0
    on_time, on_time_se = _rate(rolled & (rb <= detect_tick + 3))
    rb_med = float(np.median(np.where(rolled, rb, n_ticks)))
    rb_p90 = float(np.percentile(np.where(rolled, rb, n_ticks), 90))

    def line(name: str, p: float, se: float, goal: str) -> None:
        print(f"  {name:<58} {p:7.2%} ± {se:.2%}   goal {goal}")

    print(f"A/A, {args.aa} experiments ({t_aa:.0f} s):")
    line("false positives, fixed horizon at its sample size", fpr_fixed, fpr_fixed_se, "5 % ± 2 %")
    line("false positives, always-valid interval peeked every tick", fpr_seq, fpr_seq_se, "<= 7 %")
    line("PEER: fixed-horizon test peeked every tick", fpr_naive, fpr_naive_se, "(inflated)")
    print(f"  peer / ours false-positive ratio under peeking: {ratio:.1f}x")
    line("CI coverage of the true lift (0)", cov_aa, cov_aa_se, "93-97 %")
    line("guardrail false rollbacks", false_rb, false_rb_se, "low")
    print(f"true +{MDE:.0%} conversion lift, {args.power} experiments:")
    line("power, always-valid interval, peeking, at the sequential size", pow_seq, pow_seq_se, ">= 80 %")
    line("power, fixed horizon at the fixed size", pow_fixed, pow_fixed_se, "~80 % by design")
    line("CI coverage of the true lift, fixed horizon", cov_fixed, cov_fixed_se, "93-97 %")
    line("always-valid coverage at every tick at once", cov_seq, cov_seq_se, ">= 95 %")
    print(f"CUPED on conversion (pre-period conversions): variance reduction {vr_model:.1%} (reported), "
          f"{vr_empirical:.1%} (empirical, A/A lift variance)")
    print(f"SRM, {args.srm} experiments losing {LOG_LOSS:.0%} of the treatment's sessions from the log:")
    line("SRM alarms (p < 0.001)", srm_det, srm_det_se, "high")
    line("SRM false alarms on the balanced A/A runs", srm_fa, srm_fa_se, "~0.1 %")
    print(f"guardrail (conversion, max drop 2 %, 95 %), {args.guardrail} experiments with a true {HARM:+.0%}:")
    print(f"  detectable (80 % power) at tick {detect_tick} ({n_detect:,.0f} sessions); rolled back in "
          f"{rolled.mean():.1%} of runs, median tick {rb_med:.0f}, 90th percentile {rb_p90:.0f}")
    line("rolled back within 3 ticks of the detectable tick", on_time, on_time_se, "all but noise")
    live: dict[str, object] = {}
    if args.live_runs:
        from bench.experiments_live import run_live

        live = run_live(args.live_runs)
    runtime = time.time() - t_start
    load1 = os.getloadavg()[0]
    print(f"runtime {runtime:.0f} s, load average {load0:.1f} -> {load1:.1f}")
    result = {
        "bench": "experiments", "aa_runs": args.aa, "power_runs": args.power,
        "aa_fpr_fixed": round(fpr_fixed, 4), "aa_fpr_fixed_se": round(fpr_fixed_se, 4),
        "aa_fpr_sequential_peeking": round(fpr_seq, 4), "aa_fpr_sequential_peeking_se": round(fpr_seq_se, 4),
        "peer_naive_peeking_fpr": round(fpr_naive, 4), "peer_naive_peeking_fpr_se": round(fpr_naive_se, 4),
        "peer_over_ours_fpr_ratio": round(ratio, 2),
        "power_sequential": round(pow_seq, 4), "power_sequential_se": round(pow_seq_se, 4),
        "power_fixed": round(pow_fixed, 4), "power_fixed_se": round(pow_fixed_se, 4),
        "required_sessions_fixed": n_fixed, "required_sessions_sequential": n_seq,
        "coverage_fixed": round(cov_fixed, 4), "coverage_fixed_se": round(cov_fixed_se, 4),
        "coverage_aa": round(cov_aa, 4), "coverage_sequential_all_ticks": round(cov_seq, 4),
        "cuped_variance_reduction_conversion": round(vr_model, 4),
        "cuped_variance_reduction_conversion_empirical": round(vr_empirical, 4),
        "cuped_variance_reduction_revenue_per_session": round(vr_pilot["revenue_per_session"], 4),
        "srm_detection_rate": round(srm_det, 4), "srm_false_alarm_rate": round(srm_fa, 4),
        "guardrail_detectable_tick": detect_tick, "guardrail_rollback_tick_median": rb_med,
        "guardrail_rollback_tick_p90": rb_p90, "guardrail_on_time_rate": round(on_time, 4),
        "guardrail_false_rollback_rate": round(false_rb, 4),
        **live, "assign_us": round(assign_us, 3), "runtime_s": round(runtime, 1), "load_avg": [round(load0, 1), round(load1, 1)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
