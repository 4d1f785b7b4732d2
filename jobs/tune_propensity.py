"""Sweep propensity models with Ray Tune (the CLI; library: ``pipelines.tune_propensity``).

``python -m jobs.tune_propensity --features PATH --label COL [--time-column COL] --trials N
[--trainer ray-train|booster] [--cv-folds K] [--warm-start JSON] [--registry URI] [--out DIR] [--json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from models.propensity.data import DataError
from pipelines.tune_propensity import METRIC, run

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.tune_propensity", description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="feature table: Parquet file/dir or CSV")
    parser.add_argument("--label", required=True, help="binary label column")
    parser.add_argument("--time-column", default=None, help="split by this column's time order")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=300, help="max boosting rounds per trial (ASHA max_t)")
    parser.add_argument("--report-every", type=int, default=10, help="rounds between validation reports")
    parser.add_argument("--grace-rounds", type=int, default=30, help="ASHA grace period in rounds")
    parser.add_argument("--trainer", choices=["ray-train", "booster"], default="ray-train",
                        help="ray-train: each trial fits through a Train V2 trainer; booster: in the trial process")
    parser.add_argument("--cv-folds", type=int, default=-1,
                        help="select on k-fold CV over train+validation (0: on the validation split; "
                             "default: 5 on a stratified split, 0 on a time split)")
    parser.add_argument("--calibration-folds", type=int, default=0,
                        help="out-of-fold folds for the refit's calibration (default: the CV folds, else 3)")
    parser.add_argument("--min-precision", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-start", default=None, help="JSON file: a list of configurations to try first")
    parser.add_argument("--storage", default=None, help="Tune storage path (default: a temp dir)")
    parser.add_argument("--registry", default=None, help="registry URI: register the refit best model")
    parser.add_argument("--out", default=None, help="output dir for trials.csv and the model")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
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
    logger.info("best %s/%s validation PR-AUC %.4f -> test PR-AUC %.4f, recall@P>=%.2f %.3f, ECE %.4f",
                result["best"]["kind"], result["best"]["imbalance"], result["best"][METRIC],
                result["test"]["pr_auc"], args.min_precision, result["test"]["recall_at_precision"],
                result["test"]["ece"])
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
