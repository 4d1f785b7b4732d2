"""Print the synthetic generator's statistics next to the real samples' (the CLI; library:
``pipelines.synthetic_stats``).

``python -m jobs.calibrate [--events N] [--seed S] [--zipf-head K] [--data DIR]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, TypedDict

from pydantic import BaseModel, Field

from pipelines import entrypoint
from pipelines.synthetic_stats import DEFAULT_DATA, ZIPF_HEAD, calibrate, render


class Config(BaseModel, extra="forbid"):
    events: int = Field(100_000, gt=0, description="synthetic non-purchase events")
    seed: int = 0
    zipf_head: int = Field(ZIPF_HEAD, ge=3, description="ranks used in the Zipf fit")
    data: Path = Field(DEFAULT_DATA, description="the real samples (../shared/data)")
    smoke_test: bool = False


class Result(TypedDict):
    stats: dict[str, dict[str, Any]]
    events: int
    seed: int
    zipf_head: int
    seconds: float


def run(cfg: Config) -> Result:
    t0 = time.perf_counter()
    stats = calibrate(cfg.events, cfg.seed, cfg.data, cfg.zipf_head)
    return {"stats": stats, "events": cfg.events, "seed": cfg.seed, "zipf_head": cfg.zipf_head,
            "seconds": round(time.perf_counter() - t0, 2)}


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, help="synthetic non-purchase events (default 100,000)")
    p.add_argument("--seed", type=int)
    p.add_argument("--zipf-head", type=int, help=f"ranks used in the Zipf fit (default {ZIPF_HEAD})")
    p.add_argument("--data", help="the real samples (default ../shared/data)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    """A small synthetic sample; the real samples only when ``--data`` names them."""
    values.setdefault("events", 2_000)
    values.setdefault("data", str(tmp))


JOB = entrypoint.Job(prog="python -m jobs.calibrate", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, json="always", text=lambda r: render(r["stats"], r["zipf_head"]), smoke=fill_smoke)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
