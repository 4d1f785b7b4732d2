"""Experiment analysis over the drained logs: KPI report, guardrail decision and the HTML page.

Used by ``jobs.kpi_report`` (by hand, any time) and by the refresh loop's per-tick check
(``pipelines.experiment_checks``). The logs are the Parquet files ``pipelines.exposures``
drains from the serving replicas' streams; the statistics are ``models.experiments``'.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from models.experiments.config import ExperimentConfig, load_config
from models.experiments.guardrails import Decision, evaluate
from models.experiments.report import KpiReport, kpi_report
from pipelines import exposures
from store.experiments import ExperimentStore

logger = logging.getLogger(__name__)


@dataclass
class Analysis:
    """One experiment's report and verdict (``error`` set when there is nothing to report on yet)."""

    config: ExperimentConfig
    report: KpiReport | None
    decision: Decision | None
    logs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tenant": self.config.tenant, "experiment": self.config.experiment_id,
                               "logs": self.logs, "error": self.error}
        if self.report is not None:
            out["report"] = self.report.to_dict()
        if self.decision is not None:
            out["decision"] = self.decision.to_dict()
        return out


def read_experiment_file(path: str, tenant: str | None = None) -> ExperimentConfig:
    """An experiment config from a YAML or JSON file; ``tenant``, when given, must match the file's.
    Errors (``ValueError``, ``FileNotFoundError``) name the file and the field."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: experiment config file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of experiment config fields")
    if tenant is not None:
        if data.get("tenant", tenant) != tenant:
            raise ValueError(f"{path}: the file is for tenant {data['tenant']!r}, not {tenant!r}")
        data["tenant"] = tenant
    return load_config(data, path)


def frames(logs: exposures.Logs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The drained logs as the frames ``models.experiments.report.kpi_report`` reads."""
    exp = logs.exposures.to_pandas()
    out = logs.outcomes.to_pandas()
    if "visitor_id" in exp.columns:  # a request without a visitor id is its own visitor
        exp["visitor_id"] = exp["visitor_id"].fillna(exp["session_id"])
    return exp, out


def experiment_start(store: ExperimentStore, tenant: str, config: ExperimentConfig) -> datetime | None:
    """When this experiment (its id and salt) was first stored: its logs start then."""
    for rev in store.history(tenant):
        c = rev.config
        if c is not None and c.experiment_id == config.experiment_id and c.salt == config.salt:
            return datetime.fromtimestamp(rev.written_at, UTC)
    return None


def analyse(logs_uri: str, config: ExperimentConfig, *, since: datetime | None = None,
            pre_period: pd.DataFrame | None = None, tick: timedelta = timedelta(minutes=5)) -> Analysis:
    """Read the tenant's logs from ``since`` on, report on ``config``'s experiment, evaluate its guardrails."""
    logs = exposures.read_logs(logs_uri, config.tenant, since)
    info = logs.to_dict()
    if logs.exposures.num_rows == 0:
        return Analysis(config, None, None, info, error=f"no exposures logged for tenant {config.tenant} yet")
    exp, out = frames(logs)
    if since is not None and len(exp):
        exp = exp.loc[exp["time"] >= pd.Timestamp(since)]
    try:
        report = kpi_report(exp, out, config, pre_period=pre_period, tick=tick)
    except ValueError as exc:
        return Analysis(config, None, None, info, error=str(exc))
    decision = evaluate(report, config)
    if any(logs.missing.values()):
        alert = f"records lost before the drain: {logs.missing}"
        decision = Decision(decision.action, decision.reasons, decision.guardrails, (*decision.alerts, alert))
    return Analysis(config, report, decision, info)


def write_report(analysis: Analysis, out: str) -> str:
    """The self-contained HTML page at ``out`` (a local path or an object-store URI); returns it."""
    from pipelines.reports.kpi import write_kpi_report

    if analysis.report is None:
        raise ValueError(f"experiment {analysis.config.experiment_id}: nothing to report ({analysis.error})")
    if "://" not in out:
        return str(write_kpi_report(analysis.report, analysis.config, out, analysis.decision))
    with tempfile.TemporaryDirectory(prefix="tdm-kpi-") as tmp:
        local = write_kpi_report(analysis.report, analysis.config, Path(tmp) / "report.html", analysis.decision)
        fs, path = exposures.filesystem(out)
        exposures.write_durably(fs, path, local.read_bytes())
    return out


def check_report(page: str, png: str | None = None) -> dict[str, Any]:
    """Open the report in headless Chromium: it must render with every plot decoded, no console
    error and a non-blank page; the screenshot goes to ``png`` (default: next to the page)."""
    from pipelines.reports.screenshot import check_page, ink_fraction

    shot = png or str(Path(page).with_suffix(".png"))
    seen = check_page(page, shot)
    out = {"screenshot": shot, "console_errors": seen.console_errors, "plots": len(seen.plots),
           "plots_decoded": seen.plots_decoded, "ink": round(ink_fraction(seen.png), 4)}
    out["ok"] = not seen.console_errors and seen.plots_decoded == len(seen.plots) > 0 and out["ink"] > 0.02
    if not out["ok"]:
        logger.error("the report %s did not render cleanly: %s", page, out)
    return out


def default_report_path(logs_uri: str, config: ExperimentConfig, now: datetime | None = None) -> str:
    """``<logs>/<tenant>/reports/<experiment>-<UTC time>.html``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    base = logs_uri if "://" in logs_uri else os.path.abspath(logs_uri)
    return f"{base.rstrip('/')}/{config.tenant}/reports/{config.experiment_id}-{stamp}.html"


def records_from_frames(exposures_df: pd.DataFrame, outcomes_df: pd.DataFrame,
                        writer: str = "import") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Log records (``store.explog``) from exposure and outcome frames in ``kpi_report``'s columns
    (e.g. ``models.experiments.simulator.to_logs``): imports of past logs, smoke tests, benchmarks."""
    from store import explog

    def ms(t: pd.Series) -> list[int]:
        return (pd.to_datetime(t, utc=True).astype("int64") // 1_000_000).tolist()  # type: ignore[no-any-return]

    e = exposures_df
    visitors = e["visitor_id"] if "visitor_id" in e.columns else pd.Series([None] * len(e), index=e.index)
    versions = e["model_version"] if "model_version" in e.columns else pd.Series([None] * len(e), index=e.index)
    exp = [explog.exposure(str(t), str(x), str(v), str(s), vis, list(items), ver, "import", "recommend", when,
                           writer, i)
           for i, (t, x, v, s, vis, items, ver, when) in enumerate(zip(
               e["tenant"], e["experiment"], e["variant"], e["session_id"], visitors, e["items"], versions,
               ms(e["time"]), strict=True))]
    o = outcomes_df
    revenue = o["revenue"] if "revenue" in o.columns else pd.Series([0.0] * len(o), index=o.index)
    out = [explog.outcome(str(t), str(s), None, str(k), str(item), float(r), when, when, writer, i)
           for i, (t, s, k, item, r, when) in enumerate(zip(
               o["tenant"], o["session_id"], o["event_type"], o["item_id"], revenue, ms(o["time"]), strict=True))]
    return exp, out
