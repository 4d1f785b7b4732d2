"""Events to feature tables on Ray (the CLI; ``pipelines.features`` is the library).

``python -m jobs.features --events DIR --out DIR [--as-of TS] [--since TS] [--incremental]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd
from pydantic import BaseModel, Field, field_validator

from pipelines import entrypoint, smoke
from pipelines.features import run as build_features


class Config(BaseModel, extra="forbid"):
    events: str = Field(description="canonical events: local dir or s3:// (date= partitions)")
    out: str = Field(description="output: local path (a symlink to the current version) or s3:// prefix "
                                 "(a _CURRENT pointer object)")
    as_of: str | None = Field(None, description="use only events before this UTC time")
    since: str | None = Field(None, description="reprocess partitions from this UTC time")
    incremental: bool = False
    lateness_hours: float = Field(24.0, ge=0)
    gap_minutes: float | None = Field(None, gt=0)
    buckets: int = Field(16, ge=1)
    now: str | None = Field(None, description="the job's clock for future-dated events (default: the wall clock)")
    max_future_minutes: float = Field(10.0, ge=0, description="events later than now + this are quarantined "
                                                             "as future_time")
    smoke_test: bool = False

    @field_validator("as_of", "since", "now")
    @classmethod
    def _utc_time(cls, value: str | None) -> str | None:
        if value is not None:
            pd.Timestamp(value, tz="UTC")  # raises ValueError naming the bad time
        return value


class Result(TypedDict):
    rows_in: int
    sessions: int
    sequences: int
    items: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    seconds: float
    events_per_s: float | None
    watermark: str | None


def run(cfg: Config) -> Result:
    manifest = build_features(cfg.events, cfg.out,  # a local path or s3:// prefix, never squashed by Path
                              as_of=pd.Timestamp(cfg.as_of, tz="UTC") if cfg.as_of else None,
                              since=pd.Timestamp(cfg.since, tz="UTC") if cfg.since else None,
                              incremental=cfg.incremental, lateness_hours=cfg.lateness_hours,
                              gap_minutes=cfg.gap_minutes, buckets=cfg.buckets,
                              now=pd.Timestamp(cfg.now, tz="UTC") if cfg.now else None,
                              max_future_minutes=cfg.max_future_minutes)
    m = manifest
    return Result(rows_in=m["rows_in"], sessions=m["sessions"], sequences=m["sequences"], items=m["items"],
                  quarantined=m["quarantined"], quarantine_reasons=m["quarantine_reasons"], seconds=m["seconds"],
                  events_per_s=m["events_per_s"], watermark=m["watermark"])


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", help="canonical events: local dir or s3:// (date= partitions)")
    p.add_argument("--out", help="output: local path (a symlink to the current version) or s3:// prefix "
                   "(a _CURRENT pointer object)")
    p.add_argument("--as-of", help="use only events before this UTC time (point-in-time snapshot)")
    p.add_argument("--since", help="reprocess partitions from this UTC time (default: watermark - lateness)")
    p.add_argument("--incremental", action="store_true", help="process only partitions newer than the watermark")
    p.add_argument("--lateness-hours", type=float, help="late events reprocessed (incremental; default 24)")
    p.add_argument("--gap-minutes", type=float,
                   help="re-sessionize by user with this inactivity gap (default: use the source session id)")
    p.add_argument("--buckets", type=int, help="session and user hash buckets (tasks of stages 2 and 3; default 16)")
    p.add_argument("--now", help="the job's clock for future-dated events (default: the wall clock, UTC)")
    p.add_argument("--max-future-minutes", type=float,
                   help="events later than now + this are quarantined as future_time (default 10)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """Tiny synthetic events (unless ``--events`` names some) and two buckets."""
    if "events" not in values:
        values["events"] = smoke.events_dir(tmp)
    values.setdefault("out", str(tmp / "features"))
    values.setdefault("buckets", 2)


def summary(r: Result) -> str:
    return (f"features: {r['rows_in']} events -> {r['sessions']} sessions, {r['quarantined']} quarantined "
            f"{r['quarantine_reasons']} in {r['seconds']:.1f}s")


JOB = entrypoint.Job(prog="python -m jobs.features", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, ray={"log_to_driver": False}, json="always", smoke=fill_smoke, summary=summary)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
