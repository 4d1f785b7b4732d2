"""Precompute scores, recommendations and popular items into Redis (the CLI; library: ``pipelines.precompute``).

    python -m jobs.precompute --features DIR --registry URI --redis URL [--tenant T] [--ttl S]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.precompute import PrecomputeConfig, run
from store import publish

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.precompute", description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="feature job output (sessions/, sequences/, items/)")
    parser.add_argument("--registry", required=True, help="model registry URI")
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--tenant", default=None, help="publish only this tenant's rows")
    parser.add_argument("--ttl", type=int, default=publish.DEFAULT_TTL_S, help="TTL of published rows (s)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--popular-k", type=int, default=100)
    parser.add_argument("--tables", default="score,recs,popular")
    parser.add_argument("--recent-hours", type=float, default=None,
                        help="only sessions active within this many hours of the feature watermark")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = PrecomputeConfig(features=ns.features, registry=ns.registry, redis=ns.redis, tenant=ns.tenant,
                           ttl=ns.ttl, top_k=ns.top_k, popular_k=ns.popular_k,
                           tables=[t for t in ns.tables.split(",") if t], recent_hours=ns.recent_hours)
    logger.info("precompute config: %s", cfg.model_dump())
    import ray

    if not ray.is_initialized():
        ray.init()
    report = run(cfg)
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
