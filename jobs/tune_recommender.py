"""Tune a session recommender on a validation split carved from train (the CLI; library:
``pipelines.tune_recommender``).

    python -m jobs.tune_recommender --train TR --valid VALID --format session-tsv --model gru4rec \
        --num-samples 12 --epochs 6 --out-config best.yaml --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.tune_recommender import run

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.tune_recommender", description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--valid", help="validation file in the train format (default: carve from --train)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--format", required=True, choices=["session-tsv", "session-lines"])
    p.add_argument("--model", required=True, choices=["gru4rec", "sasrec", "hybrid", "vsknn", "vstan"],
                   help="hybrid: fit its parts, then grid-search the mixing weight on valid; vsknn/vstan: --grid")
    p.add_argument("--grid", action="append", help="kNN models: key=v1,v2 (repeatable; 'none' = off)")
    p.add_argument("--valid-sample", type=int, help="kNN models: score this many random validation pairs")
    p.add_argument("--parts-from", nargs="*", help="hybrid: artifacts of parts trained on the same split ('-' = fit)")
    p.add_argument("--config", help="YAML RecommenderConfig with the fixed parameters")
    p.add_argument("--metric", default="mrr@20", choices=["mrr@20", "recall@20", "recall@20+mrr@20"],
                   help="what the search maximises on valid (recall@20+mrr@20: their sum; hybrid only)")
    p.add_argument("--temperature-grid", help="hybrid: softmax temperatures of the neural part to search with the "
                                              "weight, e.g. 1,0.3,0.1 (default: the config's temperatures)")
    p.add_argument("--num-samples", type=int, default=12)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--grace-period", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--ray-temp-dir")
    p.add_argument("--storage")
    p.add_argument("--out-config", help="write the best config as YAML")
    p.add_argument("--smoke-test", action="store_true")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args = parse_args(argv)
    report = run(args)
    if args.json:
        sys.stdout.write(json.dumps(report, default=float) + "\n")
    else:
        logger.info("best: %s", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
