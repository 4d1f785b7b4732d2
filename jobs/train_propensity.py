"""Train a purchase-propensity model with Ray Train V2 and register it (the CLI; library:
``pipelines.train_propensity``).

``python -m jobs.train_propensity --features PATH --label COLUMN [--time-column COLUMN]
[--model lightgbm|xgboost] [--imbalance weight|downsample|focal|none] [--registry URI] [--json]``

LightGBM trains through ``ray.train.lightgbm.LightGBMTrainer`` and XGBoost through
``ray.train.xgboost.XGBoostTrainer``: in-memory frames reach the workers by object reference,
larger inputs through Ray Data (``--ingest``). The booster is calibrated on the validation
split, its serving threshold is the highest recall with precision >= the floor, and it is
evaluated once on the test split next to two baselines on the same split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines import entrypoint, smoke
from pipelines.train_propensity import TrainConfig, train_and_register

Result = dict[str, Any]  # model, imbalance, split, threshold, test, baselines, artifact, seconds
# (+ version, champion with --registry)


class Config(TrainConfig, extra="forbid"):
    smoke_test: bool = False


def run(cfg: Config) -> Result:
    return train_and_register(cfg)


def flags(p: argparse.ArgumentParser) -> None:
    entrypoint.feature_table_flags(p)
    p.add_argument("--model", choices=["lightgbm", "xgboost"], help="default lightgbm")
    p.add_argument("--imbalance", choices=["weight", "downsample", "focal", "none"], help="default weight")
    p.add_argument("--keep-rate", type=float, help="negatives kept with --imbalance downsample (default 0.2)")
    p.add_argument("--focal-alpha", type=float, help="positive weight with --imbalance focal (default 0.25)")
    p.add_argument("--focal-gamma", type=float, help="focusing parameter with --imbalance focal (default 2)")
    p.add_argument("--rounds", type=int, help="default 300")
    p.add_argument("--min-precision", type=float, help="precision floor for the threshold (default 0.3)")
    p.add_argument("--workers", type=int, help="Ray Train workers (default 2)")
    p.add_argument("--ingest", choices=["auto", "object_ref", "ray_data"],
                   help="how rows reach the Train workers (auto: object refs for in-memory frames up to "
                        "2 GiB of matrices, else Ray Data)")
    p.add_argument("--seed", type=int)
    p.add_argument("--registry", help="registry URI (local dir or s3://)")
    p.add_argument("--out", help="artifact directory (default: a temp dir)")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    smoke.feature_table_inputs(values, tmp)
    values.setdefault("rounds", 20)
    values.setdefault("workers", 1)


def summary(r: Result) -> str:
    t, b = r["test"], r["baselines"]
    return (f"test PR-AUC {t['pr_auc']:.4f} (logreg {b['logreg_balanced']['pr_auc']:.4f}, default lgbm "
            f"{b['lightgbm_default']['pr_auc']:.4f}); recall at the precision floor {t['recall_at_precision']:.3f}")


JOB = entrypoint.Job(prog="python -m jobs.train_propensity", description=__doc__.splitlines()[0], config=Config,
                     run=run, flags=flags, ray={"log_to_driver": False}, smoke=fill_smoke, summary=summary)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
