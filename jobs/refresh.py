"""The unattended refresh loop: fast tick (features + precompute) and slow tick (retrain, gate,
promote, hot-swap) on their cadences, under a Redis lease (the library: ``pipelines.refresh``).

    python -m jobs.refresh --events DIR --features DIR --registry URI --redis URL
        [--config FILE] [--fast-every 300] [--slow-every 86400] [--run both|fast|slow]
        [--once] [--max-ticks N] [--smoke-test]

Submit it as a long-running Ray job (``ray job submit --no-wait -- python -m jobs.refresh ...``)
on the cluster that serves, or run one cadence per KubeRay RayJob / CronJob
(cluster/kuberay/). Each tick ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipelines.refresh import RefreshConfig, RefreshLoop

logger = logging.getLogger(__name__)

FLAGS = {"events": "events", "features": "features", "registry": "registry", "redis": "redis",
         "fast_every": "fast_every_s", "slow_every": "slow_every_s", "run": "run", "clock_file": "clock_file",
         "model_cache_dir": "model_cache_dir", "serve_app": "serve_app", "serve_address": "serve_address",
         "experiment_logs": "experiment_logs"}


def load_config(ns: argparse.Namespace) -> RefreshConfig:
    """``--config FILE`` (YAML or JSON) overridden by the flags given; errors name the field."""
    values: dict[str, Any] = {}
    if ns.config:
        values = yaml.safe_load(Path(ns.config).read_text()) or {}
        if not isinstance(values, dict):
            raise SystemExit(f"{ns.config}: expected a mapping of RefreshConfig fields")
    for flag, field in FLAGS.items():
        value = getattr(ns, flag)
        if value is not None:
            values[field] = value
    if ns.no_swap:
        values["serve_app"] = None
    try:
        return RefreshConfig.model_validate(values)
    except ValidationError as exc:
        raise SystemExit(f"refresh config{' ' + ns.config if ns.config else ''}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.refresh", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML/JSON RefreshConfig (flags override it)")
    parser.add_argument("--events")
    parser.add_argument("--features")
    parser.add_argument("--registry")
    parser.add_argument("--redis")
    parser.add_argument("--fast-every", type=float, help="fast cadence in seconds (default 300)")
    parser.add_argument("--slow-every", type=float, help="slow cadence in seconds (default 86400; 0 = no retrain)")
    parser.add_argument("--run", choices=["both", "fast", "slow"], help="which cadences this process runs")
    parser.add_argument("--clock-file", help="simulated clock file (soak and tests)")
    parser.add_argument("--model-cache-dir")
    parser.add_argument("--serve-app", help="Serve application to hot-swap (default tandem)")
    parser.add_argument("--serve-address", help="dashboard URL of the serving cluster (default: this cluster)")
    parser.add_argument("--no-swap", action="store_true", help="no hot swap (no Serve app to update)")
    parser.add_argument("--experiment-logs", help="drained experiment logs dir: run the guardrail check each tick")
    parser.add_argument("--once", action="store_true", help="run the due ticks once and exit with their status")
    parser.add_argument("--max-ticks", type=int, default=0, help="stop after this many ticks (0 = forever)")
    parser.add_argument("--smoke-test", action="store_true", help="validate the config and exit")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    cfg = load_config(ns)
    logger.info("refresh config: %s", cfg.model_dump_json())
    if ns.smoke_test:
        sys.stdout.write(json.dumps({"config": "ok", "cadences": [c for c, _ in RefreshLoop.cadences_of(cfg)]}) + "\n")
        return 0
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    return RefreshLoop(cfg).run(max_ticks=ns.max_ticks, once=ns.once)


if __name__ == "__main__":
    raise SystemExit(main())
