"""The unattended refresh loop: fast tick (features + precompute) and slow tick (retrain, gate,
promote, hot-swap) on their cadences, under a Redis lease (the CLI; library: ``pipelines.refresh``).

    python -m jobs.refresh --events DIR --features DIR --registry URI --redis URL
        [--config FILE] [--fast-every 300] [--slow-every 86400] [--run both|fast|slow]
        [--once] [--max-ticks N] [--smoke-test]

Submit it as a long-running Ray job (``ray job submit --no-wait -- python -m jobs.refresh ...``)
on the cluster that serves, or run one cadence per KubeRay RayJob / RayCronJob
(cluster/kuberay/). Each tick ends with one JSON line on stdout; with ``--once`` the exit code
is the ticks' status (0 ok, 1 a tick failed). After every tick the per-tick checks run
(experiment guardrails, drift of the propensity champion).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from pipelines import entrypoint, smoke
from pipelines.refresh import RefreshConfig, RefreshLoop, default_checks

Result = dict[str, Any]  # ticks, failed_ticks, ok, once, cadences, last (the last tick's report)


class Config(RefreshConfig, extra="forbid"):
    once: bool = Field(False, description="run the due ticks once and exit with their status")
    max_ticks: int = Field(0, ge=0, description="stop after this many ticks (0 = forever)")
    smoke_test: bool = False


def run(cfg: Config) -> Result:
    loop_cfg = RefreshConfig.model_validate(cfg.model_dump(exclude={"once", "max_ticks", "smoke_test"}))
    loop = RefreshLoop(loop_cfg, default_checks(loop_cfg))
    code = loop.run(max_ticks=cfg.max_ticks, once=cfg.once)
    return {"ticks": loop.ticks_run, "failed_ticks": loop.ticks_failed, "ok": code == 0, "once": cfg.once,
            "cadences": [c for c, _ in RefreshLoop.cadences_of(loop_cfg)], "last": loop.last_report}


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", help="canonical events (date= partitions), local or s3://")
    p.add_argument("--features", help="feature output, local or s3://")
    p.add_argument("--registry", help="model registry URI")
    p.add_argument("--redis", help="redis://host:port/db")
    p.add_argument("--fast-every", type=float, dest="fast_every_s", help="fast cadence in seconds (default 300)")
    p.add_argument("--slow-every", type=float, dest="slow_every_s",
                   help="slow cadence in seconds (default 86400; 3600 works too; 0 = no retrain)")
    p.add_argument("--run", choices=["both", "fast", "slow"], help="which cadences this process runs (default both)")
    p.add_argument("--clock-file", help="simulated clock (an ISO time in a file), for soaks and tests")
    p.add_argument("--model-cache-dir", help="the node's model cache (default ~/.cache/tandem/models)")
    p.add_argument("--serve-app", help="Serve application to hot-swap (default tandem)")
    p.add_argument("--serve-address", help="dashboard URL of the serving cluster (default: this cluster)")
    p.add_argument("--no-swap", action="store_const", const=None, dest="serve_app",
                   help="no hot swap (no Serve app to update)")
    p.add_argument("--experiment-logs", help="drained A/B logs (default: experiment_logs next to the events)")
    p.add_argument("--once", action="store_true", help="run the due ticks once and exit with their status")
    p.add_argument("--max-ticks", type=int, help="stop after this many ticks (0 = forever)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> Callable[[], None] | None:
    """One fast tick over tiny events into a fresh feature output and a registry with both
    champions, no hot swap; a private redis-server unless --redis is given."""
    values.setdefault("events", smoke.events_dir(tmp))
    values.setdefault("features", str(tmp / "features"))
    if "registry" not in values:
        values["registry"] = smoke.propensity_registry(tmp)
        smoke.recommender_champion(values["registry"], tmp)
    values.update(once=True, run="fast", serve_app=None, work_dir=str(tmp),
                  model_cache_dir=values.get("model_cache_dir") or str(tmp / "model-cache"))
    if "redis" in values:
        return None
    values["redis"], stop = smoke.private_redis(tmp / "redis")
    return stop


JOB = entrypoint.Job(prog="python -m jobs.refresh", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, ray={"log_to_driver": False}, smoke=fill_smoke,
                     exit_code=lambda r: 0 if r["ok"] else 1)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
