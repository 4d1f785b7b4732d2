"""The KPI report of a tenant's A/B experiment: lifts with 95 % and always-valid intervals, SRM,
guardrails, written as a self-contained HTML page with plots (the CLI; library: ``pipelines.experiments``).

    python -m jobs.kpi_report --registry URI --logs URI [--tenant T] [--out PATH] [--pre-period FILE]
        [--screenshot] [--json]

Reads the experiment's config from the registry (or ``--experiment FILE``) and its drained
exposure and outcome logs (``<logs>/<tenant>/{exposures,outcomes}/``, from
``python -m jobs.drain_exposures`` or the refresh loop), joins outcomes to exposures by session
within the config's attribution windows, and reports per variant CTR, conversion, bounce, AOV
and revenue per session with their lifts against control (delta-method 95 % intervals and the
mSPRT always-valid interval), the sample-ratio-mismatch test, CUPED when ``--pre-period`` gives
per-unit ``pre_*`` covariates, the sample size the experiment needs and the guardrails' verdict.
Prints the report's path; ``--json`` ends with one JSON line.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field, model_validator

from models.experiments.config import ExperimentConfig
from pipelines import entrypoint, experiments
from store.experiments import ExperimentStore


class Config(BaseModel, extra="forbid"):
    logs: str = Field(description="drained experiment logs (local dir or s3://)")
    registry: str | None = Field(None, description="registry URI holding the tenant's experiment")
    experiment: str | None = Field(None, description="experiment config file instead of the registry's")
    tenant: str = "default"
    out: str | None = Field(None, description="HTML path (default <logs>/<tenant>/reports/<experiment>-<time>.html)")
    pre_period: str | None = Field(None, description="Parquet/CSV: unit_id + pre_* covariates (CUPED)")
    tick_minutes: float = Field(5.0, gt=0, description="history resolution of the lift-over-time plots")
    screenshot: bool = Field(False, description="check the page in headless Chromium and save a screenshot")
    smoke_test: bool = False

    @model_validator(mode="after")
    def _source(self) -> Config:
        if (self.registry is None) == (self.experiment is None):
            raise ValueError("give either --registry (the stored experiment) or --experiment FILE")
        return self


def run(cfg: Config) -> dict[str, Any]:
    exp, since = _experiment(cfg)
    pre = _pre_period(cfg.pre_period) if cfg.pre_period else None
    analysis = experiments.analyse(cfg.logs, exp, since=since, pre_period=pre,
                                   tick=timedelta(minutes=cfg.tick_minutes))
    if analysis.report is None:
        raise entrypoint.BadInput(f"{cfg.logs}: nothing to report for tenant {cfg.tenant}, experiment "
                                  f"{exp.experiment_id}: {analysis.error}")
    path = experiments.write_report(analysis, cfg.out or experiments.default_report_path(cfg.logs, exp))
    report, decision = analysis.report, analysis.decision
    assert decision is not None
    table = report.lift_table()
    watched = {exp.primary_metric, *(g.metric for g in exp.guardrails)}
    lifts = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()
              if k in ("metric", "variant", "rel", "rel_lo", "rel_hi", "seq_rel_lo", "seq_rel_hi", "p_value")}
             for row in table.to_dict("records") if row["metric"] in watched]
    check = experiments.check_report(path) if cfg.screenshot else None
    return {"report": path, "check": check, "tenant": exp.tenant, "experiment": exp.experiment_id, "n_units": report.n_units,
            "decision": decision.action, "reasons": list(decision.reasons), "alerts": list(decision.alerts),
            "srm_p_value": round(report.srm.p_value, 6), "lifts": lifts, "logs": analysis.logs,
            "sample_size": {v: {k: s.total for k, s in d.items()} for v, d in report.sample_size.items()}}


def _experiment(cfg: Config) -> tuple[ExperimentConfig, datetime | None]:
    if cfg.experiment is not None:
        return experiments.read_experiment_file(cfg.experiment, cfg.tenant), None
    assert cfg.registry is not None
    store = ExperimentStore(cfg.registry)
    stored = store.current(cfg.tenant)
    if stored is None or stored.config is None:
        raise entrypoint.BadInput(f"{cfg.registry}: tenant {cfg.tenant} has no experiment (ended or never created)")
    return stored.config, experiments.experiment_start(store, cfg.tenant, stored.config)


def _pre_period(path: str) -> pd.DataFrame:
    if not Path(path).exists() and "://" not in path:
        raise FileNotFoundError(f"{path}: pre-period file not found")
    frame = pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)
    if "unit_id" not in frame.columns or not any(c.startswith("pre_") for c in frame.columns):
        raise entrypoint.BadInput(f"{path}: needs a unit_id column and pre_* covariate columns "
                                  f"(has {list(frame.columns)})")
    return frame


def text(r: dict[str, Any]) -> str:
    shot = f" (checked in Chromium, screenshot {r['check']['screenshot']})" if r.get("check") else ""
    return f"KPI report: {r['report']}{shot}"


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logs", help="drained experiment logs (local dir or s3://)")
    p.add_argument("--registry", help="registry URI holding the tenant's experiment")
    p.add_argument("--experiment", help="experiment config file (YAML/JSON) instead of the registry's")
    p.add_argument("--tenant", help="tenant (default 'default')")
    p.add_argument("--out", help="HTML report path or URI")
    p.add_argument("--pre-period", help="unit_id + pre_* covariates (Parquet or CSV), for CUPED")
    p.add_argument("--tick-minutes", type=float, help="history resolution (default 5)")
    p.add_argument("--screenshot", action="store_true",
                   help="open the page in headless Chromium (Debian's chromium): it must render its plots without "
                        "console errors; the screenshot goes next to it")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """A simulated experiment (control, +8 % and -20 % variants), its logs in the drained layout."""
    import numpy as np

    from models.experiments.simulator import Arm, VisitorModel, simulate_experiment, to_logs
    from pipelines.exposures import write_records
    from store.experiments import ExperimentStore as Store

    if "logs" in values and ("registry" in values or "experiment" in values):
        return
    tenant = values.get("tenant", "default")
    cfg = ExperimentConfig.model_validate({
        "tenant": tenant, "experiment_id": "smoke", "salt": "s",
        "variants": [{"name": "control", "policy": "popular", "share": 0.5},
                     {"name": "model", "policy": "model", "share": 0.25},
                     {"name": "worse", "policy": "model", "share": 0.25}],
        "guardrails": [{"metric": "conversion", "max_relative_drop": 0.02}]})
    values["registry"] = str(tmp / "registry")
    Store(values["registry"]).put(cfg, reason="smoke test", by="smoke")
    rng = np.random.default_rng(0)
    arms = (Arm("control", 0.5), Arm("model", 0.25, 1.08), Arm("worse", 0.25, 0.8))
    sim = simulate_experiment(VisitorModel(conversion=0.08), arms, 8000, 24, rng)
    exp, out, _ = to_logs(sim, tenant=tenant, experiment_id="smoke", start=pd.Timestamp.now(tz="UTC"),
                          tick_seconds=300, rng=rng)
    exp_recs, out_recs = experiments.records_from_frames(exp, out, writer="smoke")
    values["logs"] = str(tmp / "logs")
    write_records(values["logs"], tenant, "exposures", exp_recs)
    write_records(values["logs"], tenant, "outcomes", out_recs)
    values.setdefault("out", str(tmp / "kpi.html"))  # give --out to keep the example report


JOB = entrypoint.Job(prog="python -m jobs.kpi_report", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke, text=text, input_errors=(ValueError,),
                     exit_code=lambda r: 1 if r["check"] is not None and not r["check"]["ok"] else 0,
                     error_fields=lambda v: {"tenant": v.get("tenant", "default")})


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
