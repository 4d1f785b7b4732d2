"""Each report opened in headless Chromium (Debian's package): it renders, its plots decode,
the screenshot is not blank, and the console has no errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.reports.screenshot import CHROMIUM, check_page, ink_fraction

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is absent (install Debian's chromium: make chromium)")


def _kpi(path: Path) -> Path:
    from models.experiments.config import ExperimentConfig
    from models.experiments.report import kpi_report
    from models.experiments.simulator import Arm, VisitorModel, simulate_experiment, to_logs
    from pipelines.reports.kpi import write_kpi_report

    rng = np.random.default_rng(0)
    arms = (Arm("control", 0.5), Arm("model", 0.25, 1.1), Arm("bad", 0.25, 0.7))
    sim = simulate_experiment(VisitorModel(), arms, 30_000, 24, rng)
    exp, out, pre = to_logs(sim, tenant="t1", experiment_id="e1", start=pd.Timestamp("2026-12-01", tz="UTC"),
                            tick_seconds=300, rng=rng)
    cfg = ExperimentConfig.model_validate({
        "tenant": "t1", "experiment_id": "e1", "salt": "s",
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "model", "policy": "model", "share": 0.25},
                     {"name": "bad", "policy": "version", "model_version": "v1", "share": 0.25}],
        "guardrails": [{"metric": "conversion"}, {"metric": "bounce", "max_relative_drop": 0.05}]})
    return write_kpi_report(kpi_report(exp, out, cfg, pre_period=pre), cfg, path)


def _propensity(path: Path) -> Path:
    from pipelines.reports.model import write_propensity_report

    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.1).astype(float)
    p = np.clip(0.1 + 0.4 * (y - 0.1) + rng.normal(0, 0.1, y.size), 0, 1)
    return write_propensity_report(y, {"lightgbm": p, "random": rng.random(y.size)}, path)


def _recommender(path: Path) -> Path:
    from pipelines.reports.model import write_recommender_report

    rng = np.random.default_rng(2)
    return write_recommender_report({"hybrid": rng.geometric(0.08, 3000), "popular": rng.geometric(0.02, 3000)}, path)


def _recommender_metrics(path: Path) -> Path:
    """What the training job writes: its evaluation's recall@k / mrr@k at the protocol's cutoffs."""
    from pipelines.reports.model import write_recommender_report

    metrics = {"n": 5000.0, "recall@1": 0.12, "mrr@1": 0.12, "recall@5": 0.31, "mrr@5": 0.19, "recall@10": 0.42,
               "mrr@10": 0.2, "recall@20": 0.53, "mrr@20": 0.21}
    other = {k: v * 0.8 for k, v in metrics.items()}
    return write_recommender_report({"gru4rec": metrics, "vsknn": other}, path)


@pytest.mark.parametrize(("make", "plots"), [
    (_kpi, ["lift", "lift_other", "srm", "guardrails"]),
    (_propensity, ["pr_curve", "calibration"]),
    (_recommender, ["recall_at_k"]),
    (_recommender_metrics, ["recall_at_k"]),
])
def test_report_renders_in_chromium(tmp_path: Path, make, plots: list[str]) -> None:  # noqa: ANN001
    page = make(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    seen = check_page(page, shot)
    assert seen.console_errors == []
    assert [p["name"] for p in seen.plots] == plots
    assert seen.plots_decoded == len(plots)  # every inline PNG decoded by the browser
    assert all(p["width"] >= 500 for p in seen.plots)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ink_fraction(seen.png) > 0.03  # not a blank page


def test_console_errors_and_blank_pages_are_caught(tmp_path: Path) -> None:
    """The checks above can fail: a broken page shows its errors, a blank page has no ink."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img class="plot" data-plot="x" src="data:image/png;base64,AAAA">'
                   '<script>console.error("boom"); missing();</script></body></html>')
    seen = check_page(bad)
    assert any("boom" in e for e in seen.console_errors)
    assert any("missing is not defined" in e for e in seen.console_errors)
    assert seen.plots_decoded == 0
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    assert ink_fraction(check_page(blank).png) == 0.0


def test_kpi_report_job_checks_its_page_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What make demo runs: the job writes the page, opens it in Chromium and keeps the screenshot."""
    import json

    from jobs import kpi_report

    assert kpi_report.main(["--smoke-test", "--out", str(tmp_path / "kpi.html"), "--screenshot", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    check = out["check"]
    assert check["ok"] and check["console_errors"] == [] and check["plots_decoded"] == check["plots"] == 4
    assert Path(check["screenshot"]) == tmp_path / "kpi.png" and (tmp_path / "kpi.png").stat().st_size > 10_000
