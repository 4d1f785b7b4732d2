"""Sweep propensity models with Ray Tune (OptunaSearch + ASHA on held-out PR-AUC).

``python -m jobs.tune_propensity --features PATH --label COL [--time-column COL] --trials N
[--trainer ray-train|booster] [--cv-folds K] [--warm-start JSON] [--registry URI] [--out DIR] [--json]``

The search covers both families (LightGBM, XGBoost) x the imbalance strategies (class
weight, downsampling with the log-odds correction, focal loss with its alpha and gamma,
none) x the key booster hyperparameters.

Selection (``--cv-folds``): on a stratified split (no time column) each trial is scored by
its mean held-out PR-AUC over 5 stratified folds of train + validation (``models.propensity.cv``;
the folds grow in lockstep, so ASHA still sees the metric every ``--report-every`` rounds).
A 1,850-row validation split was too noisy a judge on UCI. On a time split, folds would
train on the future, so the validation split judges instead.

Trainables (``--trainer``; in ``pipelines.propensity_trials``):

- ``ray-train`` (default), the Train V2 way: the trial is a function that builds and fits a
  1-worker ``LightGBMTrainer``/``XGBoostTrainer``; the worker's ``ray.train.report`` calls reach
  Tune through ``ray.tune.integration.ray_train.TuneReportCallback``. The function holds
  ``TRIAL_CPU`` (0.01; Tune refuses an empty request) and its worker the rest of one CPU, so
  ``max_concurrent_trials`` = the free CPUs and trials pack exactly.
  Tune stops a trial (ASHA, and at ``max_t``) by ending its actor, which ends the Train
  controller it owns before the controller removes its placement group; that group lives
  as long as the driver. Train's own ``PlacementGroupCleaner`` needs the dashboard's state
  API to notice, so without a dashboard every stopped trial kept its CPU: on 2 CPUs the
  next trials' worker groups hit Train's 60 s start-up timeout (the old hang). The driver
  now removes a stopped trial's placement group itself (``ReleaseStoppedTrainRuns``; the
  worker reports its group's id), and the trials run without the cleaner actor, which would
  otherwise poll forever, one idle process per stopped trial.
- ``booster``: the trial fits the booster in its own process on its one CPU. No Train run
  per trial, so no controller and worker processes to start: faster on a small cluster
  (see bench/RESULTS_propensity.md), and the same models and metrics.

The test split is never read during the sweep. The best configuration is refit on
train + validation at its best round count; because no held-out rows remain, its
calibration and threshold come from out-of-fold scores over train + validation (the CV
folds, or ``--calibration-folds``). It is then evaluated once on test next to the two
baselines fitted on the same rows and, with ``--registry``, registered.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.evaluation.classification import evaluate, recall_at_precision
from models.propensity.artifact import PropensityArtifact, save
from models.propensity.baselines import baselines
from models.propensity.calibration import Calibrator
from models.propensity.cv import stratified_folds
from models.propensity.data import LABEL, DataError, Split, prepare
from models.propensity.model import (
    PropensityConfig,
    downsample_negatives,
    fit_booster,
    raw_predict,
    to_matrix,
)
from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
from models.provenance import code_version
from pipelines.propensity_trials import (
    METRIC,
    TRIAL_CPU,
    TUNED,
    booster_trainable,
    ray_train_trainable,
    release_callback,
    trial_config,
)
from store.registry import Registry

logger = logging.getLogger(__name__)



class SweepConfig(BaseModel):
    """What ``tune_and_register`` needs (``python -m jobs.tune_propensity`` flags, same names)."""

    model_config = ConfigDict(extra="forbid")

    features: str = Field(description="feature table: Parquet file/dir or CSV")
    label: str = Field(description="binary label column")
    time_column: str | None = None
    trials: int = Field(20, ge=1)
    rounds: int = Field(300, ge=1, description="max boosting rounds per trial (ASHA max_t)")
    report_every: int = Field(10, ge=1, description="rounds between validation reports")
    grace_rounds: int = Field(30, ge=1, description="ASHA grace period in rounds")
    trainer: Literal["ray-train", "booster"] = "ray-train"
    cv_folds: int = Field(-1, ge=-1, description="-1: 5 on a stratified split, 0 on a time split")
    calibration_folds: int = Field(0, ge=0)
    min_precision: float = Field(0.3, ge=0, le=1)
    seed: int = 0
    warm_start: str | None = Field(None, description="JSON file: a list of configurations to try first")
    storage: str | None = None
    registry: str | None = None
    out: str | None = None

def search_space() -> dict[str, Any]:
    from ray import tune

    return {"kind": tune.choice(["lightgbm", "xgboost"]),
            "imbalance": tune.choice(["weight", "downsample", "focal", "none"]),
            "keep_rate": tune.uniform(0.05, 0.5), "focal_alpha": tune.uniform(0.1, 0.9),
            "focal_gamma": tune.uniform(0.5, 4.0), "learning_rate": tune.loguniform(0.02, 0.3),
            "num_leaves": tune.randint(8, 128), "max_depth": tune.randint(3, 11),
            "min_child_samples": tune.lograndint(5, 300), "feature_fraction": tune.uniform(0.5, 1.0),
            "bagging_fraction": tune.uniform(0.5, 1.0), "reg_lambda": tune.loguniform(1e-3, 10.0)}


def refit_with_oof_calibration(cfg: PropensityConfig, data: pd.DataFrame, features: list[str], folds: np.ndarray,
                               min_precision: float) -> tuple[Any, Calibrator, float, np.ndarray]:
    """Fit on all of ``data``; calibration and threshold from out-of-fold scores over ``folds`` (fold id per row)."""
    y = data[LABEL].to_numpy(np.float64)
    oof = np.empty(len(data))
    for k in range(int(folds.max()) + 1):
        fit_df = data.iloc[np.flatnonzero(folds != k)]
        if cfg.imbalance == "downsample":
            fit_df = downsample_negatives(fit_df, LABEL, cfg.keep_rate, cfg.seed)
        booster = fit_booster(cfg, to_matrix(fit_df, features), fit_df[LABEL].to_numpy(np.float64), None, None,
                              features)
        held = np.flatnonzero(folds == k)
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


def cv_folds(opts: SweepConfig, parts: Split) -> int:
    """Folds for selection: ``--cv-folds``, or by default 5 on a stratified split and 0 (the
    validation split) on a time split, where shuffled folds would train on the future."""
    if opts.cv_folds >= 0:
        return 0 if opts.cv_folds == 1 else opts.cv_folds
    return 5 if parts.kind == "stratified" else 0


def warm_start(opts: SweepConfig) -> list[dict[str, Any]] | None:
    """``--warm-start``: a JSON list of (partial) configurations the sweep tries first, in order
    (e.g. the champion's); keys they leave out take ``PropensityConfig``'s defaults."""
    if not opts.warm_start:
        return None
    points = json.loads(Path(opts.warm_start).read_text())
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise DataError(f"{opts.warm_start}: expected a JSON list of configuration objects")
    unknown = sorted({k for p in points for k in p} - set(TUNED))
    if unknown:
        raise DataError(f"{opts.warm_start}: unknown keys {unknown}; tuned keys are {list(TUNED)}")
    defaults = PropensityConfig().model_dump()
    return [{k: p.get(k, defaults[k]) for k in TUNED} for p in points]


def sweep(opts: SweepConfig, parts: Split, features: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    cpus = float(ray.cluster_resources().get("CPU", 1))
    free = float(ray.available_resources().get("CPU", 0.0))
    # One CPU per trial either way: the booster trainable fits in the trial's process; the
    # ray-train trainable holds TRIAL_CPU and its 1-worker Train run 1 - TRIAL_CPU. CPUs that
    # others hold (Serve replicas on a small cluster) do not count towards concurrency.
    concurrent = max(1, min(int(free), opts.trials))
    cols = features + [LABEL]
    folds = cv_folds(opts, parts)
    if folds:
        frame = pd.concat([parts.train[cols], parts.validation[cols]])
        data: dict[str, Any] = {"features": features, "frame": frame,
                                "folds": stratified_folds(frame[LABEL].to_numpy(), folds, opts.seed)}
    else:
        data = {"features": features, "train": parts.train[cols], "validation": parts.validation[cols]}
    fn = booster_trainable if opts.trainer == "booster" else ray_train_trainable
    storage = opts.storage or tempfile.mkdtemp(prefix="tdm-tune-")
    trainable = tune.with_parameters(fn, data=data, rounds=opts.rounds, every=opts.report_every, seed=opts.seed,
                                     storage=str(Path(storage) / "train"))
    resources = {"cpu": 1.0 if opts.trainer == "booster" else TRIAL_CPU}
    grace = max(opts.report_every, min(opts.grace_rounds, opts.rounds))
    release = release_callback()
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space=search_space(),
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=opts.trials,
                                    search_alg=OptunaSearch(seed=opts.seed, points_to_evaluate=warm_start(opts)),
                                    scheduler=ASHAScheduler(time_attr="rounds", max_t=opts.rounds,
                                                            grace_period=grace, reduction_factor=3),
                                    max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(name=f"tune-propensity-{int(time.time())}", verbose=0, storage_path=storage,
                                  callbacks=[release] if opts.trainer == "ray-train" else None),
    )
    logger.info("sweep: %d trials, %d concurrent on %.1f CPUs (%.2f free), trainer=%s, %d rounds, ASHA grace %d "
                "rounds, selection on %s", opts.trials, concurrent, cpus, free, opts.trainer, opts.rounds, grace,
                f"{folds}-fold CV over train+validation" if folds else "the validation split")
    results = tuner.fit()
    if opts.trainer == "ray-train":
        logger.info("released the Train placement groups of %d stopped trials", release.released)
    rows = []
    for r in results:
        if r.error or not r.metrics or METRIC not in r.metrics:
            rows.append({"trial_id": r.metrics.get("trial_id") if r.metrics else None, "error": str(r.error)[:200]})
            continue
        rows.append({"trial_id": r.metrics["trial_id"], **{k: r.config[k] for k in TUNED},
                     METRIC: round(float(r.metrics[METRIC]), 6), "best_rounds": int(r.metrics["best_rounds"]),
                     "rounds_run": int(r.metrics["rounds"]), "stopped_early": int(r.metrics["rounds"]) < opts.rounds,
                     "seconds": round(float(r.metrics.get("time_total_s", 0.0)), 2)})
    table = pd.DataFrame(rows)
    if METRIC not in table.columns or table[METRIC].isna().all():
        raise RuntimeError(f"no trial reported {METRIC}; errors: {table.get('error')}")
    table = table.sort_values(METRIC, ascending=False, na_position="last").reset_index(drop=True)
    best = table.iloc[0].to_dict()
    best["selection"] = f"{folds}-fold CV" if folds else "validation split"
    return table, best


def tune_and_register(opts: SweepConfig) -> dict[str, Any]:
    """Sweep, refit the best on train + validation, test once next to the baselines, save and register."""
    t0 = time.perf_counter()
    prep = prepare(opts.features, opts.label, opts.time_column, opts.seed)
    raw, parts, features = prep.raw, prep.parts, prep.features  # categorical codes enter the sweep as numbers
    table, best = sweep(opts, parts, features)
    sweep_s = time.perf_counter() - t0
    out = Path(opts.out or tempfile.mkdtemp(prefix="tdm-tune-propensity-"))
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "trials.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        logger.info("trials (validation PR-AUC, best first):\n%s", table.to_string(max_rows=40))
    cfg = trial_config(best, max(1, int(best["best_rounds"])), opts.seed)
    both = pd.concat([parts.train, parts.validation])
    # the CV folds of the sweep (same rows, order and seed), or --calibration-folds new ones
    k = opts.calibration_folds or cv_folds(opts, parts) or 3
    folds = stratified_folds(both[LABEL].to_numpy(), k, opts.seed)
    booster, calibrator, threshold, oof = refit_with_oof_calibration(cfg, both, features, folds, opts.min_precision)
    art = PropensityArtifact(
        kind=cfg.kind, feature_names=features, threshold=threshold, calibration=calibrator.to_dict(),
        base_rate=float(both[LABEL].mean()), encoding=prep.encoding.to_dict(), code_version=code_version(),
        config={**cfg.model_dump(), "min_precision": opts.min_precision, "tuned": True,
                "calibration": f"{k}-fold out-of-fold on train+validation", "selection": best["selection"]},
        metrics={"validation": {METRIC: best[METRIC], "trials": len(table), "selection": best["selection"]},
                 "validation_oof": evaluate(both[LABEL].to_numpy(), oof, opts.min_precision).as_dict(),
                 "validation_scores": np.quantile(oof, np.linspace(0, 1, 21)).tolist()},
        data_window={**parts.window(opts.time_column), "source": opts.features, "label": opts.label,
                     "rows": {"train": len(parts.train), "validation": len(parts.validation),
                              "test": len(parts.test)}})
    model_dir = out / "model"
    save(model_dir, booster, art)
    # the one and only test evaluation: raw test rows through the serving predictor
    test_scores = PropensityPredictor(str(model_dir)).predict_proba(raw.loc[parts.test.index])
    art.metrics["test"] = evaluate(parts.test[LABEL].to_numpy(), test_scores, opts.min_precision).as_dict()
    save(model_dir, booster, art)
    result: dict[str, Any] = {"split": parts.kind, "trials": len(table), "trainer": opts.trainer,
                              "selection": best["selection"],
                              "best": {key: best[key] for key in (*TUNED, METRIC, "best_rounds")},
                              "threshold": threshold, "test": art.metrics["test"],
                              # fitted on the rows the tuned model was refit on (train + validation)
                              "baselines": baselines(both, parts.test, features, opts.min_precision),
                              "trials_csv": str(out / "trials.csv"), "artifact": str(model_dir),
                              "sweep_seconds": round(sweep_s, 1), "seconds": round(time.perf_counter() - t0, 1)}
    if opts.registry:
        reg = Registry(opts.registry)
        mv = reg.register(REGISTRY_NAME, model_dir, {"metrics": art.metrics, "data_window": art.data_window,
                                                     "config": art.config, "kind": cfg.kind})
        result["version"] = mv.version
        result["champion"] = reg.champion(REGISTRY_NAME) is None
        if result["champion"]:
            reg.set_champion(REGISTRY_NAME, mv.version, "first model of this registry (tuned)")
        else:
            logger.info("registered candidate %s; promote with python -m jobs.promote --registry %s --candidate %s",
                        mv.version, opts.registry, mv.version)
    return result
