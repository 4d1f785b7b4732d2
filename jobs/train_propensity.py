"""Train a purchase-propensity model with Ray Train V2 and register it (the CLI; library:
``pipelines.train_propensity``).

``python -m jobs.train_propensity --features PATH --label COLUMN [--time-column COLUMN]
[--model lightgbm|xgboost] [--imbalance auto|weight|downsample|focal|none] [--calibration auto|none|platt|isotonic]
[--exclude COLUMN] [--registry URI] [--json]``

By default the job chooses its imbalance strategy, round count and calibration by
cross-validation on the training window only (time-ordered folds with ``--time-column``),
against plain default LightGBM, which stays a candidate and is kept when nothing beats it on
the folds and on validation (``models.propensity.select``; the JSON's ``selection`` says what
was tried and why). The chosen configuration trains through ``ray.train.lightgbm.LightGBMTrainer``
or ``ray.train.xgboost.XGBoostTrainer``: in-memory frames reach the workers by object reference,
larger inputs through Ray Data (``--ingest``). Columns are typed and encoded on the training
rows (``models.propensity.encoding``: categorical codes with rare/unseen and missing buckets;
unusable columns are dropped and named). The model is calibrated on the validation split, its
serving threshold is the highest recall with precision >= the floor, and it is evaluated once
on the test split next to two baselines on the same split, with bootstrap intervals, the
operating point and a decile table (``models.propensity.report``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines import entrypoint, smoke
from pipelines.train_propensity import TrainConfig, train_and_register

Result = dict[str, Any]  # model, imbalance, selected, calibration, rounds, split, threshold, test, baselines,
# vs_lightgbm_default, validation, selection, trainer, columns, artifact, seconds (+ version, champion with --registry)


class Config(TrainConfig, extra="forbid"):
    smoke_test: bool = False


def run(cfg: Config) -> Result:
    return train_and_register(cfg)


def flags(p: argparse.ArgumentParser) -> None:
    entrypoint.feature_table_flags(p)
    p.add_argument("--model", choices=["lightgbm", "xgboost"], help="default lightgbm")
    p.add_argument("--imbalance", choices=["auto", "weight", "downsample", "focal", "none"],
                   help="default auto: chosen by cross-validation on the training window (models.propensity.select); "
                        "a named strategy is the only one tried against default LightGBM")
    p.add_argument("--calibration", choices=["auto", "none", "platt", "isotonic"],
                   help="default auto: chosen by cross-fitted log loss on the training folds")
    p.add_argument("--exclude", action="append", metavar="COLUMN",
                   help="a column never to use as a feature (repeatable)")
    p.add_argument("--keep-rate", type=float, help="negatives kept with --imbalance downsample (default 0.2)")
    p.add_argument("--focal-alpha", type=float, help="positive weight with --imbalance focal (default 0.25)")
    p.add_argument("--focal-gamma", type=float, help="focusing parameter with --imbalance focal (default 2)")
    p.add_argument("--rounds", type=int, help="most boosting rounds; the count is chosen below it by "
                                               "cross-validation (default 1000)")
    p.add_argument("--min-precision", type=float, help="precision floor for the threshold (default 0.3)")
    p.add_argument("--workers", type=int, help="Ray Train workers (default 2)")
    p.add_argument("--ingest", choices=["auto", "object_ref", "ray_data"],
                   help="how rows reach the Train workers (auto: object refs for in-memory frames up to "
                        "2 GiB of matrices, else Ray Data)")
    p.add_argument("--seed", type=int)
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    p.add_argument("--tenant", help="train on this tenant's rows and register in its namespace (default: shared)")
    p.add_argument("--name", choices=["propensity", "pctr"],
                   help="registry name (default propensity; pctr: a click model for /v1/bid)")
    p.add_argument("--out", help="artifact directory (default: a temp dir)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    smoke.feature_table_inputs(values, tmp)
    values.setdefault("rounds", 20)
    values.setdefault("workers", 1)


def summary(r: Result) -> str:
    t, b, vs = r["test"], r["baselines"], r["vs_lightgbm_default"]
    return (f"selected {r['selected']} ({r['selection']['reason']}); test PR-AUC {t['pr_auc']:.4f} {t['pr_auc_ci']} "
            f"(logreg {b['logreg_balanced']['pr_auc']:.4f}, default lgbm {b['lightgbm_default']['pr_auc']:.4f}; "
            f"difference {vs['pr_auc_diff']:+.4f} {vs['pr_auc_diff_ci']}); recall at the served threshold "
            f"{t['operating_point']['recall']:.3f} {t['operating_point']['recall_ci']}")


JOB = entrypoint.Job(prog="python -m jobs.train_propensity", description=__doc__.splitlines()[0], config=Config,
                     run=run, flags=flags, ray={"log_to_driver": False}, smoke=fill_smoke, summary=summary)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
