"""Train, evaluate and register a session recommender (the CLI; the TorchTrainer wiring is in
``pipelines.train_recommender``).

    python -m jobs.train_recommender --train PATH --test PATH --format session-tsv --model gru4rec --json

Baselines (pop, itemknn, vsknn, vstan) fit in process; torch models (gru4rec, sasrec) train
through Ray Train's TorchTrainer with ``--workers`` data-parallel workers (GPU when the
cluster has one). The artifact is saved, registered as ``recommender`` when
``--registry`` is given (champion with ``--promote`` or when none exists), and ``--json``
ends the output with one JSON line of metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models.session_rec.artifact import save_artifact
from models.session_rec.base import item_counts
from models.session_rec.config import load_config
from models.session_rec.data import load_dataset
from models.session_rec.evaluate import evaluate_model
from models.session_rec.predictor import REGISTRY_NAME
from pipelines.train_recommender import SMOKE, fit_any
from store.registry import Registry

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(args.config, model=args.model, workers=args.workers)
    params = cfg.model_params()
    if args.epochs is not None and "n_epochs" in params:
        params["n_epochs"] = args.epochs
    if args.smoke_test and "n_epochs" in params:
        params["n_epochs"] = 1
    logger.info("resolved config: %s", cfg.model_dump_json())
    limits = SMOKE if args.smoke_test else {}
    data = load_dataset(args.train, args.test, args.format, test_fraction=args.test_fraction, **limits)
    storage = args.storage or tempfile.mkdtemp(prefix="tdm-train-")
    t0 = time.perf_counter()
    model, train_metrics = fit_any(cfg.model, cfg, params, data, storage, args)
    train_seconds = time.perf_counter() - t0
    metrics = evaluate_model(model, data, tie=cfg.tie, batch_size=cfg.eval_batch_size)
    if cfg.model == "hybrid":  # the parts under the same protocol, same run
        for part, part_model in zip(cfg.hybrid.parts, model.parts, strict=True):
            pm = evaluate_model(part_model, data, tie=cfg.tie, batch_size=cfg.eval_batch_size)
            metrics.update({f"{part}_{k}": pm[k] for k in ("recall@20", "mrr@20", "recall@10", "mrr@10")})
    events_per_s = train_metrics.get("events_per_s") or data.n_train_events / max(train_seconds, 1e-9)
    report: dict[str, Any] = {"model": cfg.model, "protocol": data.protocol, "tie": cfg.tie,
                              **{k: round(v, 6) for k, v in metrics.items()},
                              "train_seconds": round(train_seconds, 3), "train_events_per_s": round(events_per_s, 1),
                              "workers": cfg.workers, "n_items": len(data.items)}  # type: ignore[arg-type]
    if "epoch" in train_metrics:  # torch models: epochs actually trained (fewer than n_epochs under a time budget)
        report["epochs_done"] = int(train_metrics["epoch"])
        report["epochs_planned"] = int(params.get("n_epochs", 0))
    training = {"config": {**cfg.model_dump(), cfg.model: params} if cfg.model != "pop" else cfg.model_dump(),
                "train_seconds": train_seconds, "events_per_s": events_per_s, "smoke_test": args.smoke_test,
                **{f"last_{k}": v for k, v in train_metrics.items() if isinstance(v, int | float)}}
    out_dir = Path(args.artifact_dir or tempfile.mkdtemp(prefix="tdm-rec-"))
    save_artifact(out_dir, model, data.items, item_counts(data.train, len(data.items)),  # type: ignore[arg-type]
                  training=training, metrics=metrics, data_window=data.window)
    report["artifact_dir"] = str(out_dir)
    if args.registry:
        registry = Registry(args.registry)
        mv = registry.register(REGISTRY_NAME, out_dir, {"model_type": cfg.model, "metrics": metrics,
                                                       "data_window": data.window})
        if args.promote or registry.champion(REGISTRY_NAME) is None:
            registry.set_champion(REGISTRY_NAME, mv.version, f"train_recommender {cfg.model} "
                                  f"recall@20={metrics.get('recall@20', 0):.4f}")
            report["promoted"] = True
        report["version"] = mv.version
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m jobs.train_recommender", description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="training data (file or parquet dir)")
    p.add_argument("--test", help="test data; optional for --format parquet (time split)")
    p.add_argument("--format", required=True, choices=["session-tsv", "session-lines", "prefix-target", "parquet"])
    p.add_argument("--model", choices=["gru4rec", "sasrec", "vsknn", "vstan", "itemknn", "pop", "hybrid"])
    p.add_argument("--config", help="YAML RecommenderConfig")
    p.add_argument("--parts-from", nargs="*", help="hybrid: artifacts of parts trained on this --train ('-' = fit)")
    p.add_argument("--epochs", type=int, help="override n_epochs")
    p.add_argument("--time-budget-min", type=float,
                   help="torch models: stop after the last epoch that fits this many minutes (epochs_done says how many)")
    p.add_argument("--workers", type=int, help="Ray Train data-parallel workers (torch models)")
    p.add_argument("--threads", type=int,
                   help="torch threads per Train worker (default: cluster CPUs / workers; GRU4Rec on 2 cores: 1 is faster)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="parquet time split")
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    p.add_argument("--promote", action="store_true", help="make this version the champion")
    p.add_argument("--artifact-dir", help="where to write the artifact (default: a temp dir)")
    p.add_argument("--storage", help="Ray Train storage path (default: a temp dir)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of a local Ray cluster (no RAY_ADDRESS)")
    p.add_argument("--ray-temp-dir", help="temp dir of a local Ray cluster")
    p.add_argument("--smoke-test", action="store_true", help="tiny data, one epoch")
    p.add_argument("--json", action="store_true", help="end with one JSON line of metrics")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args = parse_args(argv)
    report = run(args)
    if args.json:
        sys.stdout.write(json.dumps(report, default=float) + "\n")
    else:
        logger.info("result: %s", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
