"""One predictor for online scoring and Ray Data batch precompute.

``PropensityPredictor(artifact_dir)`` loads a booster and its metadata. It is a
Ray Data callable class (``map_batches(PropensityPredictor, fn_constructor_kwargs=
{"artifact_dir": ...}, batch_format="pandas")``) and sits inside the Serve
deployment, so batch and online scores come from the same code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.features.session import session_features
from models.propensity.artifact import MODEL_FILES, load_meta
from models.propensity.calibration import Calibrator
from models.propensity.encoding import Encoding
from models.propensity.model import raw_predict, to_matrix

logger = logging.getLogger(__name__)

REGISTRY_NAME = "propensity"
ID_COLUMNS = ("session_id", "tenant")


def load_booster(kind: str, path: Path) -> Any:
    """A LightGBM or XGBoost booster from its saved model file, set up for 1-thread scoring."""
    if kind == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(path))
    booster.set_param({"nthread": 1})
    return booster


class PropensityPredictor:
    """Calibrated purchase probability for feature rows or raw session events."""

    registry_name: ClassVar[str] = REGISTRY_NAME  # ``store.registry.load_predictor`` fetches this name

    def __init__(self, artifact_dir: str, version: str | None = None):
        art = load_meta(artifact_dir)
        self.kind = art.kind
        self.feature_names: list[str] = list(art.feature_names)
        self.threshold: float = float(art.threshold)
        self.base_rate: float = float(art.base_rate)
        self.metrics = art.metrics
        self.calibrator = Calibrator.from_dict(art.calibration)
        self.categories = art.categories
        self.encoding = Encoding.from_dict(art.encoding) if art.encoding else None
        # numeric-only encodings need no per-call transform (the serving hot path)
        self._transform = self.encoding is not None and bool(self.encoding.categorical)
        self.version: str = version or Path(artifact_dir).name
        self.booster = load_booster(self.kind, Path(artifact_dir) / MODEL_FILES[art.kind])
        logger.info("loaded %s propensity model %s (%d features)", self.kind, self.version, len(self.feature_names))

    @classmethod
    def from_artifact(cls, artifact_dir: str) -> PropensityPredictor:
        return cls(artifact_dir)

    # -- scoring -------------------------------------------------------------
    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 0:
            return np.empty(0)
        return self.calibrator(raw_predict(self.booster, self.kind, x))

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated P(purchase) per row of raw feature columns, encoded as in training
        (unseen categories count as rare, absent or non-numeric values as missing)."""
        if self._transform:
            assert self.encoding is not None
            return self.predict_matrix(self.encoding.transform(features).to_numpy(np.float64))
        if self.categories:  # artifacts written before the encoding existed
            features = features.assign(**{
                col: pd.Categorical(features[col].astype(str), categories=cats).codes.astype(np.float64)
                for col, cats in self.categories.items() if col in features.columns})
            for col in self.categories:
                if col in features.columns:
                    features.loc[features[col] < 0, col] = np.nan
        return self.predict_matrix(to_matrix(features, self.feature_names))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Ray Data ``map_batches``: id columns plus ``score``."""
        out = batch[[c for c in ID_COLUMNS if c in batch.columns]].copy()
        out["score"] = self.predict_proba(batch)
        return out

    def score_events(self, events: pd.DataFrame) -> dict[str, float]:
        """Score live sessions from their raw events (features by ``models.features.session``)."""
        feats = session_features(events, cut_at_first_purchase=False)
        if feats.empty:
            return {}
        scores = self.predict_proba(feats)
        return {str(s): float(v) for s, v in zip(feats["session_id"], scores, strict=True)}
