"""Sweep propensity models with Ray Tune (the CLI; library: ``pipelines.tune_propensity``).

``python -m jobs.tune_propensity --features PATH --label COL [--time-column COL] --trials N
[--trainer ray-train|booster] [--cv-folds K] [--warm-start JSON] [--registry URI] [--out DIR] [--json]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines import entrypoint, smoke
from pipelines.tune_propensity import METRIC, SweepConfig, tune_and_register

Result = dict[str, Any]  # split, trials, trainer, selection, best, threshold, test, baselines, trials_csv,
# artifact, sweep_seconds, seconds (+ version, champion with --registry)


class Config(SweepConfig, extra="forbid"):
    smoke_test: bool = False


def run(cfg: Config) -> Result:
    return tune_and_register(cfg)


def flags(p: argparse.ArgumentParser) -> None:
    entrypoint.feature_table_flags(p)
    p.add_argument("--trials", type=int, help="default 20")
    p.add_argument("--rounds", type=int, help="max boosting rounds per trial (ASHA max_t; default 300)")
    p.add_argument("--report-every", type=int, help="rounds between validation reports (default 10)")
    p.add_argument("--grace-rounds", type=int, help="ASHA grace period in rounds (default 30)")
    p.add_argument("--trainer", choices=["ray-train", "booster"],
                   help="ray-train (default): each trial fits through a Train V2 trainer; booster: in the trial process")
    p.add_argument("--cv-folds", type=int,
                   help="select on k-fold CV over train+validation (0: on the validation split; "
                        "default: 5 on a stratified split, 0 on a time split)")
    p.add_argument("--calibration-folds", type=int,
                   help="out-of-fold folds for the refit's calibration (default: the CV folds, else 3)")
    p.add_argument("--min-precision", type=float, help="default 0.3")
    p.add_argument("--seed", type=int)
    p.add_argument("--warm-start", help="JSON file: a list of configurations to try first")
    p.add_argument("--storage", help="Tune storage path (default: a temp dir)")
    p.add_argument("--registry", help="registry URI: register the refit best model")
    p.add_argument("--out", help="output dir for trials.csv and the model")


def fill_smoke(values: dict[str, Any], tmp: Path) -> None:
    smoke.feature_table_inputs(values, tmp)
    for key, value in (("trials", 2), ("rounds", 20), ("report_every", 10), ("grace_rounds", 10),
                       ("calibration_folds", 2)):
        values.setdefault(key, value)


def summary(r: Result) -> str:
    best, test = r["best"], r["test"]
    return (f"best {best['kind']}/{best['imbalance']} validation PR-AUC {best[METRIC]:.4f} -> test PR-AUC "
            f"{test['pr_auc']:.4f}, recall at the precision floor {test['recall_at_precision']:.3f}, ECE {test['ece']:.4f}")


JOB = entrypoint.Job(prog="python -m jobs.tune_propensity", description=__doc__.splitlines()[0], config=Config,
                     run=run, flags=flags, ray={"log_to_driver": False}, smoke=fill_smoke, summary=summary)


def main(argv: list[str] | None = None) -> int:
    return entrypoint.main(JOB, argv)


if __name__ == "__main__":
    raise SystemExit(main())
