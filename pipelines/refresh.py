"""Scheduled refresh: incremental features, then precompute to Redis, every N seconds.

Each tick runs ``python -m jobs.features --incremental`` (only partitions newer than the
watermark, minus the lateness window) and then ``python -m jobs.precompute`` (new Redis
namespace, atomic pointer flip), each as its own process so a failure in one tick never
leaves a partial publish: the feature output and the Redis pointer only move when a step
succeeds. A tick that overruns its cadence is logged as a warning, and the next tick starts
right away. The jobs run as subprocesses (by module name), so nothing here imports ``jobs``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)


class RefreshConfig(BaseModel):
    """What ``loop`` needs (``python -m jobs.refresh`` flags, same names)."""

    model_config = ConfigDict(extra="forbid")

    events: str
    features: str
    registry: str
    redis: str
    every: float = Field(300.0, gt=0, description="cadence in seconds (300 = every 5 minutes)")
    lateness_hours: float = Field(1.0, ge=0)
    once: bool = Field(False, description="run one tick and exit with its status")
    max_ticks: int = Field(0, ge=0, description="stop after this many ticks (0 = forever)")
    experiment_logs: str | None = Field(None, description="drained A/B experiment logs "
                                        "(default: experiment_logs next to the events)")


Check = Callable[[Any], dict[str, Any]]
"""A per-tick check (issue 14: experiment guardrails, drift): gets the tick's context, returns its JSON."""


def default_checks(cfg: RefreshConfig) -> list[Check]:
    """Experiment guardrails (drain, evaluate, roll back) and PSI drift of the propensity champion."""
    from pipelines.drift import DriftCheck
    from pipelines.experiment_checks import ExperimentCheck

    logs = cfg.experiment_logs or f"{cfg.events.rstrip('/').rsplit('/', 1)[0]}/experiment_logs"
    return [ExperimentCheck(cfg.registry, logs, cfg.redis), DriftCheck(cfg.registry, cfg.features)]


def run_checks(checks: list[Check], ctx: Any = None) -> list[dict[str, Any]]:
    """Every check, whatever the tick's steps did; a failing check is reported, never fatal."""
    out = []
    for check in checks:
        try:
            out.append(check(ctx))
        except Exception as exc:  # noqa: BLE001
            logger.exception("check %s failed", getattr(check, "__name__", "check"))
            out.append({"name": getattr(check, "__name__", "check"), "ok": False,
                        "error": f"{type(exc).__name__}: {exc}"[:1000]})
    return out


def steps(cfg: RefreshConfig) -> list[list[str]]:
    py = sys.executable
    features = [py, "-m", "jobs.features", "--events", cfg.events, "--out", cfg.features, "--incremental",
                "--lateness-hours", str(cfg.lateness_hours)]
    precompute = [py, "-m", "jobs.precompute", "--features", cfg.features, "--registry", cfg.registry,
                  "--redis", cfg.redis]
    return [features, precompute]


def tick(cfg: RefreshConfig, checks: list[Check] | None = None) -> dict[str, Any]:
    """One refresh; stops at the first failing step; then the checks."""
    report: dict[str, Any] = {"started": time.time(), "ok": True}
    for cmd in steps(cfg):
        name = cmd[2]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        report[f"{name}_s"] = round(time.perf_counter() - t0, 2)
        if proc.returncode != 0:
            report.update(ok=False, failed=name, error=proc.stderr.strip().splitlines()[-5:])
            logger.error("%s failed (exit %d); the previous outputs stay published:\n%s", name, proc.returncode,
                         proc.stderr[-2000:])
            break
    if checks:
        report["checks"] = run_checks(checks)
    return report


def loop(cfg: RefreshConfig, emit: Callable[[dict[str, Any]], None], checks: list[Check] | None = None
         ) -> dict[str, Any]:
    """Tick every ``cfg.every`` seconds (once with ``once``, at most ``max_ticks``); ``emit`` gets each
    tick's report. Returns ``ticks``, ``failed_ticks``, ``ok`` (the last tick's), ``once`` and the ``last`` report."""
    ticks = failed = 0
    while True:
        start = time.monotonic()
        report = tick(cfg, checks)
        ticks += 1
        failed += not report["ok"]
        emit(report)
        if cfg.once or (cfg.max_ticks and ticks >= cfg.max_ticks):
            return {"ticks": ticks, "failed_ticks": failed, "ok": bool(report["ok"]), "once": cfg.once,
                    "last": report}
        elapsed = time.monotonic() - start
        if elapsed > cfg.every:
            logger.warning("refresh took %.0fs, longer than its %.0fs cadence", elapsed, cfg.every)
        time.sleep(max(0.0, cfg.every - elapsed))
