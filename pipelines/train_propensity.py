"""Fit one propensity booster with Ray Train V2 (``LightGBMTrainer`` / ``XGBoostTrainer``).

The Ray side of ``model.fit_booster``, shared by ``jobs.train_propensity``, ``pipelines.tune_propensity`` and ``bench.train``
so the bench times the job's own path. It knows nothing of jobs (no CLI, no registry); Ray
is imported inside the functions only.

How the workers get their rows (``ingest``):

- ``object_ref``: the driver turns the in-memory frames into float matrices (``to_matrix``,
  as a local fit does), splits train into one contiguous row block per worker and
  ``ray.put``s each block; worker ``rank`` ``ray.get``s its block, zero-copy from the object
  store. No Ray Data read tasks, no ``materialize`` + ``to_pandas`` on the worker.
- ``ray_data``: ``ray.data.from_pandas`` datasets, train split across the workers by Train's
  ``DataConfig``; each worker materializes its shard and converts it.
- ``auto`` (default): ``object_ref`` while the matrices fit under ``OBJECT_REF_MAX_BYTES`` and
  a quarter of the cluster's object store, else ``ray_data``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.evaluation.calibration import calibration_report
from models.propensity.artifact import MODEL_FILES, save
from models.propensity.auto import train_auto
from models.propensity.baselines import baseline_scores
from models.propensity.data import LABEL, prepare
from models.propensity.model import PropensityConfig, fit_booster, raw_predict, to_matrix
from models.propensity.predictor import PropensityPredictor, load_booster
from models.propensity.report import holdout_report
from models.propensity.select import STRATEGIES
from pipelines.drift import feature_quantiles
from pipelines.raycluster import train_storage
from pipelines.reports.model import MODEL_REPORT, write_propensity_report
from pipelines.tenancy import tenant_rows
from pipelines.train_callbacks import callback_types, without_default_callbacks
from store import fs
from store.registry import Registry, tenant_uri

logger = logging.getLogger(__name__)

Ingest = Literal["auto", "object_ref", "ray_data"]
# In-memory frames whose float64 matrices (train + validation) are at most this big go to the
# workers by object reference; larger inputs stream through Ray Data.
OBJECT_REF_MAX_BYTES = 2 * 1024**3


@dataclass
class DistributedFit:
    """The fitted booster, how the rows reached the workers, rank 0's report, and the wall-clock
    time ``fit()`` was called (after the data set-up: matrices put or datasets built)."""

    booster: Any
    ingest: str
    metrics: dict[str, Any] = field(default_factory=dict)
    fit_start: float = 0.0


def matrix_bytes(rows: int, features: int) -> int:
    """Bytes of the float64 feature matrix plus the label vector for ``rows`` rows."""
    return rows * (features + 1) * 8


def choose_ingest(requested: Ingest, nbytes: int, object_store_bytes: float | None,
                  max_bytes: int = OBJECT_REF_MAX_BYTES) -> str:
    """``object_ref`` or ``ray_data`` for ``nbytes`` of matrices (see the module docstring)."""
    if requested != "auto":
        return requested
    bound = float(max_bytes)
    if object_store_bytes:
        bound = min(bound, object_store_bytes / 4)
    return "object_ref" if nbytes <= bound else "ray_data"


def row_blocks(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``[start, stop)`` row ranges of near-equal size covering ``n`` rows."""
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def worker_cpus(workers: int) -> float:
    """CPUs per Train worker: one each, or an even share of what is free when the cluster is
    smaller (a small cluster also runs the Serve replicas, which hold CPUs; asking for more
    than is free would leave the placement group pending forever)."""
    import ray

    free = float(ray.available_resources().get("CPU", 0.0))
    if free >= workers:
        return 1.0
    share = max(0.1, round(free / workers, 2)) if free > 0 else 0.1
    logger.warning("only %.2f CPUs free for %d Train workers: %.2f CPU each", free, workers, share)
    return share


def _train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: its block (or shard) of train, all of validation.

    Reports wall-clock stamps (``t_start``, ``t_ingest``, ``t_convert``, ``t_train``) and the
    rows it trained on, with rank 0's model as the checkpoint."""
    import ray
    import ray.train

    t_start = time.time()
    cfg = PropensityConfig(**config["cfg"])
    features: list[str] = config["features"]
    label: str = config["label"]
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    refs = config.get("refs")
    if refs is not None:  # object_ref: float matrices already, zero-copy from the object store
        x_tr, y_tr = ray.get(refs["train"][rank])
        x_va, y_va = ray.get(refs["validation"]) if refs.get("validation") is not None else (None, None)
        t_ingest = t_convert = time.time()
    else:
        train = ray.train.get_dataset_shard("train").materialize().to_pandas()
        val = None
        if config["has_validation"]:
            val = ray.train.get_dataset_shard("validation").materialize().to_pandas()
        t_ingest = time.time()
        x_tr, y_tr = to_matrix(train, features), train[label].to_numpy(np.float64)
        x_va, y_va = (to_matrix(val, features), val[label].to_numpy(np.float64)) if val is not None else (None, None)
        t_convert = time.time()
    extra: dict[str, Any] | None = None
    if cfg.kind == "lightgbm" and config["workers"] > 1:
        from ray.train.lightgbm import get_network_params

        extra = {"tree_learner": "data_parallel", "pre_partition": True, **get_network_params()}
    # XGBoostTrainer sets up XGBoost's collective (rabit) context around this loop.
    booster = fit_booster(cfg, x_tr, y_tr, x_va, y_va, features, extra, categorical=config.get("categorical"))
    t_train = time.time()
    metrics = {"best_iteration": int(getattr(booster, "best_iteration", 0) or 0), "rows": len(y_tr),
               "t_start": t_start, "t_ingest": t_ingest, "t_convert": t_convert, "t_train": t_train}
    # Report the final model explicitly: the libraries' report callbacks only checkpoint at the
    # last round, which early stopping skips. Train V2 keeps metrics only with a checkpoint.
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            booster.save_model(str(Path(tmp) / MODEL_FILES[cfg.kind]))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def gbdt_trainer_class(kind: str, drop: tuple[type, ...] = ()) -> Any:
    """``LightGBMTrainer`` or ``XGBoostTrainer``, minus the Train default callbacks of the types in ``drop``."""
    base: Any
    if kind == "lightgbm":
        from ray.train.lightgbm import LightGBMTrainer as base
    else:
        from ray.train.xgboost import XGBoostTrainer as base
    return without_default_callbacks(base, drop)


def _trainer_class(kind: str, with_datasets: bool) -> Any:
    """The trainer class; without Ray Data datasets, minus Train's ``DatasetsCallback``.

    Train V2 (2.60) starts a ``DatasetManager`` actor for every run, datasets or not: one more
    Python process (about 1.5 CPU-seconds of imports) that starts while the worker does, and on
    a small node takes CPU from it. The object-ref path has no datasets, so it goes without
    (the workers' train context then has no dataset shard provider, which it allows)."""
    return gbdt_trainer_class(kind, () if with_datasets else callback_types("datasets"))


def _put_matrices(train: pd.DataFrame, val: pd.DataFrame | None, features: list[str], label: str,
                  workers: int) -> dict[str, Any]:
    import ray

    x, y = to_matrix(train, features), train[label].to_numpy(np.float64)
    refs: dict[str, Any] = {"train": [ray.put((x[a:b], y[a:b])) for a, b in row_blocks(len(y), workers)]}
    del x, y
    refs["validation"] = None
    if val is not None and len(val):
        refs["validation"] = ray.put((to_matrix(val, features), val[label].to_numpy(np.float64)))
    return refs


def train_distributed(cfg: PropensityConfig, train: pd.DataFrame, val: pd.DataFrame | None, features: list[str],
                      workers: int, storage: str, *, ingest: Ingest = "auto", cpus_per_worker: float | None = None,
                      callbacks: list[Any] | None = None, name: str | None = None,
                      label: str = LABEL, categorical: list[str] | None = None) -> DistributedFit:
    """Fit the booster data-parallel over ``workers`` Ray Train V2 workers and return it.

    ``label`` names the binary label column. ``val`` (optional) goes whole to every worker for
    early stopping. ``ingest``: see the module docstring. ``cpus_per_worker`` defaults to
    ``worker_cpus``; ``callbacks`` are Train ``RunConfig`` callbacks; ``categorical`` names LightGBM
    native categorical features."""
    import ray
    from ray.train import DataConfig, RunConfig, ScalingConfig

    has_val = val is not None and len(val) > 0
    rows = len(train) + (len(val) if has_val else 0)  # type: ignore[arg-type]
    store = ray.cluster_resources().get("object_store_memory")
    mode = choose_ingest(ingest, matrix_bytes(rows, len(features)), store)
    loop_cfg: dict[str, Any] = {"cfg": cfg.model_dump(), "features": features, "label": label, "workers": workers,
                                "has_validation": has_val, "refs": None,
                                "categorical": list(categorical or []) if cfg.kind == "lightgbm" else None}
    common: dict[str, Any] = {}
    if mode == "object_ref":
        loop_cfg["refs"] = _put_matrices(train, val if has_val else None, features, label, workers)
    else:
        datasets = {"train": ray.data.from_pandas(train[features + [label]])}
        if has_val:
            datasets["validation"] = ray.data.from_pandas(val[features + [label]])  # type: ignore[index]
        common = {"datasets": datasets, "dataset_config": DataConfig(datasets_to_split=["train"])}
    scaling = ScalingConfig(num_workers=workers,
                            resources_per_worker={"CPU": cpus_per_worker or worker_cpus(workers)})
    run_config = RunConfig(name=name or f"propensity-{int(time.time())}", storage_path=storage,
                           callbacks=callbacks)
    trainer_cls = _trainer_class(cfg.kind, with_datasets=mode == "ray_data")
    logger.info("Ray Train %s: %d workers, %d rows by %s", cfg.kind, workers, rows, mode)
    trainer = trainer_cls(_train_loop, train_loop_config=loop_cfg, scaling_config=scaling, run_config=run_config,
                          **common)
    fit_start = time.time()
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"the Train run ended without a checkpoint: {result.error}")
    with result.checkpoint.as_directory() as path:
        booster = load_booster(cfg.kind, Path(path) / MODEL_FILES[cfg.kind])
    return DistributedFit(booster=booster, ingest=mode, metrics=dict(result.metrics or {}), fit_start=fit_start)


class TrainConfig(BaseModel):
    """What ``train_and_register`` needs (``python -m jobs.train_propensity`` flags, same names)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    features: str = Field(description="feature table: Parquet file/dir or CSV")
    label: str = Field(description="binary label column")
    time_column: str | None = None
    model: Literal["lightgbm", "xgboost"] = "lightgbm"
    imbalance: Literal["auto", "weight", "downsample", "focal", "none"] = "auto"
    calibration: Literal["auto", "none", "platt", "isotonic"] = "auto"
    exclude: list[str] = Field(default_factory=list, description="columns never used as features")
    keep_rate: float = Field(0.2, gt=0, le=1)
    focal_alpha: float = Field(0.25, gt=0, lt=1)
    focal_gamma: float = Field(2.0, ge=0)
    rounds: int = Field(1000, ge=1, description="most boosting rounds; cross-validation picks the count below it")
    min_precision: float = Field(0.3, ge=0, le=1)
    workers: int = Field(2, ge=1)
    ingest: Ingest = "auto"
    seed: int = 0
    registry: str | None = None
    tenant: str | None = Field(None, description="train on this tenant's rows only and register the model in "
                               "its namespace of the registry (default: all rows, the shared default)")
    name: Literal["propensity", "pctr"] = Field(
        "propensity", description="registry name: propensity (purchases), or pctr (clicks on impressions, the "
                                  "bidder's model)")
    out: str | None = None


def train_and_register(cfg: TrainConfig) -> dict[str, Any]:
    """Prepare, select on the training window, fit on Ray Train, guard on validation, calibrate,
    test once next to the baselines, save and (with a registry) register.

    ``models.propensity.auto.train_auto`` holds the rule (selection, validation guard,
    calibration, threshold); this function gives it the Ray Train fit, then reads the test
    split once through the serving predictor (``models.propensity.report``)."""
    t0 = time.perf_counter()
    features_path = fs.resolve(cfg.features)
    if cfg.tenant is not None:
        features_path = tenant_rows(features_path, cfg.tenant, Path(tempfile.mkdtemp(prefix="tdm-tenant-")))
    prep = prepare(features_path, cfg.label, cfg.time_column, cfg.seed, exclude=cfg.exclude)
    parts, features, encoding = prep.parts, prep.features, prep.encoding
    base = PropensityConfig(kind=cfg.model, num_boost_round=cfg.rounds, seed=cfg.seed, keep_rate=cfg.keep_rate,
                            focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma)
    trainer: dict[str, Any] = {"trainer": "local (lightgbm_default kept)"}
    storage = train_storage(cfg.registry, "propensity")  # every node can reach it (s3:// on a cluster)

    def ray_fit(model: PropensityConfig, rows: pd.DataFrame) -> Any:
        fitted = train_distributed(model, rows, None, features, cfg.workers, storage, ingest=cfg.ingest,
                                   categorical=encoding.categorical)
        trainer.update(trainer=f"ray_train ({cfg.workers} workers, {fitted.ingest})")
        return fitted.booster

    try:
        trained = train_auto(parts, encoding, base, fit=ray_fit, min_precision=cfg.min_precision,
                             time_ordered=parts.kind == "time",
                             strategies=STRATEGIES if cfg.imbalance == "auto" else (cfg.imbalance,),
                             calibration=cfg.calibration)
    finally:
        fs.delete(storage)  # the booster is loaded; the run's checkpoints are not kept
    booster, model, art = trained.booster, trained.cfg, trained.artifact
    art.data_window = {**parts.window(cfg.time_column), "source": cfg.features, "label": cfg.label,
                       "rows": {"train": len(parts.train), "validation": len(parts.validation), "test": len(parts.test)}}
    out = Path(cfg.out or tempfile.mkdtemp(prefix="tdm-propensity-"))
    save(out, booster, art)
    predictor = PropensityPredictor(str(out))
    # raw test rows: the predictor encodes them itself, as it does online
    test_scores = predictor.predict_proba(prep.raw.loc[parts.test.index])
    base_scores = baseline_scores(parts.train, parts.test, features, categorical=encoding.categorical,
                                  default=trained.reference)
    report = holdout_report(parts.test[LABEL].to_numpy(), test_scores, base_scores, art.threshold, cfg.min_precision,
                            seed=cfg.seed)
    raw_val = raw_predict(booster, model.kind, to_matrix(parts.validation, features))
    art.metrics["test"] = {k: v for k, v in report["test"].items() if k != "deciles"}
    art.metrics["validation_scores"] = np.quantile(predictor.calibrator(raw_val), np.linspace(0, 1, 21)).tolist()
    # the drift check's reference: numeric columns only (live rows carry raw categories, not codes)
    art.metrics["feature_quantiles"] = feature_quantiles(
        parts.train, [c.name for c in encoding.columns if c.kind == "numeric"])
    save(out, booster, art)  # with test metrics and the validation score quantiles for the PSI gate
    html = write_propensity_report(parts.test[LABEL].to_numpy(), {f"{model.kind} (calibrated)": test_scores},
                                   out / MODEL_REPORT, title="Propensity model",
                                   subtitle=f"{model.kind}, test split ({parts.kind})")
    sel = trained.selection
    result: dict[str, Any] = {
        "model": model.kind, "imbalance": model.imbalance, "selected": art.config["selected"],
        "calibration": sel.calibration, "rounds": model.num_boost_round, "split": parts.kind,
        "threshold": art.threshold, **report, "validation": art.metrics.get("validation", {}),
        "selection": sel.as_dict(), **trainer,
        "columns": {"used": len(features), "categorical": encoding.categorical, "dropped": encoding.dropped},
        "artifact": str(out), "report": str(html), "seconds": round(time.perf_counter() - t0, 1)}
    # calibration of the served scores on the test split: bids are priced from their level, not just their order
    reliability = calibration_report(parts.test[LABEL].to_numpy(), np.clip(test_scores, 0.0, 1.0), bins=10)
    result["reliability"] = reliability.as_dict()
    name = cfg.name
    if cfg.registry:
        reg = Registry(tenant_uri(cfg.registry, cfg.tenant))
        mv = reg.register(name, out, {"metrics": art.metrics, "data_window": art.data_window,
                                      "config": art.config, "kind": model.kind, "tenant": cfg.tenant,
                                      "reliability": {k: v for k, v in result["reliability"].items() if k != "bins"}})
        result["registry"] = reg.uri
        result["version"] = mv.version
        result["registry_report"] = f"{mv.uri}/{MODEL_REPORT}"  # copied into the registry with the artifact
        if reg.champion(name) is None:
            reg.set_champion(name, mv.version, "first model of this registry")
            result["champion"] = True
        else:
            result["champion"] = False
            logger.info("registered candidate %s; promote it with python -m jobs.promote --registry %s "
                        "--candidate %s", mv.version, cfg.registry, mv.version)
    return result
