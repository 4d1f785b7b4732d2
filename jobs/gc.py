"""Remove what crashed runs left under published outputs, and versions past retention (the CLI;
library: ``store.fs.Publication.gc``).

``python -m jobs.gc --out URI [--out URI ...] [--keep 3] [--min-age-hours 6] [--json]``

Each ``--out`` is a published output (the feature job's ``--out``, ingest's ``--out`` and its
``_quarantine``; local or ``s3://``). A version no pointer ever named (a run that died before its
commit) is an orphan: never visible to readers, it is deleted once older than ``--min-age-hours``
(so a run still in flight is left alone). Committed versions beyond the newest ``--keep`` are
deleted too; the current one never is. Each job's next run does the same for its own output;
this command is for outputs whose job no longer runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, TypedDict

from pydantic import BaseModel, Field

from pipelines import entrypoint
from store import fs


class Config(BaseModel, extra="forbid"):
    out: list[str] = Field(min_length=1, description="published outputs (local paths or s3:// prefixes)")
    keep: int = Field(3, ge=1, description="committed versions kept, the current one included")
    min_age_hours: float = Field(6.0, ge=0, description="orphans younger than this are kept")
    smoke_test: bool = False


class Result(TypedDict):
    removed: dict[str, list[str]]


def run(cfg: Config) -> Result:
    before = time.time() - cfg.min_age_hours * 3600
    return Result(removed={out: fs.Publication(out).gc(keep=cfg.keep, before=before) for out in cfg.out})


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", action="append", help="published output (repeatable)")
    p.add_argument("--keep", type=int, help="committed versions kept, the current one included (default 3)")
    p.add_argument("--min-age-hours", type=float, help="orphans younger than this are kept (default 6)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """An output with one committed version and one old orphan."""
    if "out" not in values:
        pub = fs.Publication(tmp / "features")
        pub.commit(pub.begin())
        pub.begin(time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() - 86400)) + "-0000aa")
        values["out"] = [str(tmp / "features")]


def summary(r: Result) -> str:
    return "; ".join(f"{out}: removed {len(v)} version(s)" for out, v in r["removed"].items())


JOB = entrypoint.Job(prog="python -m jobs.gc", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, smoke=fill_smoke, summary=summary, input_errors=(ValueError, fs.StoreError))


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
