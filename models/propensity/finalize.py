"""From a trained booster to a servable artifact: calibrate on validation, pick the threshold.

``finalize`` is shared by the Ray Train job and ``fit_local`` (a single-process fit for
tests and small data), so both produce identical artifacts for the same booster.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.evaluation.classification import evaluate, recall_at_precision
from models.propensity.artifact import PropensityArtifact
from models.propensity.calibration import Calibrator, Method
from models.propensity.model import (
    PropensityConfig,
    downsample_negatives,
    fit_booster,
    raw_predict,
    to_matrix,
)
from models.provenance import code_version


def finalize(booster: Any, cfg: PropensityConfig, val: pd.DataFrame, feature_names: list[str], label: str,
             min_precision: float = 0.3, base_rate: float | None = None,
             calibration: Method = "isotonic") -> PropensityArtifact:
    """Fit the ``calibration`` map on ``val`` and store the highest-recall threshold with precision >= floor."""
    y = val[label].to_numpy(dtype=np.float64)
    raw = raw_predict(booster, cfg.kind, to_matrix(val, feature_names))
    keep = cfg.keep_rate if cfg.imbalance == "downsample" else 1.0
    calibrator = Calibrator(keep_rate=keep, method=calibration)
    if 0 < y.sum() < len(y):
        calibrator.fit(raw, y)
    elif calibration != "none":
        calibrator.method = "none"
    scores = calibrator(raw)
    _, threshold = recall_at_precision(y, scores, min_precision)
    if not np.isfinite(threshold):  # no threshold reaches the floor: serve only the top-scored
        threshold = float(np.max(scores)) if len(scores) else 1.0
    return PropensityArtifact(
        kind=cfg.kind, feature_names=list(feature_names), threshold=float(threshold),
        calibration=calibrator.to_dict(), base_rate=float(base_rate if base_rate is not None else y.mean()),
        metrics={"validation": evaluate(y, scores, min_precision=min_precision).as_dict()} if 0 < y.sum() < len(y)
        else {}, config={**cfg.model_dump(), "min_precision": min_precision}, code_version=code_version(),
    )


def fit_local(train: pd.DataFrame, val: pd.DataFrame, feature_names: list[str], label: str,
              cfg: PropensityConfig | None = None, min_precision: float = 0.3) -> tuple[Any, PropensityArtifact]:
    """Single-process fit (no Ray): for tests, small data and the baseline."""
    cfg = cfg or PropensityConfig()
    fit_df = downsample_negatives(train, label, cfg.keep_rate, cfg.seed) if cfg.imbalance == "downsample" else train
    booster = fit_booster(cfg, to_matrix(fit_df, feature_names), fit_df[label].to_numpy(np.float64),
                          to_matrix(val, feature_names), val[label].to_numpy(np.float64), feature_names)
    art = finalize(booster, cfg, val, feature_names, label, min_precision, base_rate=float(train[label].mean()))
    return booster, art
