"""Scheduled refresh: incremental features, then precompute to Redis, every N seconds.

``python -m jobs.refresh --events DIR --features DIR --registry URI --redis URL [--every 300] [--once]``

Each tick runs ``jobs.features --incremental`` (only partitions newer than the watermark,
minus the lateness window) and then ``jobs.precompute`` (new Redis namespace, atomic
pointer flip), each as its own process so a failure in one tick never leaves a partial
publish: the feature output and the Redis pointer only move when a step succeeds. A tick
that overruns its cadence is logged as a warning, and the next tick starts right away.
Submit it as a long-running Ray job, or use ``--once`` from cron or a KubeRay ``RayJob``
(cluster/kuberay/rayjob-refresh.yaml).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time

logger = logging.getLogger(__name__)


def steps(args: argparse.Namespace) -> list[list[str]]:
    py = sys.executable
    features = [py, "-m", "jobs.features", "--events", args.events, "--out", args.features, "--incremental",
                "--lateness-hours", str(args.lateness_hours)]
    precompute = [py, "-m", "jobs.precompute", "--features", args.features, "--registry", args.registry,
                  "--redis", args.redis]
    return [features, precompute]


def tick(args: argparse.Namespace) -> dict[str, object]:
    """One refresh; stops at the first failing step."""
    report: dict[str, object] = {"started": time.time(), "ok": True}
    for cmd in steps(args):
        name = cmd[2]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        report[f"{name}_s"] = round(time.perf_counter() - t0, 2)
        if proc.returncode != 0:
            report.update(ok=False, failed=name, error=proc.stderr.strip().splitlines()[-5:])
            logger.error("%s failed (exit %d); the previous outputs stay published:\n%s", name, proc.returncode,
                         proc.stderr[-2000:])
            break
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.refresh", description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--every", type=float, default=300.0, help="cadence in seconds (300 = every 5 minutes)")
    parser.add_argument("--lateness-hours", type=float, default=1.0)
    parser.add_argument("--once", action="store_true", help="run one tick and exit with its status")
    parser.add_argument("--max-ticks", type=int, default=0, help="stop after this many ticks (0 = forever)")
    args = parser.parse_args(argv)
    if args.every <= 0:
        parser.error("--every must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ticks = 0
    while True:
        start = time.monotonic()
        report = tick(args)
        ticks += 1
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
        if args.once:
            return 0 if report["ok"] else 1
        if args.max_ticks and ticks >= args.max_ticks:
            return 0
        elapsed = time.monotonic() - start
        if elapsed > args.every:
            logger.warning("refresh took %.0fs, longer than its %.0fs cadence", elapsed, args.every)
        time.sleep(max(0.0, args.every - elapsed))


if __name__ == "__main__":
    raise SystemExit(main())
