"""Remove what crashed runs left behind under published outputs, and versions past retention.

``python -m jobs.gc --out URI [--out URI ...] [--keep 3] [--min-age-hours 6] [--json]``

Each ``--out`` is a published output (the feature job's ``--out``, ingest's ``--out`` and its
``_quarantine``; local or ``s3://``). A version no pointer ever named (a run that died before its
commit) is an orphan: it is never visible to readers, and is deleted once it is older than
``--min-age-hours`` (so a run still in flight is left alone). Committed versions beyond the
newest ``--keep`` are deleted too; the current one never is. Each job's next run does the
same for its own output; this command is for outputs whose job no longer runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from store import fs

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.gc", description=__doc__.splitlines()[0])
    parser.add_argument("--out", action="append", required=True, help="published output (repeatable)")
    parser.add_argument("--keep", type=int, default=3, help="committed versions kept, the current one included")
    parser.add_argument("--min-age-hours", type=float, default=6.0, help="orphans younger than this are kept")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    if args.keep < 1 or args.min_age_hours < 0:
        parser.error("--keep must be >= 1 and --min-age-hours >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    before = time.time() - args.min_age_hours * 3600
    removed = {}
    for out in args.out:
        try:
            removed[out] = fs.Publication(out).gc(keep=args.keep, before=before)
        except (fs.StoreError, ValueError) as exc:
            sys.stderr.write(f"error: {out}: {exc}\n")
            return 2
        logger.info("%s: removed %d version(s)", out, len(removed[out]))
    if args.json:
        sys.stdout.write(json.dumps({"removed": removed}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
