"""Real event logs -> canonical events by date; bad rows -> quarantine (the CLI; library: ``pipelines.ingest``).

``python -m jobs.ingest --format F --input PATH [--input PATH ...] --out DIR [--tenant T]
[--quarantine QDIR] [--gap-minutes M] [--json]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from pipelines import entrypoint, smoke
from pipelines.adapters import FORMATS
from pipelines.ingest import run as ingest_files

Result = dict[str, Any]  # format, files, rows_in, rows_out, quarantined (per reason), quarantined_total,
# lookup_rows, lookup_rejected, out, quarantine, partitions, seconds


class Config(BaseModel, extra="forbid"):
    format: str
    input: list[str] = Field(min_length=1, description="files, directories or URIs")
    out: str
    quarantine: str | None = None
    tenant: str | None = None
    gap_minutes: float = Field(30.0, gt=0)
    smoke_test: bool = False

    @field_validator("format")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"unknown format {value!r}; choose one of {list(FORMATS)}")
        return value


def run(cfg: Config) -> Result:
    return ingest_files(cfg.format, cfg.input, cfg.out, cfg.quarantine,  # local paths or s3:// prefixes
                        tenant=cfg.tenant, gap_minutes=cfg.gap_minutes)


def text(summary: Result) -> str:
    lines = [f"rows in {summary['rows_in']}, out {summary['rows_out']}, quarantined {summary['quarantined_total']}"]
    lines += [f"  quarantined {reason}: {n}" for reason, n in summary["quarantined"].items()]
    return "\n".join(lines)


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--input", action="append", help="file, directory or URI; repeatable")
    p.add_argument("--out", help="output directory (replaced if it is an earlier ingest output)")
    p.add_argument("--quarantine", help="quarantine directory (default: OUT_quarantine)")
    p.add_argument("--tenant", help="tenant for rows that carry none")
    p.add_argument("--gap-minutes", type=float, help="retailrocket session inactivity gap (default 30)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """Tiny synthetic canonical events as the input, unless inputs were given."""
    if "input" not in values:
        values.update(format="canonical", input=[smoke.events_dir(tmp / "raw")])
    values.setdefault("out", str(tmp / "events"))


JOB = entrypoint.Job(prog="python -m jobs.ingest", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, text=text, smoke=fill_smoke, summary=text)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
