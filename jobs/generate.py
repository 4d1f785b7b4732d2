"""Synthetic clickstream calibrated to the real samples (the CLI; library: ``pipelines.synthetic``).

``python -m jobs.generate --events N --out DIR --seed S [--days D] [--items I]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pyarrow.compute as pc

from pipelines.synthetic import GeneratorConfig, generate, write_partitioned

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="number of non-purchase events")
    parser.add_argument("--out", required=True, help="output directory (replaced if it exists)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--start", default="2026-11-01", help="first day, YYYY-MM-DD (UTC)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = GeneratorConfig(events=args.events, seed=args.seed, days=args.days, items=args.items,
                          tenants=args.tenants, start=args.start)
    t0 = time.perf_counter()
    table = generate(cfg)
    out = Path(args.out)
    staging = out.with_name(out.name + ".staging")
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    counts = write_partitioned(table, staging)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)
    n_sessions = pc.count_distinct(table["session_id"]).as_py()
    n_buy = pc.count_distinct(table.filter(pc.equal(table["event_type"], "purchase"))["session_id"]).as_py()
    summary = {"events": table.num_rows, "sessions": n_sessions, "purchase_rate": round(n_buy / n_sessions, 4),
               "days": len(counts), "out": str(out), "seconds": round(time.perf_counter() - t0, 2)}
    logger.info("generated %s", summary)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
