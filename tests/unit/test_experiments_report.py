"""KPI report from logs (attribution, quarantine), guardrail decisions, and the simulator's truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.experiments.config import ExperimentConfig
from models.experiments.guardrails import evaluate
from models.experiments.report import kpi_report
from models.experiments.simulator import Arm, VisitorModel, list_quality, simulate_experiment, to_logs
from models.experiments.units import unit_table

T0 = pd.Timestamp("2026-12-01 10:00", tz="UTC")


def _cfg(**kw: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "experiment_id": "e1", "salt": "s",
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "model", "policy": "model", "share": 0.5}],
        "guardrails": [{"metric": "conversion", "max_relative_drop": 0.02, "confidence": 0.95}],
        "sequential": {"min_units": 2},
    }
    data.update(kw)
    return ExperimentConfig.model_validate(data)


def _m(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def _logs() -> tuple[pd.DataFrame, pd.DataFrame]:
    exp = pd.DataFrame([
        ("e1", "control", "s1", ["a", "b"], _m(0)),
        ("e1", "control", "s2", ["a"], _m(0)),
        ("e1", "control", "s2", ["b"], _m(1)),
        ("e1", "model", "s3", ["c"], _m(0)),
        ("e1", "model", "s4", ["c", "d"], _m(10)),
        ("e1", "bogus", "s5", ["a"], _m(0)),        # unknown variant
        ("e1", "control", "s6", ["a"], _m(0)),      # s6 in two variants
        ("e1", "model", "s6", ["a"], _m(1)),
        ("e1", "control", None, ["a"], _m(0)),      # no session
        ("other", "control", "s7", ["a"], _m(0)),   # another experiment: ignored
    ], columns=["experiment", "variant", "session_id", "items", "time"])
    out = pd.DataFrame([
        ("s1", "click", "a", 0.0, _m(1)),           # counts
        ("s1", "click", "z", 0.0, _m(2)),           # z was never shown to s1
        ("s2", "purchase", "a", 30.0, _m(120)),     # within 24 h
        ("s3", "click", "c", 0.0, _m(45)),          # past the 30-min click window
        ("s3", "purchase", "c", 50.0, _m(25 * 60)), # past the 24-h purchase window
        ("s4", "purchase", "c", 20.0, _m(11)),
        ("s4", "purchase", "d", 10.0, _m(12)),
        ("s4", "refund", "d", 10.0, _m(13)),        # unknown event type
        ("s4", "purchase", "d", -5.0, _m(14)),      # negative revenue
        ("s9", "purchase", "d", 5.0, _m(14)),       # never exposed: not in any unit
    ], columns=["session_id", "event_type", "item_id", "revenue", "time"])
    return exp, out


def test_unit_table_attribution_and_quarantine() -> None:
    exp, out = _logs()
    t = unit_table(exp, out, _cfg())
    u = t.units.sort_index()
    assert list(u.index) == ["s1", "s2", "s3", "s4"]
    assert list(u["variant"]) == ["control", "control", "model", "model"]
    assert list(u["exposures"]) == [1, 2, 1, 1]
    assert list(u["clicks"]) == [1, 0, 0, 0]
    assert list(u["orders"]) == [0, 1, 0, 2]
    assert list(u["revenue"]) == [0, 30, 0, 30]
    assert list(u["converted"]) == [0, 1, 0, 1]
    assert list(u["bounced"]) == [0, 0, 1, 0]  # s3 had one exposure and nothing in its windows
    assert dict(t.quarantine) == {
        "exposures: variant not in the config": 1, "exposures: unit seen in more than one variant": 2,
        "exposures: missing session_id": 1, "outcomes: unknown event_type": 1, "outcomes: negative revenue": 1}


def test_kpi_report_values_by_hand() -> None:
    exp, out = _logs()
    r = kpi_report(exp, out, _cfg())
    v = {m: {k: x[0] for k, x in per.items()} for m, per in r.values.items()}
    assert v["ctr"] == {"control": pytest.approx(1 / 3), "model": 0.0}
    assert v["conversion"] == {"control": 0.5, "model": 0.5}
    assert v["bounce"] == {"control": 0.0, "model": 0.5}
    assert v["aov"] == {"control": 30.0, "model": 15.0}
    assert v["revenue_per_session"] == {"control": 15.0, "model": 15.0}
    assert r.n_units == {"control": 2, "model": 2}
    assert r.quarantine["exposures: unit seen in more than one variant"] == 2
    row = r.lift_table().set_index("metric").loc["aov"]
    assert row["rel"] == pytest.approx(-0.5) and row["abs"] == pytest.approx(-15.0)
    d = r.to_dict()
    assert d["srm"]["observed"] == [2, 2] and d["lifts"][0]["metric"] == "ctr"


def test_visitor_unit_groups_sessions() -> None:
    exp, out = _logs()
    exp = exp.assign(visitor_id=exp["session_id"].map({"s1": "v1", "s2": "v1", "s3": "v2", "s4": "v3"}))
    exp = exp.loc[exp["session_id"].isin(["s1", "s2", "s3", "s4"])]
    u = unit_table(exp, out, _cfg(unit="visitor")).units.sort_index()
    assert list(u.index) == ["v1", "v2", "v3"]
    assert list(u["sessions"]) == [2, 1, 1] and list(u["converted"]) == [1, 0, 1]


def test_bad_input_names_the_column() -> None:
    exp, out = _logs()
    with pytest.raises(ValueError, match=r"exposures: missing column\(s\) \['variant'\]"):
        kpi_report(exp.drop(columns="variant"), out, _cfg())
    with pytest.raises(ValueError, match=r"outcomes: missing column\(s\) \['event_type'\]"):
        kpi_report(exp, out.drop(columns="event_type"), _cfg())
    with pytest.raises(ValueError, match="no valid exposures"):
        kpi_report(exp.iloc[5:6], out, _cfg())


def _sim_report(quality: float, n: int = 40_000, seed: int = 0, **kw: Any):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    sim = simulate_experiment(VisitorModel(), (Arm("control", 0.5), Arm("model", 0.5, quality)), n, 24, rng, **kw)
    exp, out, pre = to_logs(sim, tenant="default", experiment_id="e1", start=T0, tick_seconds=300, rng=rng)
    cfg = _cfg(sequential={"min_units": 200})
    return sim, cfg, kpi_report(exp, out, cfg, pre_period=pre)


def test_logs_of_a_simulation_round_trip_exactly() -> None:
    rng = np.random.default_rng(1)
    sim = simulate_experiment(VisitorModel(), (Arm("control", 0.5), Arm("model", 0.5, 1.2)), 3000, 6, rng)
    exp, out, pre = to_logs(sim, tenant="default", experiment_id="e1", start=T0, tick_seconds=300, rng=rng)
    u = unit_table(exp, out, _cfg(), pre).units
    u = u.loc[[f"s{i}" for i in range(sim.arm.size)]]
    for col in ("exposures", "clicks", "converted", "orders", "bounced"):
        np.testing.assert_array_equal(u[col].to_numpy(), sim.columns[col], err_msg=col)
    np.testing.assert_allclose(u["revenue"].to_numpy(), sim.columns["revenue"])
    np.testing.assert_array_equal(u["pre_converted"].to_numpy(), sim.columns["pre_converted"])


def test_simulator_true_lift_is_what_the_report_finds() -> None:
    sim, _, r = _sim_report(1.3, n=60_000)
    row = r.lift_table().set_index("metric").loc["conversion"]
    assert sim.true_relative_lift(1) == pytest.approx(0.3)
    assert row["rel_lo"] < 0.3 < row["rel_hi"]
    assert row["seq_rel_lo"] < 0.3 < row["seq_rel_hi"] and row["seq_rel_lo"] > 0
    assert row["variance_reduction"] > 0.0  # CUPED helps with the pre-period conversions


def test_guardrail_rolls_back_a_harmful_variant_and_not_a_neutral_one() -> None:
    _, cfg, bad = _sim_report(0.6)
    d = evaluate(bad, cfg)
    assert d.action == "rollback"
    assert "guardrail conversion: variant model fell beyond -2.0%" in d.reasons[0]
    g = d.guardrails[0]
    assert g.state == "breached" and g.bound is not None and g.bound < -0.02 and g.first_breach_tick is not None
    _, cfg, fine = _sim_report(1.0, seed=2)
    ok = evaluate(fine, cfg)
    assert ok.action == "continue" and ok.guardrails[0].state == "ok" and not ok.alerts
    killed = evaluate(fine, cfg.rolled_back("manual stop by the shop"))
    assert killed.action == "rollback" and "kill switch engaged: manual stop by the shop" in killed.reasons


def test_srm_alert_on_a_lossy_log() -> None:
    _, cfg, r = _sim_report(1.0, log_loss={1: 0.1})
    assert r.srm.alarm
    d = evaluate(r, cfg)
    assert d.alerts and d.alerts[0].startswith("sample ratio mismatch")


def test_probabilities_never_clip_and_list_quality() -> None:
    m = VisitorModel()
    a = m.affinity(200_000, np.random.default_rng(0))
    assert a.max() <= m.max_affinity
    assert m.conversion * a.max() * m.max_quality <= 1.0
    with pytest.raises(ValueError, match="quality"):
        m.respond(a[:3], np.array([1.0, 2.5, 1.0]), np.random.default_rng(0))
    appeal = np.array([1.0, 2.0, 4.0])
    # weights 1, 0.5: (2*1 + 4*0.5) / 1.5 / ref 2 = 4/3; an all-empty list is baseline quality 1
    q = list_quality(appeal, np.array([[1, 2], [0, -1], [-1, -1]]), reference=2.0, position_decay=0.5)
    np.testing.assert_allclose(q, [4 / 3, 0.5, 1.0])
