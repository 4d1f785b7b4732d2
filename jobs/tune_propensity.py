"""Sweep propensity models with Ray Tune (OptunaSearch + ASHA on validation PR-AUC).

``python -m jobs.tune_propensity --features PATH --label COL [--time-column COL] --trials N
[--trainer booster|ray-train] [--registry URI] [--out DIR] [--json]``

The search covers both families (LightGBM, XGBoost) x the imbalance strategies (weight,
downsample with the log-odds correction, none) x the key booster hyperparameters.

Trainables (``--trainer``):

- ``booster`` (default): a function trainable that fits the booster itself on one CPU and
  reports validation PR-AUC every ``--report-every`` rounds, so ASHA stops weak trials
  early. One trial holds one CPU, so ``max_concurrent_trials`` = the cluster's CPUs.
- ``ray-train``: the Train V2 way, a function that builds and fits a 1-worker
  ``LightGBMTrainer``/``XGBoostTrainer`` whose ``ray.train.report`` calls reach Tune through
  ``ray.tune.integration.ray_train.TuneReportCallback``. Each trial holds 0.01 CPU for the
  function (Tune refuses an empty request) plus its worker's CPU, so on 2 CPUs only one
  trial runs at a time, and each pays a Train run's start-up (~14 s here). Observed on the
  2-CPU cluster: the first trial reports every step to Tune, but the next trial's worker
  group waited for a CPU past Train's 60 s startup timeout (retried, still waiting), so the
  default is ``booster``, which also lets ASHA stop a trial without tearing down a Train run.

The test split is never read during the sweep. The best configuration is refit on
train + validation at its best round count; because no held-out rows remain, its
calibration and threshold come from out-of-fold scores (``--calibration-folds``) over
train + validation. It is then evaluated once on test and, with ``--registry``, registered.
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
import pandas as pd

from models.evaluation.classification import evaluate, pr_auc, recall_at_precision
from models.propensity.artifact import PropensityArtifact, save
from models.propensity.calibration import Calibrator
from models.propensity.data import LABEL, DataError, Split, prepare
from models.propensity.model import (
    PropensityConfig,
    downsample_negatives,
    fit_booster,
    raw_predict,
    to_matrix,
)
from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
from models.registry import Registry, code_version

logger = logging.getLogger(__name__)
METRIC = "val_pr_auc"
TUNED = ("kind", "imbalance", "keep_rate", "learning_rate", "num_leaves", "max_depth", "min_child_samples",
         "feature_fraction", "bagging_fraction", "reg_lambda")


def search_space() -> dict[str, Any]:
    from ray import tune

    return {"kind": tune.choice(["lightgbm", "xgboost"]), "imbalance": tune.choice(["weight", "downsample", "none"]),
            "keep_rate": tune.uniform(0.05, 0.5), "learning_rate": tune.loguniform(0.02, 0.3),
            "num_leaves": tune.randint(8, 128), "max_depth": tune.randint(3, 11),
            "min_child_samples": tune.lograndint(5, 300), "feature_fraction": tune.uniform(0.5, 1.0),
            "bagging_fraction": tune.uniform(0.5, 1.0), "reg_lambda": tune.loguniform(1e-3, 10.0)}


def _config(params: dict[str, Any], rounds: int, seed: int) -> PropensityConfig:
    return PropensityConfig(**{k: params[k] for k in TUNED if k in params}, num_boost_round=rounds,
                            early_stopping_rounds=0, num_threads=1, seed=seed)


class _Progress:
    """Scores validation every ``every`` rounds; ``report`` receives (rounds, best PR-AUC, best rounds)."""

    def __init__(self, kind: str, x_val: np.ndarray, y_val: np.ndarray, every: int, total: int, report: Any):
        self.kind, self.x_val, self.y_val, self.every, self.total, self.report = kind, x_val, y_val, every, total, report
        self.best, self.best_rounds = -1.0, 0

    def step(self, model: Any, rounds: int) -> None:
        if rounds % self.every and rounds != self.total:
            return
        if self.kind == "lightgbm":
            scores = model.predict(self.x_val, num_iteration=rounds, num_threads=1)
        else:
            scores = model.inplace_predict(self.x_val, iteration_range=(0, rounds))
        value = pr_auc(self.y_val, np.asarray(scores, dtype=np.float64))
        if value > self.best:
            self.best, self.best_rounds = value, rounds
        self.report({"rounds": rounds, METRIC: self.best, "best_rounds": self.best_rounds, "last_pr_auc": value})

    def callbacks(self) -> list[Any]:
        if self.kind == "lightgbm":
            def lgb_callback(env: Any) -> None:
                self.step(env.model, env.iteration + 1)

            return [lgb_callback]
        import xgboost as xgb

        progress = self

        class XgbCallback(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                progress.step(model, epoch + 1)
                return False

        return [XgbCallback()]


def _fit_with_progress(params: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame, features: list[str],
                       rounds: int, every: int, seed: int, report: Any) -> None:
    cfg = _config(params, rounds, seed)
    fit_df = downsample_negatives(train, LABEL, cfg.keep_rate, seed) if cfg.imbalance == "downsample" else train
    x_val, y_val = to_matrix(val, features), val[LABEL].to_numpy(np.float64)
    progress = _Progress(cfg.kind, x_val, y_val, every, rounds, report)
    fit_booster(cfg, to_matrix(fit_df, features), fit_df[LABEL].to_numpy(np.float64), None, None, features,
                callbacks=progress.callbacks())


def booster_trainable(params: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame, features: list[str],
                      rounds: int, every: int, seed: int) -> None:
    """Tune function trainable: fits the booster on this trial's CPU, reports every ``every`` rounds."""
    from ray import tune

    _fit_with_progress(params, train, val, features, rounds, every, seed, tune.report)


def _train_v2_loop(loop: dict[str, Any]) -> None:
    """Ray Train worker loop of the ``ray-train`` trainable (1 worker: all of train)."""
    import ray
    import ray.train

    _fit_with_progress(loop["params"], ray.get(loop["train"]), ray.get(loop["validation"]), loop["features"],
                       loop["rounds"], loop["every"], loop["seed"], ray.train.report)


def ray_train_trainable(params: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame, features: list[str],
                        rounds: int, every: int, seed: int) -> None:
    """Tune function trainable that builds and fits a Train V2 trainer (metrics reach Tune by callback)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    # Frames go by object ref, not Ray Data: Data's read tasks need a CPU of their own, which a
    # 2-CPU cluster running trial + worker does not have (the trial hangs waiting for it).
    common = {"train_loop_config": {"params": params, "features": features, "rounds": rounds, "every": every,
                                    "seed": seed, "train": ray.put(train), "validation": ray.put(val)},
              "scaling_config": ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
              "run_config": RunConfig(name=f"trial-{int(time.time() * 1000)}", callbacks=[TuneReportCallback()],
                                      storage_path=tempfile.mkdtemp(prefix="tdm-tune-train-"))}
    if params["kind"] == "lightgbm":
        from ray.train.lightgbm import LightGBMTrainer

        LightGBMTrainer(_train_v2_loop, **common).fit()
    else:
        from ray.train.xgboost import XGBoostTrainer

        XGBoostTrainer(_train_v2_loop, **common).fit()


def refit_with_oof_calibration(cfg: PropensityConfig, data: pd.DataFrame, features: list[str], folds: int,
                               min_precision: float) -> tuple[Any, Calibrator, float, np.ndarray]:
    """Fit on all of ``data``; calibration and threshold from ``folds``-fold out-of-fold scores."""
    y = data[LABEL].to_numpy(np.float64)
    rng = np.random.default_rng(cfg.seed)
    fold = np.empty(len(data), dtype=int)
    for cls in (0, 1):  # stratified folds
        idx = np.flatnonzero(y == cls)
        fold[idx] = rng.permutation(len(idx)) % folds
    oof = np.empty(len(data))
    for k in range(folds):
        fit_df = data.iloc[np.flatnonzero(fold != k)]
        if cfg.imbalance == "downsample":
            fit_df = downsample_negatives(fit_df, LABEL, cfg.keep_rate, cfg.seed)
        booster = fit_booster(cfg, to_matrix(fit_df, features), fit_df[LABEL].to_numpy(np.float64), None, None,
                              features)
        held = np.flatnonzero(fold == k)
        oof[held] = raw_predict(booster, cfg.kind, to_matrix(data.iloc[held], features))
    keep = cfg.keep_rate if cfg.imbalance == "downsample" else 1.0
    calibrator = Calibrator(keep_rate=keep).fit(oof, y)
    scores = calibrator(oof)
    _, threshold = recall_at_precision(y, scores, min_precision)
    if not np.isfinite(threshold):
        threshold = float(np.max(scores))
    fit_df = downsample_negatives(data, LABEL, cfg.keep_rate, cfg.seed) if cfg.imbalance == "downsample" else data
    booster = fit_booster(cfg, to_matrix(fit_df, features), fit_df[LABEL].to_numpy(np.float64), None, None, features)
    return booster, calibrator, float(threshold), scores


def sweep(args: argparse.Namespace, parts: Split, features: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    cpus = int(ray.cluster_resources().get("CPU", 1))
    # booster: 1 CPU per trial; ray-train: a near-zero trial function + its 1-CPU Train worker
    trial_cpu = 1.0 if args.trainer == "booster" else 0.01
    concurrent = max(1, int(cpus // (trial_cpu + (0.0 if args.trainer == "booster" else 1.0))))
    cols = features + [LABEL]
    fn = booster_trainable if args.trainer == "booster" else ray_train_trainable
    trainable = tune.with_parameters(fn, train=parts.train[cols], val=parts.validation[cols], features=features,
                                     rounds=args.rounds, every=args.report_every, seed=args.seed)
    resources = {"cpu": trial_cpu}
    grace = max(args.report_every, min(args.grace_rounds, args.rounds))
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space=search_space(),
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=args.trials,
                                    search_alg=OptunaSearch(seed=args.seed),
                                    scheduler=ASHAScheduler(time_attr="rounds", max_t=args.rounds,
                                                            grace_period=grace, reduction_factor=3),
                                    max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(name=f"tune-propensity-{int(time.time())}", verbose=0,
                                  storage_path=args.storage or tempfile.mkdtemp(prefix="tdm-tune-")),
    )
    logger.info("sweep: %d trials, %d concurrent on %d CPUs, trainer=%s, %d rounds, ASHA grace %d rounds",
                args.trials, concurrent, cpus, args.trainer, args.rounds, grace)
    results = tuner.fit()
    rows = []
    for r in results:
        if r.error or not r.metrics or METRIC not in r.metrics:
            rows.append({"trial_id": r.metrics.get("trial_id") if r.metrics else None, "error": str(r.error)[:200]})
            continue
        rows.append({"trial_id": r.metrics["trial_id"], **{k: r.config[k] for k in TUNED},
                     METRIC: round(float(r.metrics[METRIC]), 6), "best_rounds": int(r.metrics["best_rounds"]),
                     "rounds_run": int(r.metrics["rounds"]), "stopped_early": int(r.metrics["rounds"]) < args.rounds,
                     "seconds": round(float(r.metrics.get("time_total_s", 0.0)), 2)})
    table = pd.DataFrame(rows)
    if METRIC not in table.columns or table[METRIC].isna().all():
        raise RuntimeError(f"no trial reported {METRIC}; errors: {table.get('error')}")
    table = table.sort_values(METRIC, ascending=False, na_position="last").reset_index(drop=True)
    best = table.iloc[0].to_dict()
    return table, best


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    raw, parts, features, categories = prepare(args.features, args.label, args.time_column, args.seed)
    table, best = sweep(args, parts, features)
    sweep_s = time.perf_counter() - t0
    out = Path(args.out or tempfile.mkdtemp(prefix="tdm-tune-propensity-"))
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "trials.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        logger.info("trials (validation PR-AUC, best first):\n%s", table.to_string(max_rows=40))
    cfg = _config(best, max(1, int(best["best_rounds"])), args.seed)
    both = pd.concat([parts.train, parts.validation])
    booster, calibrator, threshold, oof = refit_with_oof_calibration(cfg, both, features, args.calibration_folds,
                                                                     args.min_precision)
    art = PropensityArtifact(
        kind=cfg.kind, feature_names=features, threshold=threshold, calibration=calibrator.to_dict(),
        base_rate=float(both[LABEL].mean()), categories=categories, code_version=code_version(),
        config={**cfg.model_dump(), "min_precision": args.min_precision, "tuned": True,
                "calibration": f"{args.calibration_folds}-fold out-of-fold on train+validation"},
        metrics={"validation": {METRIC: best[METRIC], "trials": len(table)},
                 "validation_oof": evaluate(both[LABEL].to_numpy(), oof, args.min_precision).as_dict(),
                 "validation_scores": np.quantile(oof, np.linspace(0, 1, 21)).tolist()},
        data_window={**parts.window(args.time_column), "source": args.features, "label": args.label,
                     "rows": {"train": len(parts.train), "validation": len(parts.validation),
                              "test": len(parts.test)}})
    model_dir = out / "model"
    save(model_dir, booster, art)
    # the one and only test evaluation: raw test rows through the serving predictor
    test_scores = PropensityPredictor(str(model_dir)).predict_proba(raw.loc[parts.test.index])
    art.metrics["test"] = evaluate(parts.test[LABEL].to_numpy(), test_scores, args.min_precision).as_dict()
    save(model_dir, booster, art)
    result: dict[str, Any] = {"split": parts.kind, "trials": len(table), "trainer": args.trainer,
                              "best": {k: best[k] for k in (*TUNED, METRIC, "best_rounds")},
                              "threshold": threshold, "test": art.metrics["test"],
                              "trials_csv": str(out / "trials.csv"), "artifact": str(model_dir),
                              "sweep_seconds": round(sweep_s, 1), "seconds": round(time.perf_counter() - t0, 1)}
    if args.registry:
        reg = Registry(args.registry)
        mv = reg.register(REGISTRY_NAME, model_dir, {"metrics": art.metrics, "data_window": art.data_window,
                                                     "config": art.config, "kind": cfg.kind})
        result["version"] = mv.version
        result["champion"] = reg.champion(REGISTRY_NAME) is None
        if result["champion"]:
            reg.set_champion(REGISTRY_NAME, mv.version, "first model of this registry (tuned)")
        else:
            logger.info("registered candidate %s; promote with python -m jobs.promote --registry %s --candidate %s",
                        mv.version, args.registry, mv.version)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.tune_propensity", description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="feature table: Parquet file/dir or CSV")
    parser.add_argument("--label", required=True, help="binary label column")
    parser.add_argument("--time-column", default=None, help="split by this column's time order")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=300, help="max boosting rounds per trial (ASHA max_t)")
    parser.add_argument("--report-every", type=int, default=10, help="rounds between validation reports")
    parser.add_argument("--grace-rounds", type=int, default=30, help="ASHA grace period in rounds")
    parser.add_argument("--trainer", choices=["booster", "ray-train"], default="booster")
    parser.add_argument("--calibration-folds", type=int, default=3)
    parser.add_argument("--min-precision", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
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
