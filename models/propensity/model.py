"""Booster training shared by local fits and Ray Train workers, with imbalance handling.

Imbalance strategies (``PropensityConfig.imbalance``):
- ``none``: plain log loss;
- ``weight``: positive class weight (``scale_pos_weight`` = negatives / positives);
- ``downsample``: keep negatives at ``keep_rate`` and undo it at prediction time
  with the log-odds correction (see ``calibration.correct_downsampling``);
- ``focal``: focal loss (``focal_alpha``, ``focal_gamma``) as a custom objective on raw
  margins (see ``focal``); the isotonic calibration then maps its scores to rates.

``preset="lightgbm_default"`` is LightGBM with the library's own defaults (100 rounds, lr 0.1,
31 leaves, no depth limit, no sampling): the reference every propensity model must beat, and
the model ``models.propensity.select`` keeps when nothing else does better.

Scores are always ``sigmoid(raw margin)`` (``raw_predict``), which for the built-in binary
objectives is the booster's own probability and for focal loss the margin's sigmoid.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

Kind = Literal["lightgbm", "xgboost"]


class PropensityConfig(BaseModel):
    """Model family, imbalance strategy and booster hyperparameters.

    The booster defaults (lr 0.05, 15 leaves, at least 50 rows a leaf, depth 6, 0.9 row and
    feature sampling, L2 1) were chosen by fold PR-AUC on the training windows of UCI Online
    Shoppers, the demo's sessions and a generated CTR table (BENCHMARKS.md, issue 18); the
    round count comes from cross-validation (``models.propensity.select``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = "lightgbm"
    preset: Literal["tandem", "lightgbm_default"] = Field(
        "tandem", description="lightgbm_default: LightGBM's own default parameters; the fields below are then unused")
    imbalance: Literal["none", "weight", "downsample", "focal"] = "weight"
    keep_rate: float = Field(0.2, gt=0, le=1, description="negatives kept when imbalance=downsample")
    focal_alpha: float = Field(0.25, gt=0, lt=1, description="positive-class weight when imbalance=focal")
    focal_gamma: float = Field(2.0, ge=0, description="focusing parameter when imbalance=focal")
    num_boost_round: int = Field(200, gt=0)
    early_stopping_rounds: int = Field(20, ge=0)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    max_depth: int = Field(6, ge=-1, description="-1 or 0: no limit (LightGBM)")
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    num_threads: int = Field(0, ge=0, description="0 = library default")
    seed: int = 0


def downsample_negatives(df: pd.DataFrame, label: str, keep_rate: float, seed: int) -> pd.DataFrame:
    """All positives and a ``keep_rate`` share of negatives (seeded)."""
    if keep_rate >= 1.0:
        return df
    rng = np.random.default_rng(seed)
    keep = (df[label].to_numpy() == 1) | (rng.random(len(df)) < keep_rate)
    return df.loc[keep]


def pos_weight(y: np.ndarray) -> float:
    pos = float(np.sum(y))
    return float((len(y) - pos) / pos) if pos > 0 else 1.0


LIGHTGBM_DEFAULT_ROUNDS = 100  # lightgbm.train's num_boost_round default


def lightgbm_params(cfg: PropensityConfig, y: np.ndarray) -> dict[str, Any]:
    if cfg.preset == "lightgbm_default":
        return {"objective": "binary", "verbose": -1, **({"num_threads": cfg.num_threads} if cfg.num_threads else {})}
    params: dict[str, Any] = {
        "objective": "binary", "metric": "average_precision", "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves, "max_depth": cfg.max_depth if cfg.max_depth > 0 else -1, "min_child_samples": cfg.min_child_samples,
        "feature_fraction": cfg.feature_fraction, "bagging_fraction": cfg.bagging_fraction, "bagging_freq": 1,
        "lambda_l2": cfg.reg_lambda, "seed": cfg.seed, "verbose": -1, "deterministic": True,
    }
    if cfg.num_threads:
        params["num_threads"] = cfg.num_threads
    if cfg.imbalance == "weight":
        params["scale_pos_weight"] = pos_weight(y)
    if cfg.imbalance == "focal":
        from models.propensity.focal import lightgbm_objective

        params["objective"] = lightgbm_objective(cfg.focal_alpha, cfg.focal_gamma)
    return params


def xgboost_params(cfg: PropensityConfig, y: np.ndarray) -> dict[str, Any]:
    params: dict[str, Any] = {
        "objective": "binary:logistic", "eval_metric": "aucpr", "eta": cfg.learning_rate,
        "max_depth": max(cfg.max_depth, 0), "min_child_weight": max(1.0, cfg.min_child_samples / 10),
        "subsample": cfg.bagging_fraction, "colsample_bytree": cfg.feature_fraction, "lambda": cfg.reg_lambda,
        "tree_method": "hist", "seed": cfg.seed,
    }
    if cfg.num_threads:
        params["nthread"] = cfg.num_threads
    if cfg.imbalance == "weight":
        params["scale_pos_weight"] = pos_weight(y)
    return params


def xgboost_setup(cfg: PropensityConfig, y: np.ndarray) -> tuple[dict[str, Any], Any]:
    """``xgboost.train`` params and custom objective (``None`` unless ``imbalance="focal"``)."""
    params = xgboost_params(cfg, y)
    if cfg.imbalance != "focal":
        return params, None
    from models.propensity.focal import xgboost_objective

    # the custom objective gets raw margins; "binary:logitraw" with base_score 0 keeps the
    # saved model's output a margin that starts at 0 (no intercept fitted for another loss)
    params.update(objective="binary:logitraw", base_score=0.0)
    return params, xgboost_objective(cfg.focal_alpha, cfg.focal_gamma)


def fit_booster(cfg: PropensityConfig, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None,
                y_val: np.ndarray | None, feature_names: list[str], extra_params: dict[str, Any] | None = None,
                callbacks: list[Any] | None = None, categorical: list[str] | None = None) -> Any:
    """Train one booster. ``extra_params`` carries distributed settings inside Ray Train;
    ``categorical`` names LightGBM native categorical features (codes; XGBoost reads them as numbers)."""
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    if cfg.kind == "lightgbm":
        import lightgbm as lgb

        params = {**lightgbm_params(cfg, y_train), **(extra_params or {})}
        train_set = lgb.Dataset(x_train, label=y_train, feature_name=feature_names, free_raw_data=False,
                                categorical_feature=list(categorical or []) or "auto")
        valid = [lgb.Dataset(x_val, label=y_val, reference=train_set)] if has_val else []
        cbs = list(callbacks or [])
        if has_val and cfg.early_stopping_rounds:
            cbs.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        return lgb.train(params, train_set, num_boost_round=cfg.num_boost_round, valid_sets=valid,
                         valid_names=["validation"] if has_val else None, callbacks=cbs)
    import xgboost as xgb

    params, obj = xgboost_setup(cfg, y_train)
    params.update(extra_params or {})
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=feature_names)
    evals = [(xgb.DMatrix(x_val, label=y_val, feature_names=feature_names), "validation")] if has_val else []
    return xgb.train(params, dtrain, num_boost_round=cfg.num_boost_round, evals=evals, obj=obj,
                     early_stopping_rounds=cfg.early_stopping_rounds if has_val and cfg.early_stopping_rounds else None,
                     callbacks=callbacks, verbose_eval=False)


def raw_margin(booster: Any, kind: str, x: np.ndarray, rounds: int | None = None) -> np.ndarray:
    """Raw margins (log-odds scale) for a float matrix in feature order; ``rounds`` limits the trees
    (default: LightGBM's best/all iterations, XGBoost's ``best_iteration`` when set)."""
    if kind == "lightgbm":
        return np.asarray(booster.predict(x, raw_score=True, num_iteration=rounds, num_threads=1), dtype=np.float64)
    if rounds is None:
        best = getattr(booster, "best_iteration", None)
        rounds = best + 1 if best is not None else 0
    return np.asarray(booster.inplace_predict(x, iteration_range=(0, rounds), predict_type="margin"),
                      dtype=np.float64)


def raw_predict(booster: Any, kind: str, x: np.ndarray) -> np.ndarray:
    """Uncalibrated scores in (0, 1): ``sigmoid(raw margin)``, for every objective."""
    from models.propensity.focal import sigmoid

    return sigmoid(raw_margin(booster, kind, x))


def to_matrix(df: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """Feature matrix in the stored order; absent columns and non-numbers become NaN (missing)."""
    try:
        result: np.ndarray = df.reindex(columns=feature_names).to_numpy(dtype=np.float64, na_value=np.nan)
        return result
    except (TypeError, ValueError):  # non-numeric values: coerce column by column
        pass
    from models.propensity.encoding import numeric_values

    cols = [numeric_values(df[c]).to_numpy(dtype=np.float64) if c in df.columns
            else np.full(len(df), np.nan) for c in feature_names]
    return np.column_stack(cols) if cols else np.empty((len(df), 0))
