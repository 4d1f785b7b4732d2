"""HTML report rendering without a browser: plots inlined, curves computed right, atomic writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.reports.html import write_page
from pipelines.reports.model import (
    calibration_curve,
    recall_mrr_by_cutoff,
    render_propensity_report,
    render_recommender_report,
)

PLOT = re.compile(r'<img class="plot" data-plot="([a-z_]+)" alt="[a-z_]+" src="data:image/png;base64,[A-Za-z0-9+/=]{200,}">')


def test_calibration_curve_by_hand() -> None:
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.55, 0.65, 0.95])
    cal = calibration_curve(y, p, bins=2)  # bins [0, .5): 2 rows, [.5, 1]: 3 rows
    np.testing.assert_allclose(cal["mean_score"], [0.1, 0.7166666666666667])
    np.testing.assert_allclose(cal["observed_rate"], [0.5, 2 / 3])
    assert list(cal["count"]) == [2, 3]


def test_recall_and_mrr_by_cutoff_by_hand() -> None:
    ranks = np.array([1, 3, np.inf, 0, 10])  # 0 and inf: not ranked
    df = recall_mrr_by_cutoff(ranks, [1, 5, 10])
    np.testing.assert_allclose(df["recall"], [0.2, 0.4, 0.6])
    np.testing.assert_allclose(df["mrr"], [0.2, (1 + 1 / 3) / 5, (1 + 1 / 3 + 0.1) / 5])
    with pytest.raises(ValueError, match="no ranks"):
        recall_mrr_by_cutoff(np.array([]), [1])


def test_model_reports_inline_their_plots() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(float)
    html = render_propensity_report(y, {"model": np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.1, 2000), 0, 1),
                                        "baseline": rng.random(2000)})
    assert PLOT.findall(html) == ["pr_curve", "calibration"]
    assert "<script" not in html and "http" not in html.split("<body>")[1]
    rec = render_recommender_report({"hybrid": rng.integers(1, 200, 500), "popular": rng.integers(1, 400, 500)})
    assert PLOT.findall(rec) == ["recall_at_k"]
    assert "R@20" in rec


def _simulated_report(seed: int, sessions: int, ticks: int, *arm_args: float):  # noqa: ANN202
    """A KPI report over a simulated control / model experiment, and its config."""
    from models.experiments.config import ExperimentConfig
    from models.experiments.report import kpi_report
    from models.experiments.simulator import Arm, VisitorModel, simulate_experiment, to_logs

    rng = np.random.default_rng(seed)
    sim = simulate_experiment(VisitorModel(), (Arm("control", 0.5), Arm("model", 0.5, *arm_args)), sessions, ticks,
                              rng)
    exp, out, pre = to_logs(sim, tenant="t1", experiment_id="e1", start=pd.Timestamp("2026-12-01", tz="UTC"),
                            tick_seconds=300, rng=rng)
    cfg = ExperimentConfig.model_validate({
        "tenant": "t1", "experiment_id": "e1", "salt": "s",
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "model", "policy": "model", "share": 0.5}],
        "guardrails": [{"metric": "conversion"}]})
    return kpi_report(exp, out, cfg, pre_period=pre), cfg


def test_kpi_report_page_has_every_section() -> None:
    from pipelines.reports.kpi import render_kpi_report

    html = render_kpi_report(*_simulated_report(0, 20_000, 12, 0.6))
    assert PLOT.findall(html) == ["lift", "lift_other", "srm", "guardrails"]
    for text in ("ROLLBACK", "Sample ratio mismatch", "Guardrails", "always-valid", "needs"):
        assert text in html


def test_write_page_is_atomic_and_readable(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "r.html"
    write_page("<html>one</html>", dest)
    write_page("<html>two</html>", dest)
    assert dest.read_text() == "<html>two</html>"
    assert dest.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in dest.parent.iterdir()] == ["r.html"]  # no temp file left behind


@pytest.mark.parametrize("ticks", [1, 12])
def test_kpi_time_axes_frame_the_ticks_even_with_one_tick(ticks: int) -> None:
    """One tick of data used to leave matplotlib's automatic date range spanning days to years."""
    import matplotlib.dates as mdates

    from pipelines.reports.kpi import _guardrail_figure, _lift_figure, _srm_figure

    report, cfg = _simulated_report(1, 4_000, ticks)
    t = report.tick_times.tz_convert(None)
    figs = [_lift_figure(report, cfg, ["conversion"]), _srm_figure(report, cfg), _guardrail_figure(report, cfg)]
    for ax in [a for f in figs for a in f.axes if a.get_xlabel() or a.get_title().startswith(("SRM", "Guard"))]:
        lo, hi = (pd.Timestamp(mdates.num2date(x)).tz_localize(None) for x in ax.get_xlim())
        assert lo <= t[0] and t[-1] <= hi
        assert hi - lo <= (t[-1] - t[0]) * 1.1 + pd.Timedelta(minutes=10), (lo, hi)
