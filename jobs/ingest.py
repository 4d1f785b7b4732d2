"""Real event logs -> canonical events by date; bad rows -> quarantine (the CLI; library: ``pipelines.ingest``).

``python -m jobs.ingest --format F --input PATH [--input PATH ...] --out DIR [--tenant T]
[--quarantine QDIR] [--gap-minutes M] [--json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipelines.adapters import FORMATS
from pipelines.ingest import run

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--input", action="append", required=True, help="file, directory or URI; repeatable")
    parser.add_argument("--out", required=True, help="output directory (replaced if it is an earlier ingest output)")
    parser.add_argument("--quarantine", default=None, help="quarantine directory (default: OUT_quarantine)")
    parser.add_argument("--tenant", default=None, help="tenant for rows that carry none")
    parser.add_argument("--gap-minutes", type=float, default=30.0, help="retailrocket session inactivity gap")
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line on stdout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = run(args.format, args.input, Path(args.out), Path(args.quarantine) if args.quarantine else None,
                  tenant=args.tenant, gap_minutes=args.gap_minutes)
    reasons = summary["quarantined"]
    assert isinstance(reasons, dict)
    lines = [f"rows in {summary['rows_in']}, out {summary['rows_out']}, quarantined {summary['quarantined_total']}"]
    lines += [f"  quarantined {reason}: {n}" for reason, n in reasons.items()]
    for line in lines:
        logger.info(line)
    sys.stdout.write(json.dumps(summary) + "\n" if args.json else "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
