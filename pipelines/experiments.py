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

from models.experiments.config import ExperimentConfig
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


def default_report_path(logs_uri: str, config: ExperimentConfig, now: datetime | None = None) -> str:
    """``<logs>/<tenant>/reports/<experiment>-<UTC time>.html``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    base = logs_uri if "://" in logs_uri else os.path.abspath(logs_uri)
    return f"{base.rstrip('/')}/{config.tenant}/reports/{config.experiment_id}-{stamp}.html"
