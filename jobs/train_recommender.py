"""Train, evaluate and register a session recommender (the CLI; library: ``pipelines.train_recommender``).

    python -m jobs.train_recommender --train PATH --test PATH --format session-tsv --json

``--model auto`` (the default) chooses the model family, its epochs and the hybrid weights (kNN,
GRU4Rec, a repeat head and, with ``--item-categories``, a category fallback) on a validation split
carved from the end of ``--train``, within ``--time-budget-min`` CPU minutes (default 90;
models.session_rec.auto). Every run reports cold-start slices (one-click sessions, unseen
targets, repeats) beside popularity. Baselines (pop, itemknn, vsknn, vstan) fit in process; torch models (gru4rec, sasrec) train
through Ray Train's TorchTrainer with ``--workers`` data-parallel workers (GPU when the
cluster has one; a private local Ray unless RAY_ADDRESS is set). The artifact is saved,
registered as ``recommender`` when ``--registry`` is given (champion when none exists, or with
``--promote`` when it passes the promotion gates), and ``--json`` ends with one JSON line of metrics.
``--config`` is a RecommenderConfig YAML (the job's own config file is ``--job-config``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines import entrypoint, smoke
from pipelines.train_recommender import TrainConfig, train_and_register

Result = dict[str, Any]  # model, protocol, tie, the metrics (recall@k, mrr@k, ...), train_seconds,
# train_events_per_s, workers, n_items, artifact_dir (+ epochs_done/planned, version, promoted)


class Config(TrainConfig, extra="forbid"):
    pass


def run(cfg: Config) -> Result:
    return train_and_register(cfg)


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", help="training data (file or parquet dir)")
    p.add_argument("--test", help="test data; optional for --format parquet (time split)")
    p.add_argument("--format", choices=["session-tsv", "session-lines", "prefix-target", "parquet", "diginetica-views"])
    p.add_argument("--model", choices=["auto", "gru4rec", "sasrec", "vsknn", "vstan", "itemknn", "pop", "hybrid"],
                   help="default auto: family and hybrid weights chosen on a validation split carved from --train")
    p.add_argument("--item-categories", help="item table (itemId;categoryId): its items join the catalogue; a "
                                             "category fallback is an auto candidate and a cold-start baseline")
    p.add_argument("--config", help="YAML RecommenderConfig")
    p.add_argument("--parts-from", nargs="*", help="hybrid: artifacts of parts trained on this --train ('-' = fit)")
    p.add_argument("--epochs", type=int, help="override n_epochs")
    p.add_argument("--time-budget-min", type=float,
                   help="torch models: stop after the last epoch that fits this many minutes (epochs_done says how "
                        "many); auto: CPU minutes for the whole choice (default 90)")
    p.add_argument("--workers", type=int, help="Ray Train data-parallel workers (torch models)")
    p.add_argument("--threads", type=int,
                   help="torch threads per Train worker (default: cluster CPUs / workers; GRU4Rec on 2 cores: 1 is faster)")
    p.add_argument("--test-fraction", type=float, help="parquet / diginetica-views time split (default 0.1)")
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    p.add_argument("--tenant", help="train on this tenant's rows and register in its namespace (default: shared)")
    p.add_argument("--promote", action="store_true",
                   help="make this version the champion if it passes the promotion gates (recall@20 vs the champion)")
    p.add_argument("--artifact-dir", help="where to write the artifact (default: a temp dir)")
    p.add_argument("--storage", help="Ray Train storage path (default: $TANDEM_SCRATCH_URI, else under an s3:// "
                   "registry, else a temp dir)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray cluster (no RAY_ADDRESS; default 2)")
    p.add_argument("--ray-temp-dir", help="temp dir of a local Ray cluster")
    p.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    if "train" not in values:
        train, test = smoke.session_files(tmp)
        values.update(train=train, test=test, format="session-lines")


JOB = entrypoint.Job(prog="python -m jobs.train_recommender", description=__doc__.splitlines()[0], config=Config,
                     run=run, flags=flags, smoke=fill_smoke, summary=lambda r: f"result: {r}")


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
