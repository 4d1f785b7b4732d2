"""Scheduled refresh: incremental features, then precompute to Redis, every N seconds (the CLI;
library: ``pipelines.refresh``).

``python -m jobs.refresh --events DIR --features DIR --registry URI --redis URL [--every 300] [--once]``

Each tick ends with one JSON line of its report. Submit it as a long-running Ray job, or use
``--once`` from cron or a KubeRay ``RayJob`` (cluster/kuberay/rayjob-refresh.yaml); with
``--once`` the exit code is the tick's status (0 ok, 1 a step failed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines import entrypoint, smoke
from pipelines.refresh import RefreshConfig, default_checks, loop

Result = dict[str, Any]  # ticks, failed_ticks, ok, once, last


class Config(RefreshConfig, extra="forbid"):
    smoke_test: bool = False


def _emit(report: dict[str, Any]) -> None:
    sys.stdout.write(entrypoint.to_json(report) + "\n")
    sys.stdout.flush()


def run(cfg: Config) -> Result:
    return loop(cfg, _emit, default_checks(cfg))


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events")
    p.add_argument("--features")
    p.add_argument("--registry")
    p.add_argument("--redis")
    p.add_argument("--every", type=float, help="cadence in seconds (default 300 = every 5 minutes)")
    p.add_argument("--lateness-hours", type=float, help="default 1")
    p.add_argument("--once", action="store_true", help="run one tick and exit with its status")
    p.add_argument("--max-ticks", type=int, help="stop after this many ticks (0 = forever)")
    p.add_argument("--experiment-logs", help="drained A/B logs (default: experiment_logs next to the events)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> Callable[[], None] | None:
    """One tick over tiny events into a fresh feature output and registry; a private redis-server
    unless --redis is given."""
    values.setdefault("events", smoke.events_dir(tmp))
    values.setdefault("features", str(tmp / "features"))
    if "registry" not in values:
        values["registry"] = smoke.propensity_registry(tmp)
    values["once"] = True
    if "redis" in values:
        return None
    values["redis"], stop = smoke.private_redis(tmp / "redis")
    return stop


JOB = entrypoint.Job(prog="python -m jobs.refresh", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke, exit_code=lambda r: 1 if r["once"] and not r["ok"] else 0)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
