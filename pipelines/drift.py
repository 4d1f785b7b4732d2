"""Drift of the live data against the champion's training window: PSI of its main features and of
its score distribution, at every refresh.

At training time ``feature_quantiles`` stores 21 quantiles of each numeric feature of the training
split in the model's metrics (``feature_quantiles``, next to the ``validation_scores``
quantiles the promotion gate already keeps). At each refresh ``drift`` scores the sessions of
the live window with the champion and compares, with ``pipelines.promotion.psi_quantiles`` (the
promotion gate's PSI on the stored deciles), the window's score sample against the validation
scores and each stored feature against the window's values. Above ``psi_max`` (0.25, the usual
"significant shift" bound) it alerts: the check's JSON names the drifted inputs and
``tandem_drift_psi`` carries every value. It does not block anything by itself: a drifted
window is what a retrain learns from, and a candidate trained on it still has to pass the
promotion gates (whose own PSI gate compares the candidate's holdout to its validation scores).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from pipelines.promotion import psi_quantiles

logger = logging.getLogger(__name__)

LEVELS = np.linspace(0.0, 1.0, 21)
MAX_FEATURES = 40


def feature_quantiles(frame: pd.DataFrame, columns: list[str], limit: int = MAX_FEATURES) -> dict[str, list[float]]:
    """21 quantiles of each numeric column with values (the first ``limit``), for the model's metrics."""
    out: dict[str, list[float]] = {}
    for col in columns:
        if len(out) >= limit:
            break
        if col not in frame.columns or not pd.api.types.is_numeric_dtype(frame[col]):
            continue
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            out[col] = np.quantile(values, LEVELS).tolist()
    return out


def drift(metrics: dict[str, Any], window: pd.DataFrame, scores: np.ndarray | None, psi_max: float = 0.25,
          min_rows: int = 200) -> dict[str, Any]:
    """PSI of the live ``window`` (feature rows) and its ``scores`` against the stored training quantiles."""
    out: dict[str, Any] = {"rows": len(window), "psi_max": psi_max, "features": {}, "score": None, "alert": False}
    if len(window) < min_rows:
        out["skipped"] = f"{len(window)} rows in the window (< {min_rows})"
        return out
    stored = metrics.get("validation_scores")
    if scores is not None and stored:
        out["score"] = round(psi_quantiles(np.asarray(stored, dtype=np.float64), np.asarray(scores), True), 6)
    for col, q in (metrics.get("feature_quantiles") or {}).items():
        if col in window.columns:
            values = pd.to_numeric(window[col], errors="coerce").to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size >= min_rows:
                out["features"][col] = round(psi_quantiles(np.asarray(q, dtype=np.float64), values, True), 6)
    if not metrics.get("feature_quantiles"):
        out["note"] = "the champion stores no feature_quantiles (trained before drift monitoring): scores only"
    over = {k: v for k, v in out["features"].items() if v > psi_max}
    if out["score"] is not None and out["score"] > psi_max:
        over["score"] = out["score"]
    out["over"] = over
    out["alert"] = bool(over)
    if over:
        logger.warning("drift above PSI %.2f against the training window: %s", psi_max, over)
    return out


class DriftCheck:
    """The refresh loop's per-tick drift check of the propensity champion (a ``Check``).

    Window: the sessions of the feature output (its current published version, local or ``s3://``)
    active within ``window_s`` of its newest session (the feature watermark, so a replay of past
    data is judged on its own clock)."""

    __name__ = "drift"

    def __init__(self, registry: str, features: str, window_s: float = 3600.0, psi_max: float = 0.25,
                 max_rows: int = 200_000, cache_dir: str | None = None):
        self.registry, self.features = registry, features
        self.window_s, self.psi_max, self.max_rows = window_s, psi_max, max_rows
        self.cache_dir = cache_dir
        self._predictor: Any = None

    def __call__(self, ctx: Any = None) -> dict[str, Any]:
        from models.propensity.predictor import REGISTRY_NAME, PropensityPredictor
        from store.registry import Registry, load_predictor

        if "://" not in self.registry and not os.path.isdir(self.registry):
            return {"name": "drift", "ok": True, "skipped": f"no registry at {self.registry}"}
        reg = Registry(self.registry)
        version = reg.champion(REGISTRY_NAME)
        if version is None:
            return {"name": "drift", "ok": True, "skipped": "no propensity champion"}
        if self._predictor is None or self._predictor.version != version:
            self._predictor = load_predictor(PropensityPredictor, self.registry, version=version,
                                             cache_dir=self.cache_dir)
        window = self.window(self._predictor.feature_names)
        scores = self._predictor.predict_proba(window) if len(window) else None
        out = drift(reg.get(REGISTRY_NAME, version).meta.get("metrics", {}), window, scores, self.psi_max)
        metrics = getattr(ctx, "metrics", None)
        if metrics is not None:
            for name, value in [("score", out["score"]), *out["features"].items()]:
                if value is not None:
                    metrics.record("tandem_drift_psi", float(value), model=REGISTRY_NAME, input=name)
        return {"name": "drift", "ok": True, "model": REGISTRY_NAME, "version": version, **out}

    def window(self, columns: list[str]) -> pd.DataFrame:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        from store import fs as fs_layer

        fs, source = fs_layer.filesystem(fs_layer.resolve(fs_layer.join(self.features, "sessions")))
        data = ds.dataset(source, format="parquet", filesystem=fs)
        time_col = "cutoff_time" if "cutoff_time" in data.schema.names else "last_time"
        newest = pc.max(data.to_table(columns=[time_col]).column(time_col)).as_py()
        if newest is None:
            return pd.DataFrame(columns=columns)
        since = pd.Timestamp(newest) - pd.Timedelta(seconds=self.window_s)
        keep = [c for c in dict.fromkeys([*columns, time_col]) if c in data.schema.names]
        table = data.to_table(columns=keep, filter=ds.field(time_col) >= since.to_pydatetime())
        if table.num_rows > self.max_rows:
            table = table.slice(table.num_rows - self.max_rows)
        return table.to_pandas()


METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tandem_drift_psi": ("gauge", "PSI of the live window against the champion's training window",
                         ("model", "input")),
}
