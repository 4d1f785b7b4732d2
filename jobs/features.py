"""Events to feature tables on Ray (the CLI; ``pipelines.features`` is the library).

``python -m jobs.features --events DIR --out DIR [--as-of TS] [--since TS] [--incremental]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from pipelines.features import run

logger = logging.getLogger(__name__)


def _ray_init() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.features", description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True, help="canonical events: local dir or s3:// (date= partitions)")
    parser.add_argument("--out", required=True, help="output path (a symlink to the current version)")
    parser.add_argument("--as-of", help="use only events before this UTC time (point-in-time snapshot)")
    parser.add_argument("--since", help="reprocess partitions from this UTC time (default: watermark - lateness)")
    parser.add_argument("--incremental", action="store_true", help="process only partitions newer than the watermark")
    parser.add_argument("--lateness-hours", type=float, default=24.0, help="late events reprocessed (incremental)")
    parser.add_argument("--gap-minutes", type=float, default=None,
                        help="re-sessionize by user with this inactivity gap (default: use the source session id)")
    parser.add_argument("--buckets", type=int, default=16, help="session and user hash buckets (tasks of stages 2 and 3)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of counts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        as_of = pd.Timestamp(args.as_of, tz="UTC") if args.as_of else None
        since = pd.Timestamp(args.since, tz="UTC") if args.since else None
    except ValueError as exc:
        parser.error(f"--as-of/--since: {exc}")
    _ray_init()
    manifest = run(args.events, Path(args.out).absolute(), as_of=as_of, since=since, incremental=args.incremental,
                   lateness_hours=args.lateness_hours, gap_minutes=args.gap_minutes, buckets=args.buckets)
    logger.info("features: %d events -> %d sessions, %d quarantined %s in %.1fs", manifest["rows_in"],
                manifest["sessions"], manifest["quarantined"], manifest["quarantine_reasons"], manifest["seconds"])
    summary = {k: manifest[k] for k in ("rows_in", "sessions", "sequences", "items", "quarantined",
                                        "quarantine_reasons", "seconds", "events_per_s", "watermark")}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
