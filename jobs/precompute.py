"""Precompute scores, recommendations and popular items into Redis (the CLI; library: ``pipelines.precompute``).

    python -m jobs.precompute --features DIR --registry URI --redis URL [--tenant T] [--ttl S]

Ray Data ``map_batches`` runs the serving predictors over the feature tables and each table
is published into a new Redis namespace whose pointer flips only when every block succeeded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import field_validator

from pipelines import entrypoint, smoke
from pipelines.precompute import PrecomputeConfig
from pipelines.precompute import run as precompute
from store.publish import DEFAULT_TTL_S

Result = dict[str, Any]  # run_id, and per table (score, recs, popular): its report or "skipped"


class Config(PrecomputeConfig, extra="forbid"):
    smoke_test: bool = False

    @field_validator("tables", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [t for t in value.split(",") if t] if isinstance(value, str) else value


def run(cfg: Config) -> Result:
    return precompute(cfg)


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", help="feature job output (sessions/, sequences/, items/)")
    p.add_argument("--registry", help="model registry URI")
    p.add_argument("--redis", help="redis://host:port/db")
    p.add_argument("--tenant", help="publish only this tenant's rows")
    p.add_argument("--ttl", type=int, help=f"TTL of published rows (s; default {DEFAULT_TTL_S})")
    p.add_argument("--top-k", type=int, help="default 20")
    p.add_argument("--popular-k", type=int, help="default 100")
    p.add_argument("--tables", help="comma-separated (default score,recs,popular)")
    p.add_argument("--recent-hours", type=float,
                   help="only sessions active within this many hours of the feature watermark")


def fill_smoke(values: dict[str, Any], tmp: Path) -> Callable[[], None] | None:
    """Tiny feature tables, a registry with both champions and, without --redis, a private redis-server."""
    if "features" not in values:
        values["features"] = smoke.feature_dir(tmp)
    if "registry" not in values:
        values["registry"] = smoke.propensity_registry(tmp)
        smoke.recommender_champion(values["registry"], tmp)
    if "redis" in values:
        return None
    values["redis"], stop = smoke.private_redis(tmp / "redis")
    return stop


JOB = entrypoint.Job(prog="python -m jobs.precompute", description=__doc__.splitlines()[0], config=Config, run=run,
                     flags=flags, ray={}, json="always", smoke=fill_smoke)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
