"""Precompute scores, recommendations and popular items into Redis (the CLI; library: ``pipelines.precompute``).

    python -m jobs.precompute --features DIR --registry URI --redis URL [--tenant T] [--ttl S]

The serving predictors score the feature tables and each table is published into a new Redis
namespace whose pointer flips only when every block succeeded. The run holds the publication
lease (``store.lease``): while a refresh loop (or another run) holds it, the job exits 3 naming
the holder, or waits ``--lease-wait`` seconds for it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import field_validator

from pipelines import entrypoint, smoke
from pipelines.precompute import PrecomputeConfig
from pipelines.precompute import run as precompute
from store.lease import LeaseError

logger = logging.getLogger(__name__)

Result = dict[str, Any]  # run_id, per table (score, recs, popular) its report or "skipped"; failed tenants


class Config(PrecomputeConfig, extra="forbid"):
    smoke_test: bool = False

    @field_validator("tables", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [t for t in value.split(",") if t] if isinstance(value, str) else value


def run(cfg: Config) -> Result:
    try:
        return precompute(cfg)
    except LeaseError as exc:  # a refresh loop (or another publisher) holds the lease: try later or --lease-wait
        logger.error("%s", exc)
        return {"error": str(exc), "lease_held": True}


def exit_code(result: Result) -> int:
    """3: the lease is held by another run; 1: a tenant's commit failed (the others are live)."""
    return 3 if result.get("lease_held") else 1 if result.get("failed") else 0


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", help="feature job output (sessions/, sequences/, items/)")
    p.add_argument("--registry", help="model registry URI")
    p.add_argument("--redis", help="redis://host:port/db")
    p.add_argument("--tenant", help="publish only this tenant's rows")
    p.add_argument("--every", type=float, dest="cadence_s",
                   help="how often you run this publication (s); rows live a few of these (default daily)")
    p.add_argument("--ttl", type=int, help="TTL of published rows (s; default 4 x --every)")
    p.add_argument("--lease-wait", type=float, dest="lease_wait_s",
                   help="wait this many seconds for the publication lease (held by a running refresh loop)")
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
                     flags=flags, ray={}, json="always", smoke=fill_smoke, exit_code=exit_code)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
