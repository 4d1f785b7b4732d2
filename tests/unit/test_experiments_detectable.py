"""The guardrail's detectable effect: the units at which its always-valid interval has 80 % power."""

from __future__ import annotations

import numpy as np

from models.experiments.config import ExperimentConfig, Guardrail
from models.experiments.guardrails import breach_ticks, detectable_units
from models.experiments.report import compare_history
from models.experiments.simulator import Arm, VisitorModel, simulate_experiment
from models.experiments.stats import Moments


def test_more_harm_or_a_wider_prior_is_found_sooner() -> None:
    g = Guardrail(metric="conversion", max_relative_drop=0.02, confidence=0.95)
    n10, n30 = detectable_units(0.1, -0.1, g, 0.05), detectable_units(0.1, -0.3, g, 0.05)
    assert n30 < n10
    assert detectable_units(0.1, -0.5, g, 0.5) < detectable_units(0.1, -0.5, g, 0.05)
    assert detectable_units(0.3, -0.3, g, 0.05) < n30  # a higher base rate is less noisy


def test_the_guardrail_breaches_by_then_in_about_80_percent_of_runs() -> None:
    g = Guardrail(metric="conversion", max_relative_drop=0.02, confidence=0.95)
    cfg = ExperimentConfig.model_validate({"experiment_id": "e", "salt": "s", "guardrails": [g.model_dump()],
                                           "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                                                        {"name": "bad", "policy": "model", "share": 0.5}]})
    model, rng = VisitorModel(conversion=0.2), np.random.default_rng(5)
    p = 0.2 * float(model.affinity(200_000, rng).mean())  # the population's real base rate
    need = detectable_units(p, -0.3, g, cfg.sequential.tau)
    hits = []
    for _ in range(150):
        sim = simulate_experiment(model, (Arm("control", 0.5), Arm("bad", 0.5, 0.7)), int(need), 1, rng,
                                  conversion_only=True)
        m = [Moments.cumulative(sim.columns["converted"][sim.arm == a], None, None, sim.tick[sim.arm == a], 1)
             for a in (0, 1)]
        s = compare_history(m[0], m[1], alpha=0.05, tau=cfg.sequential.tau, min_units=cfg.sequential.min_units)
        breached, _ = breach_ticks(s.lift.log_lift, s.lift.log_var, s.valid, g, cfg.sequential.tau)
        hits.append(bool(breached[-1]))
    assert 0.65 < np.mean(hits) < 0.93
