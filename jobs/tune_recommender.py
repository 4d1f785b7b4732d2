"""Tune a session recommender on a validation split carved from train (the CLI; library:
``pipelines.tune_recommender``).

    python -m jobs.tune_recommender --train TR --valid VALID --format session-tsv --model gru4rec \
        --num-samples 12 --epochs 6 --out-config best.yaml --json

GRU4Rec/SASRec: Optuna (TPE) + ASHA through Ray Tune (a private local Ray unless RAY_ADDRESS
is set); ``hybrid``: a grid over the mixing weight (and ``--temperature-grid``); ``vsknn``/
``vstan``: a grid over ``--grid key=v1,v2`` in process. The test split is never read.
``--config`` is a RecommenderConfig YAML (the job's own config file is ``--job-config``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines import entrypoint, smoke
from pipelines.tune_recommender import TuneConfig, tune

Result = dict[str, Any]  # model, metric, valid_pairs and per search: trials, best_valid, best_config (Tune);
# best, grid (kNN); parts, best_weights, valid (+ best_temperatures) (hybrid)


class Config(TuneConfig, extra="forbid"):
    pass


def run(cfg: Config) -> Result:
    return tune(cfg)


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train")
    p.add_argument("--valid", help="validation file in the train format (default: carve from --train)")
    p.add_argument("--valid-fraction", type=float, help="default 0.1")
    p.add_argument("--format", choices=["session-tsv", "session-lines"])
    p.add_argument("--model", choices=["gru4rec", "sasrec", "hybrid", "vsknn", "vstan"],
                   help="hybrid: fit its parts, then grid-search the mixing weight on valid; vsknn/vstan: --grid")
    p.add_argument("--grid", action="append", help="kNN models: key=v1,v2 (repeatable; 'none' = off)")
    p.add_argument("--valid-sample", type=int, help="kNN models: score this many random validation pairs")
    p.add_argument("--parts-from", nargs="*", help="hybrid: artifacts of parts trained on the same split ('-' = fit)")
    p.add_argument("--config", help="YAML RecommenderConfig with the fixed parameters")
    p.add_argument("--metric", choices=["mrr@20", "recall@20", "recall@20+mrr@20"],
                   help="what the search maximises on valid (default mrr@20; recall@20+mrr@20: their sum, hybrid only)")
    p.add_argument("--temperature-grid", help="hybrid: softmax temperatures of the neural part to search with the "
                                              "weight, e.g. 1,0.3,0.1 (default: the config's temperatures)")
    p.add_argument("--num-samples", type=int, help="default 12")
    p.add_argument("--epochs", type=int, help="default 6")
    p.add_argument("--grace-period", type=int, help="default 2")
    p.add_argument("--concurrency", type=int, help="default 2")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (no RAY_ADDRESS; default 2)")
    p.add_argument("--ray-temp-dir")
    p.add_argument("--storage")
    p.add_argument("--out-config", help="write the best config as YAML")
    p.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    if "train" not in values:
        train, _ = smoke.session_files(tmp)
        values.update(train=train, format="session-lines")
    values.setdefault("model", "gru4rec")
    values.setdefault("num_samples", 2)
    values.setdefault("epochs", 1)
    values.setdefault("grace_period", 1)


JOB = entrypoint.Job(prog="python -m jobs.tune_recommender", description=__doc__.splitlines()[0], config=Config,
                     run=run, flags=flags, smoke=fill_smoke, summary=lambda r: f"best: {r}")


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
