"""Synthetic clickstream calibrated to the real samples (the CLI; library: ``pipelines.synthetic``).

``python -m jobs.generate --events N --out DIR --seed S [--days D] [--items I]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TypedDict

import pyarrow.compute as pc
from pydantic import Field

from pipelines import entrypoint
from pipelines.synthetic import GeneratorConfig, generate, replace_partitioned


class Config(GeneratorConfig, extra="forbid"):
    """The generator's knobs (``GeneratorConfig``) plus where the events go."""

    out: str = Field(description="output directory (replaced if it exists)")
    smoke_test: bool = False


class Result(TypedDict):
    events: int
    sessions: int
    purchase_rate: float
    days: int
    out: str
    seconds: float


def run(cfg: Config) -> Result:
    t0 = time.perf_counter()
    table = generate(GeneratorConfig.model_validate(cfg.model_dump(exclude={"out", "smoke_test"})))
    counts = replace_partitioned(table, Path(cfg.out))
    n_sessions = pc.count_distinct(table["session_id"]).as_py()
    n_buy = pc.count_distinct(table.filter(pc.equal(table["event_type"], "purchase"))["session_id"]).as_py()
    return {"events": table.num_rows, "sessions": n_sessions, "purchase_rate": round(n_buy / n_sessions, 4),
            "days": len(counts), "out": cfg.out, "seconds": round(time.perf_counter() - t0, 2)}


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, help="number of non-purchase events (default 1,000,000)")
    p.add_argument("--out", help="output directory (replaced if it exists)")
    p.add_argument("--seed", type=int)
    p.add_argument("--days", type=int, help="default 7")
    p.add_argument("--items", type=int, help="default 50,000")
    p.add_argument("--tenants", type=int, help="default 1")
    p.add_argument("--start", help="first day, YYYY-MM-DD (UTC; default 2026-11-01)")


def fill_smoke(values: dict[str, object], tmp: Path) -> None:
    values.setdefault("events", 2_000)
    values.setdefault("days", 2)
    values.setdefault("items", 500)
    values.setdefault("out", str(tmp / "events"))


JOB = entrypoint.Job(prog="python -m jobs.generate", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, json="always", smoke=fill_smoke, summary=lambda r: f"generated {r}")


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
