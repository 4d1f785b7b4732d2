"""PSI of the live window against the training window: quiet on the same distribution, loud on a shift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.drift import drift, feature_quantiles


def test_feature_quantiles_keep_numeric_columns_with_values() -> None:
    frame = pd.DataFrame({"a": np.arange(100.0), "b": ["x"] * 100, "c": [np.nan] * 100})
    q = feature_quantiles(frame, ["a", "b", "c", "missing"])
    assert list(q) == ["a"] and len(q["a"]) == 21 and q["a"][0] == 0.0 and q["a"][-1] == 99.0


def test_drift_alerts_on_a_shift_only() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"n_events": rng.poisson(4, 20_000).astype(float), "dwell": rng.lognormal(3, 1, 20_000)})
    metrics = {"feature_quantiles": feature_quantiles(train, ["n_events", "dwell"]),
               "validation_scores": np.quantile(rng.beta(1, 20, 20_000), np.linspace(0, 1, 21)).tolist()}
    same = pd.DataFrame({"n_events": rng.poisson(4, 5000).astype(float), "dwell": rng.lognormal(3, 1, 5000)})
    quiet = drift(metrics, same, rng.beta(1, 20, 5000))
    assert not quiet["alert"] and quiet["score"] < 0.05 and max(quiet["features"].values()) < 0.05
    shifted = same.assign(dwell=rng.lognormal(4.5, 1, 5000))
    loud = drift(metrics, shifted, rng.beta(3, 20, 5000))
    assert loud["alert"] and set(loud["over"]) == {"dwell", "score"} and loud["features"]["n_events"] < 0.05
    assert drift(metrics, same.head(50), None)["skipped"]
    assert "no feature_quantiles" in drift({"validation_scores": metrics["validation_scores"]}, same, None)["note"]
