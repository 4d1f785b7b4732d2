"""Train a purchase-propensity model with Ray Train V2 and register it.

``python -m jobs.train_propensity --features PATH --label COLUMN [--time-column COLUMN]
[--model lightgbm|xgboost] [--imbalance weight|downsample|focal|none] [--registry URI] [--json]``

LightGBM trains through ``ray.train.lightgbm.LightGBMTrainer`` and XGBoost through
``ray.train.xgboost.XGBoostTrainer`` (data-parallel ``train_loop_per_worker``; see
``pipelines.train_propensity``: in-memory frames reach the workers by object reference,
larger inputs through Ray Data, ``--ingest``). The booster
is calibrated on the validation split, its serving threshold is the highest recall with
precision >= the floor, and it is evaluated once on the test split next to two baselines
(class-weighted logistic regression and LightGBM with default settings) on the same split.
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

import numpy as np

from models.evaluation.classification import evaluate
from models.propensity.artifact import save
from models.propensity.baselines import baselines
from models.propensity.data import LABEL, DataError, prepare
from models.propensity.finalize import finalize
from models.propensity.model import PropensityConfig, downsample_negatives, raw_predict, to_matrix
from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
from pipelines.train_propensity import train_distributed
from store.registry import Registry

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    raw, parts, features, categories = prepare(args.features, args.label, args.time_column, args.seed)
    cfg = PropensityConfig(kind=args.model, imbalance=args.imbalance, num_boost_round=args.rounds, seed=args.seed,
                           keep_rate=args.keep_rate, focal_alpha=args.focal_alpha, focal_gamma=args.focal_gamma)
    fit_train = (downsample_negatives(parts.train, LABEL, cfg.keep_rate, cfg.seed)
                 if cfg.imbalance == "downsample" else parts.train)
    storage = tempfile.mkdtemp(prefix="tdm-train-")
    fitted = train_distributed(cfg, fit_train, parts.validation, features, args.workers, storage,
                               ingest=args.ingest)
    booster = fitted.booster
    art = finalize(booster, cfg, parts.validation, features, LABEL, args.min_precision,
                   base_rate=float(parts.train[LABEL].mean()))
    art.categories = categories
    art.data_window = {**parts.window(args.time_column), "source": args.features, "label": args.label,
                       "rows": {"train": len(parts.train), "validation": len(parts.validation), "test": len(parts.test)}}
    out = Path(args.out or tempfile.mkdtemp(prefix="tdm-propensity-"))
    save(out, booster, art)
    predictor = PropensityPredictor(str(out))
    # raw test rows: the predictor encodes categorical columns itself (the encoded frame would map to NaN)
    test_scores = predictor.predict_proba(raw.loc[parts.test.index])
    model_metrics = evaluate(parts.test[LABEL].to_numpy(), test_scores, args.min_precision).as_dict()
    raw_val = raw_predict(booster, cfg.kind, to_matrix(parts.validation, features))
    art.metrics["test"] = model_metrics
    art.metrics["validation_scores"] = np.quantile(predictor.calibrator(raw_val), np.linspace(0, 1, 21)).tolist()
    save(out, booster, art)  # with test metrics and the validation score quantiles for the PSI gate
    result: dict[str, Any] = {"model": cfg.kind, "imbalance": cfg.imbalance, "split": parts.kind,
                              "threshold": art.threshold, "test": model_metrics,
                              "baselines": baselines(parts.train, parts.test, features, args.min_precision),
                              "artifact": str(out), "seconds": round(time.perf_counter() - t0, 1)}
    if args.registry:
        reg = Registry(args.registry)
        mv = reg.register(REGISTRY_NAME, out, {"metrics": art.metrics, "data_window": art.data_window,
                                               "config": art.config, "kind": cfg.kind})
        result["version"] = mv.version
        if reg.champion(REGISTRY_NAME) is None:
            reg.set_champion(REGISTRY_NAME, mv.version, "first model of this registry")
            result["champion"] = True
        else:
            result["champion"] = False
            logger.info("registered candidate %s; promote it with python -m jobs.promote --registry %s "
                        "--candidate %s", mv.version, args.registry, mv.version)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.train_propensity", description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="feature table: Parquet file/dir or CSV")
    parser.add_argument("--label", required=True, help="binary label column")
    parser.add_argument("--time-column", default=None, help="split by this column's time order")
    parser.add_argument("--model", choices=["lightgbm", "xgboost"], default="lightgbm")
    parser.add_argument("--imbalance", choices=["weight", "downsample", "focal", "none"], default="weight")
    parser.add_argument("--keep-rate", type=float, default=0.2, help="negatives kept with --imbalance downsample")
    parser.add_argument("--focal-alpha", type=float, default=0.25, help="positive weight with --imbalance focal")
    parser.add_argument("--focal-gamma", type=float, default=2.0, help="focusing parameter with --imbalance focal")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--min-precision", type=float, default=0.3, help="precision floor for the threshold")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    parser.add_argument("--ingest", choices=["auto", "object_ref", "ray_data"], default="auto",
                        help="how rows reach the Train workers (auto: object refs for in-memory frames up to "
                             "2 GiB of matrices, else Ray Data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--registry", default=None, help="registry URI (local dir or s3://)")
    parser.add_argument("--out", default=None, help="artifact directory (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of metrics")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    try:
        result = run(args)
    except DataError as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        return 2
    t, b = result["test"], result["baselines"]
    logger.info("test PR-AUC %.4f (logreg %.4f, default lgbm %.4f); recall@P>=%.2f %.3f", t["pr_auc"],
                b["logreg_balanced"]["pr_auc"], b["lightgbm_default"]["pr_auc"], args.min_precision,
                t["recall_at_precision"])
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
