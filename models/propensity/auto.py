"""The default training path: select on the training window, fit, guard on validation, finalize.

``train_auto`` is shared by ``jobs.train_propensity`` (whose ``fit`` trains the chosen
configuration with Ray Train) and local fits in tests (``fit=None``: a single-process
``fit_booster``), so both follow one rule (``models.propensity.select``):

1. cross-validate the candidates on the training rows only and choose one;
2. fit the chosen configuration on all training rows at its cross-validated round count
   (no early stopping: the validation split stays untouched for the check), and the
   reference (``lightgbm_default``) on the same rows;
3. keep the reference when the chosen model is below it on validation PR-AUC;
4. calibrate the kept model on validation with the calibration chosen for it on the folds,
   and store its serving threshold (``finalize``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.propensity.artifact import PropensityArtifact
from models.propensity.baselines import lightgbm_default
from models.propensity.data import LABEL, Split
from models.propensity.encoding import Encoding
from models.propensity.finalize import finalize
from models.propensity.model import (
    PropensityConfig,
    downsample_negatives,
    fit_booster,
    raw_predict,
    to_matrix,
)
from models.propensity.select import REFERENCE, STRATEGIES, Selection, guard, select

logger = logging.getLogger(__name__)

# (configuration, training rows: encoded frame with LABEL) -> fitted booster
FitFn = Callable[[PropensityConfig, pd.DataFrame], Any]


@dataclass
class Trained:
    booster: Any
    cfg: PropensityConfig
    artifact: PropensityArtifact
    selection: Selection
    reference: Any  # the lightgbm_default booster fitted on the same training rows (the baseline)


def local_fit(features: list[str], categorical: list[str]) -> FitFn:
    """Single-process ``fit_booster`` on the given rows (no validation rows: no early stopping)."""
    def fit(cfg: PropensityConfig, rows: pd.DataFrame) -> Any:
        return fit_booster(cfg, to_matrix(rows, features), rows[LABEL].to_numpy(np.float64), None, None, features,
                           categorical=categorical if cfg.kind == "lightgbm" else None)

    return fit


def train_auto(parts: Split, encoding: Encoding, base: PropensityConfig, *, fit: FitFn | None = None,
               min_precision: float = 0.3, time_ordered: bool = False, strategies: tuple[str, ...] = STRATEGIES,
               calibration: str = "auto") -> Trained:
    """Select, fit, guard and finalize (see the module docstring). ``strategies`` limits the
    imbalance strategies tried; ``calibration`` other than ``auto`` fixes the map."""
    features = encoding.feature_names
    categorical = encoding.categorical if base.kind == "lightgbm" else []
    train, val = parts.train, parts.validation
    x_tr, y_tr = to_matrix(train, features), train[LABEL].to_numpy(np.float64)
    sel, chosen, by_name = select(x_tr, y_tr, features, base, categorical=encoding.categorical,
                                  time_ordered=time_ordered, seed=base.seed, strategies=strategies)
    reference = lightgbm_default(x_tr, y_tr, features, encoding.categorical, base.num_threads)
    booster, cfg = reference, by_name[REFERENCE].cfg
    if chosen.name != REFERENCE:
        rows = (downsample_negatives(train, LABEL, chosen.cfg.keep_rate, chosen.cfg.seed)
                if chosen.cfg.imbalance == "downsample" else train)
        booster = (fit or local_fit(features, categorical))(chosen.cfg, rows)
        cfg = chosen.cfg
    x_va, y_va = to_matrix(val, features), val[LABEL].to_numpy(np.float64)
    ref_val = raw_predict(reference, "lightgbm", x_va)
    mine_val = raw_predict(booster, cfg.kind, x_va) if booster is not reference else None
    if guard(sel, y_va, mine_val, ref_val):
        booster, cfg = reference, by_name[REFERENCE].cfg
    method = sel.calibration if calibration == "auto" else calibration
    sel.calibration = method
    art = finalize(booster, cfg, val, features, LABEL, min_precision, base_rate=float(y_tr.mean()),
                   calibration=method)  # type: ignore[arg-type]
    art.encoding = encoding.to_dict()
    art.selection = sel.as_dict()
    art.config = {**art.config, "selected": sel.chosen if not sel.kept_reference else REFERENCE}
    return Trained(booster, cfg, art, sel, reference)
