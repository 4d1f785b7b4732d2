"""The two baselines every propensity model is reported against, fitted on the same rows.

- ``logreg_balanced``: median-imputed, standardized logistic regression with balanced class weights;
- ``lightgbm_default``: LightGBM with its default settings (100 rounds, lr 0.1, 31 leaves), uncalibrated,
  given the same encoded features (categorical columns as LightGBM native categoricals).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.evaluation.classification import evaluate
from models.propensity.data import LABEL
from models.propensity.model import to_matrix


def lightgbm_default(x: np.ndarray, y: np.ndarray, features: list[str], categorical: list[str] | None = None,
                     threads: int = 0) -> Any:
    """LightGBM with its default parameters and round count (the reference every model must beat)."""
    import lightgbm as lgb

    params: dict[str, Any] = {"objective": "binary", "verbose": -1, **({"num_threads": threads} if threads else {})}
    return lgb.train(params, lgb.Dataset(x, label=y, feature_name=features,
                                         categorical_feature=list(categorical or []) or "auto", params={"verbose": -1}))


def baseline_scores(train: pd.DataFrame, test: pd.DataFrame, features: list[str], threads: int = 0,
                    categorical: list[str] | None = None, default: Any = None) -> dict[str, np.ndarray]:
    """Test scores of both baselines fitted on ``train`` (prepared frame, label ``LABEL``);
    ``default`` reuses an already fitted ``lightgbm_default`` booster."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr, y_tr = to_matrix(train, features), train[LABEL].to_numpy()
    x_te = to_matrix(test, features)
    logreg = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                           LogisticRegression(class_weight="balanced", max_iter=1000))
    logreg.fit(x_tr, y_tr)
    if default is None:
        default = lightgbm_default(x_tr, y_tr, features, categorical, threads)
    return {"logreg_balanced": np.asarray(logreg.predict_proba(x_te)[:, 1], dtype=np.float64),
            "lightgbm_default": np.asarray(default.predict(x_te), dtype=np.float64)}


def baselines(train: pd.DataFrame, test: pd.DataFrame, features: list[str], min_precision: float,
              threads: int = 0, categorical: list[str] | None = None) -> dict[str, Any]:
    """Fit both baselines on ``train`` and evaluate them on ``test``."""
    y_te = test[LABEL].to_numpy()
    return {name: evaluate(y_te, p, min_precision).as_dict()
            for name, p in baseline_scores(train, test, features, threads, categorical).items()}
