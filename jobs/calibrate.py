"""Print the synthetic generator's statistics next to the real samples' (the CLI; library:
``pipelines.synthetic_stats``).

``python -m jobs.calibrate [--events N] [--seed S] [--zipf-head K] [--data DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from pipelines.synthetic_stats import DEFAULT_DATA, ZIPF_HEAD, calibrate, render

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="synthetic non-purchase events")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zipf-head", type=int, default=ZIPF_HEAD, help="ranks used in the Zipf fit")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real samples (../shared/data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    stats = calibrate(args.events, args.seed, args.data, args.zipf_head)
    summary = {"stats": stats, "events": args.events, "seed": args.seed, "zipf_head": args.zipf_head,
               "seconds": round(time.perf_counter() - t0, 2)}
    sys.stdout.write(render(stats, args.zipf_head) + "\n" + json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
