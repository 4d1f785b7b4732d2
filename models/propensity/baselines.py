"""The two baselines every propensity model is reported against, fitted on the same rows.

- ``logreg_balanced``: median-imputed, standardized logistic regression with balanced class weights;
- ``lightgbm_default``: LightGBM with its default settings (100 rounds, lr 0.1, 31 leaves), uncalibrated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.evaluation.classification import evaluate
from models.propensity.data import LABEL
from models.propensity.model import to_matrix


def baselines(train: pd.DataFrame, test: pd.DataFrame, features: list[str], min_precision: float,
              threads: int = 0) -> dict[str, Any]:
    """Fit both baselines on ``train`` (prepared frame, label ``LABEL``) and evaluate them on ``test``."""
    import lightgbm as lgb
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr, y_tr = to_matrix(train, features), train[LABEL].to_numpy()
    x_te, y_te = to_matrix(test, features), test[LABEL].to_numpy()
    logreg = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                           LogisticRegression(class_weight="balanced", max_iter=1000))
    logreg.fit(x_tr, y_tr)
    params: dict[str, Any] = {"objective": "binary", "verbose": -1, **({"num_threads": threads} if threads else {})}
    default = lgb.train(params, lgb.Dataset(x_tr, label=y_tr))
    return {"logreg_balanced": evaluate(y_te, logreg.predict_proba(x_te)[:, 1], min_precision).as_dict(),
            "lightgbm_default": evaluate(y_te, np.asarray(default.predict(x_te), dtype=np.float64),
                                         min_precision).as_dict()}
