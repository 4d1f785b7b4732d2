"""Guardrails: turn a KPI report into a decision (continue, or roll back to control).

A guardrail ``(metric, max_relative_drop, confidence)`` is breached for a treatment when the
always-valid ``confidence`` interval of its relative lift lies entirely below
``-max_relative_drop`` (above ``+max_relative_drop`` for bounce, where higher is worse):
with that confidence the treatment is worse than the bound, and since the interval is a
confidence sequence the loop may evaluate it at every tick without inflating false
rollbacks. An engaged kill switch rolls back regardless. A sample-ratio mismatch is
raised as an alert (the data cannot be trusted), not as a rollback.

The caller applies a rollback through ``config.rolled_back(reason)`` and the same
hot-reload path as any config change.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from models.experiments.config import LOWER_IS_BETTER, ExperimentConfig, Guardrail
from models.experiments.report import KpiReport
from models.experiments.sequential import confidence_sequence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardrailState:
    metric: str
    variant: str
    state: Literal["ok", "breached", "insufficient_data"]
    bound: float | None      # the interval's relevant end, as a relative lift
    threshold: float         # the relative lift beyond which it is harm
    first_breach_tick: int | None


@dataclass(frozen=True)
class Decision:
    action: Literal["continue", "rollback"]
    reasons: tuple[str, ...]
    guardrails: tuple[GuardrailState, ...]
    alerts: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reasons": list(self.reasons), "alerts": list(self.alerts),
                "guardrails": [asdict(g) for g in self.guardrails]}


def breach_ticks(log_lift: np.ndarray, log_var: np.ndarray, valid: np.ndarray, guardrail: Guardrail,
                 tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Per tick: whether the guardrail is breached, and the interval's relevant end (log scale)."""
    cs = confidence_sequence(log_lift, log_var, tau, 1.0 - guardrail.confidence, valid)
    if guardrail.metric in LOWER_IS_BETTER:
        return cs.lo > math.log1p(guardrail.max_relative_drop), cs.lo
    return cs.hi < math.log1p(-guardrail.max_relative_drop), cs.hi


def detectable_units(p: float, harm: float, guardrail: Guardrail, tau: float, *, vr: float = 0.0,
                     power: float = 0.8, shares: tuple[float, float] = (0.5, 0.5)) -> float:
    """Units (both arms) at which the guardrail's always-valid interval finds a true relative ``harm``
    of a Bernoulli metric with baseline ``p`` with ``power`` (``vr``: CUPED variance reduction).

    The yardstick of "rolled back within N ticks of the detectable effect": a rollback cannot be
    expected before this many units, and is late when it comes long after."""
    from models.experiments.stats import log_lift_var_per_unit, units_for_distance

    pt = p * (1 + harm)
    c = log_lift_var_per_unit(p, p * (1 - p) * (1 - vr), harm, shares[0], shares[1], pt * (1 - pt) * (1 - vr))
    distance = math.log1p(-guardrail.max_relative_drop) - math.log1p(harm)
    return units_for_distance(c, distance, alpha=1 - guardrail.confidence, power=power, tau=tau)


def evaluate(report: KpiReport, config: ExperimentConfig) -> Decision:
    """The guardrails' verdict on the report's latest tick."""
    reasons: list[str] = []
    alerts: list[str] = []
    states: list[GuardrailState] = []
    if config.kill_switch.engaged:
        reasons.append(f"kill switch engaged: {config.kill_switch.reason or 'no reason given'}")
    if report.srm.alarm:
        alerts.append(f"sample ratio mismatch: chi2 {report.srm.chi2:.1f}, p {report.srm.p_value:.2g} "
                      f"(observed {list(report.srm.observed)}, expected {[round(e) for e in report.srm.expected]})")
    for g in config.guardrails:
        sign = 1.0 if g.metric in LOWER_IS_BETTER else -1.0
        threshold = sign * g.max_relative_drop
        for v in config.treatments:
            s = report.series[(g.metric, v)]
            breached, end = breach_ticks(s.lift.log_lift, s.lift.log_var, s.valid, g, config.sequential.tau)
            if not s.valid[-1]:
                states.append(GuardrailState(g.metric, v, "insufficient_data", None, threshold, None))
                continue
            first = int(np.argmax(breached)) if breached.any() else None
            state: Literal["ok", "breached"] = "breached" if breached[-1] else "ok"
            states.append(GuardrailState(g.metric, v, state, float(np.expm1(end[-1])), threshold, first))
            if state == "breached":
                word = "rose" if sign > 0 else "fell"
                reasons.append(f"guardrail {g.metric}: variant {v} {word} beyond {threshold:+.1%} with "
                               f"{g.confidence:.0%} confidence (always-valid bound {np.expm1(end[-1]):+.2%})")
    action: Literal["continue", "rollback"] = "rollback" if reasons else "continue"
    if action == "rollback":
        logger.warning("experiment %s/%s: rollback: %s", config.tenant, config.experiment_id, "; ".join(reasons))
    return Decision(action=action, reasons=tuple(reasons), guardrails=tuple(states), alerts=tuple(alerts))
