"""The trials of the propensity sweep (``pipelines.tune_propensity``): what one Tune trial runs.

Two trainables, one training function (``fit_trial``):

- ``ray_train_trainable`` (``--trainer ray-train``, the default): the trial builds and fits a
  1-worker ``LightGBMTrainer``/``XGBoostTrainer`` whose worker reports reach Tune through
  ``TuneReportCallback``; the driver frees the Train placement group of a trial Tune stopped
  (``release_callback``), since Train's own cleaner needs the dashboard;
- ``booster_trainable`` (``--trainer booster``): the trial fits the booster in its own process.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from models.evaluation.classification import pr_auc
from models.propensity.cv import cross_validate
from models.propensity.data import LABEL
from models.propensity.model import PropensityConfig, downsample_negatives, fit_booster, raw_margin, to_matrix
from pipelines.train_callbacks import callback_types
from pipelines.train_propensity import gbdt_trainer_class

logger = logging.getLogger(__name__)

METRIC = "val_pr_auc"
TUNED = ("kind", "imbalance", "keep_rate", "focal_alpha", "focal_gamma", "learning_rate", "num_leaves", "max_depth",
         "min_child_samples", "feature_fraction", "bagging_fraction", "reg_lambda")
# share of a CPU the Tune trial function holds (it only waits on its Train run; Tune refuses an
# empty request); its 1-worker Train run gets the rest of one CPU, so a trial costs exactly 1 CPU
TRIAL_CPU = 0.01
PG_KEY = "train_placement_group"


def trial_config(params: dict[str, Any], rounds: int, seed: int) -> PropensityConfig:
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
        value = pr_auc(self.y_val, raw_margin(model, self.kind, self.x_val, rounds=rounds))
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


def fit_trial(params: dict[str, Any], data: dict[str, Any], rounds: int, every: int, seed: int, report: Any) -> None:
    """One trial's training, wherever it runs (Tune function or Ray Train worker).

    ``data`` holds ``features`` and either ``frame`` + ``folds`` (k-fold CV over train +
    validation: the metric is the mean held-out PR-AUC) or ``train`` + ``validation`` (the
    metric is validation PR-AUC). ``report`` gets ``rounds``, ``val_pr_auc`` (best so far),
    ``best_rounds`` and ``last_pr_auc`` every ``every`` rounds."""
    cfg = trial_config(params, rounds, seed)
    features = data["features"]
    if data.get("folds") is not None:
        frame = data["frame"]

        def cv_report(m: dict[str, Any]) -> None:
            report({"rounds": m["rounds"], METRIC: m["best_pr_auc"], "best_rounds": m["best_rounds"],
                    "last_pr_auc": m["pr_auc"], "last_pr_auc_std": m["pr_auc_std"]})

        cross_validate(cfg, to_matrix(frame, features), frame[LABEL].to_numpy(np.float64), data["folds"], features,
                       every, cv_report)
        return
    train, val = data["train"], data["validation"]
    fit_df = downsample_negatives(train, LABEL, cfg.keep_rate, seed) if cfg.imbalance == "downsample" else train
    x_val, y_val = to_matrix(val, features), val[LABEL].to_numpy(np.float64)
    progress = _Progress(cfg.kind, x_val, y_val, every, rounds, report)
    fit_booster(cfg, to_matrix(fit_df, features), fit_df[LABEL].to_numpy(np.float64), None, None, features,
                callbacks=progress.callbacks())


def booster_trainable(params: dict[str, Any], data: dict[str, Any], rounds: int, every: int, seed: int,
                      storage: str) -> None:
    """Tune function trainable: fits the booster in the trial's own process, on its one CPU."""
    from ray import tune

    fit_trial(params, data, rounds, every, seed, tune.report)


def _train_v2_loop(loop: dict[str, Any]) -> None:
    """Ray Train worker loop of the ``ray-train`` trainable (1 worker: the whole trial).

    Every report carries the id of the placement group this worker runs in, so the driver
    can release it if Tune stops the trial (see ``ReleaseStoppedTrainRuns``)."""
    import ray
    import ray.train

    pg = ray.get_runtime_context().get_placement_group_id()

    def report(metrics: dict[str, Any]) -> None:
        ray.train.report({**metrics, PG_KEY: pg})

    fit_trial(loop["params"], ray.get(loop["data"]), loop["rounds"], loop["every"], loop["seed"], report)


def _trainer_class(kind: str) -> Any:
    """``LightGBMTrainer``/``XGBoostTrainer`` without Train's ``PlacementGroupCleaner``.

    Train V2 starts one detached cleaner actor per run to remove the run's placement group if
    the controller dies. It learns of the death through the state API, which the dashboard
    serves; without a dashboard (``include_dashboard=False``, as in tests and local runs) it
    polls forever and outlives the sweep, one idle Python process per stopped trial. Here the
    sweep's driver does that job (``ReleaseStoppedTrainRuns``), so the trial's runs go without."""
    return gbdt_trainer_class(kind, callback_types("placement_group_cleaner"))


def ray_train_trainable(params: dict[str, Any], data: dict[str, Any], rounds: int, every: int, seed: int,
                        storage: str) -> None:
    """Tune function trainable that builds and fits a Train V2 trainer (metrics reach Tune by callback)."""
    import ray
    from ray import tune
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    # Frames go by object ref, not Ray Data: Data's read tasks would need a CPU of their own.
    # The worker takes the rest of the trial's CPU, so trials pack exactly onto the cluster's CPUs.
    trial = tune.get_context().get_trial_id()
    trainer = _trainer_class(params["kind"])(
        _train_v2_loop,
        train_loop_config={"params": params, "data": ray.put(data), "rounds": rounds, "every": every, "seed": seed},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1.0 - TRIAL_CPU}),
        run_config=RunConfig(name=f"trial-{trial}", callbacks=[TuneReportCallback()], storage_path=storage,
                             failure_config=FailureConfig(max_failures=0)))
    trainer.fit()


def release_train_placement_group(pg_hex: str | None) -> bool:
    """Remove a Train run's placement group if it still exists; True if it was removed here."""
    if not pg_hex:
        return False
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex)))
    state = placement_group_table(pg).get("state")
    if state in (None, "REMOVED"):
        return False
    remove_placement_group(pg)
    return True


def release_callback() -> Any:
    from ray import tune

    class ReleaseStoppedTrainRuns(tune.Callback):
        """Frees the Train run of a trial that Tune stopped (ASHA, or ``max_t`` reached).

        Tune stops a trial by ending its actor. That ends the Train controller the trial
        function created (an actor it owns) before the controller can remove its worker
        group's placement group, and a placement group made by a non-detached actor lives
        as long as the *job* (the sweep's driver). Train's detached ``PlacementGroupCleaner``
        is meant to catch this but learns of the controller's death through the state API,
        which the dashboard serves. Without it (``include_dashboard=False``) each stopped
        trial kept 1 CPU, and on a 2-CPU cluster the next Train worker group waited for a CPU
        past Train's start-up timeout. So the driver removes the stopped trial's placement
        group itself (its id comes with every report), before Tune starts the next trial.
        """

        def __init__(self) -> None:
            self.released = 0

        def _release(self, trial: Any) -> None:
            pg = (trial.last_result or {}).get(PG_KEY)
            try:
                if release_train_placement_group(pg):
                    self.released += 1
                    logger.debug("released the Train placement group %s of stopped trial %s", pg, trial.trial_id)
            except Exception:  # noqa: BLE001 - freeing is best effort; the sweep goes on
                logger.warning("could not release the Train placement group %s of trial %s", pg, trial.trial_id,
                               exc_info=True)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._release(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._release(trial)

    return ReleaseStoppedTrainRuns()
